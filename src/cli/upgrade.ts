/**
 * `x0tta6bl4 upgrade`: reads the latest release's SHA256SUMS, which names its version and until
 * when it may be trusted, and believes neither before its Ed25519 signature verifies; refuses a
 * version older than this one (unless allowed) and signed data past its expiry; downloads the
 * new binary (bounded) and checks it against its sum, writes it beside the current one, swaps
 * it in atomically (rename), restarts, waits for /readyz and a fit /api/v1/health, and puts the
 * previous binary back and restarts it by itself when the restart fails, or when the new one is
 * not ready in time, runs in fallback mode where this one ran eBPF, or has a component unhealthy
 * that was not before. `--check` only reports. Every outcome is written to <state_dir>/upgrade.json,
 * which the appliance reports as the "upgrade" component of its health and as a metric: an
 * upgrade never fails silently.
 */
import { createHash, createPublicKey, verify } from "node:crypto";
import { VERSION } from "../version.ts";

export interface UpgradeOptions {
  baseUrl: string;
  /** The binary to replace (the running one). */
  binary: string;
  publicKeyPem: string;
  stateDir: string;
  /** Shell command that restarts the appliance (systemctl restart x0tta6bl4). */
  restart: string;
  /** The appliance's API (http://127.0.0.1:9477), for /readyz and /api/v1/health. */
  api: string;
  /** The API token file: its token goes with every request to the API when it exists. */
  tokenFile: string;
  readyTimeoutMs: number;
  check: boolean;
  /** Install the latest release even when it is older than this one. */
  allowDowngrade: boolean;
  /** Accept a plain http:// release address. */
  insecureHttp: boolean;
}

export interface UpgradeStatus {
  ok: boolean;
  at: string;
  current: string;
  latest?: string;
  outcome: "up-to-date" | "available" | "upgraded" | "rolled-back" | "failed";
  error?: string;
}

/**
 * The most a download may hold, in bytes: a release's SHA256SUMS and signature are small and a
 * binary is well below 256 MiB; more is refused as it arrives (an endless-data attack).
 */
const LIMITS = { sums: 16 << 10, signature: 1 << 10, binary: 256 << 20, api: 1 << 20 };
/** How long the binary's download may take (the small files: 30 s each). */
const BINARY_TIMEOUT_MS = 10 * 60_000;

/** MAJOR.MINOR.PATCH[-PRERELEASE] as semver writes them (no leading zeros), a leading v allowed. */
const VERSION_RE = new RegExp(
  "^v?(0|[1-9]\\d{0,8})\\.(0|[1-9]\\d{0,8})\\.(0|[1-9]\\d{0,8})" +
    "(?:-((?:0|[1-9]\\d*|\\d*[A-Za-z-][0-9A-Za-z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[A-Za-z-][0-9A-Za-z-]*))*))?$",
);

function parseVersion(v: string): { core: number[]; pre: string[] } {
  const m = v.length <= 64 ? VERSION_RE.exec(v) : null;
  if (!m) throw new Error(`${JSON.stringify(v)} is not a version (MAJOR.MINOR.PATCH[-PRERELEASE])`);
  return { core: [m[1], m[2], m[3]].map(Number), pre: m[4]?.split(".") ?? [] };
}

/**
 * Semver precedence: -1, 0 or 1 as `a` is older than, the same as or newer than `b`. The core
 * numbers compare as numbers (0.10.0 > 0.9.0); a pre-release comes before its release, and two
 * compare part by part (numbers as numbers and before words, words in ASCII order). install.sh
 * compares the same way. Throws on a string that is not a version.
 */
export function compareVersions(a: string, b: string): number {
  const [x, y] = [parseVersion(a), parseVersion(b)];
  for (let i = 0; i < 3; i++) {
    if (x.core[i] !== y.core[i]) return x.core[i] < y.core[i] ? -1 : 1;
  }
  if (!x.pre.length || !y.pre.length) return Math.sign(y.pre.length - x.pre.length);
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const [p, q] = [x.pre[i], y.pre[i]];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    if (p === q) continue;
    const [np, nq] = [/^\d+$/.test(p), /^\d+$/.test(q)];
    if (np && nq && p.length !== q.length) return p.length < q.length ? -1 : 1;
    if (np !== nq) return np ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

/** What the signed SHA256SUMS says: "# version: V", "# expires: SECONDS (DATE)", then sums. */
interface SignedRelease {
  version: string;
  expires: Date;
  /** File name → SHA-256 (hex). */
  sums: Map<string, string>;
}

function parseSums(text: string): SignedRelease {
  const [first = "", second = "", ...rest] = text.replace(/\n$/, "").split("\n");
  const version = /^# version: (\S+)$/.exec(first)?.[1];
  const expires = /^# expires: (\d{1,12}) \(\S+\)$/.exec(second)?.[1];
  if (!version || !expires) {
    throw new Error(
      "SHA256SUMS does not begin with its signed '# version:' and '# expires:' lines " +
        "(a release made before versions were signed): refusing to trust it",
    );
  }
  parseVersion(version);
  const sums = new Map<string, string>();
  for (const line of rest) {
    const m = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
    if (!m) {
      throw new Error(`SHA256SUMS has a line that is not a checksum: ${JSON.stringify(line)}`);
    }
    sums.set(m[2], m[1]);
  }
  return { version, expires: new Date(Number(expires) * 1000), sums };
}

function arch(): string {
  return Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
}

const bytes = (n: number) => n >= 1 << 20 ? `${n / (1 << 20)} MiB` : `${n / 1024} KiB`;

/** The body of a GET, refused beyond `limit` bytes (before the rest is downloaded). */
async function get(
  url: string,
  limit: number,
  timeoutMs = 30_000,
  headers: Record<string, string> = {},
): Promise<Uint8Array> {
  const r = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  if (!r.ok || !r.body) {
    await r.body?.cancel();
    throw new Error(`${url}: HTTP ${r.status}`);
  }
  const tooLarge = () =>
    new Error(
      `${url} is larger than ${bytes(limit)}: download aborted (no release file is that large: ` +
        "check the release address; a server that does this is hostile)",
    );
  if (Number(r.headers.get("content-length")) > limit) {
    await r.body.cancel();
    throw tooLarge();
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  // Leaving the loop (the throw) cancels the rest of the download.
  for await (const part of r.body) {
    size += part.length;
    if (size > limit) throw tooLarge();
    parts.push(part);
  }
  const out = new Uint8Array(size);
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/** The release address without a trailing slash; plain http only when allowed. */
function releaseBase(url: string, insecureHttp: boolean): string {
  const { protocol } = new URL(url);
  if (protocol === "http:" && !insecureHttp) {
    throw new Error(
      `the release address ${url} is plain http, where anyone on the path can hold releases ` +
        "back: use https://, or pass --insecure-http to accept it",
    );
  }
  if (protocol !== "https:" && protocol !== "http:") {
    throw new Error(`the release address ${url} is not https://`);
  }
  return url.replace(/\/+$/, "");
}

/** The latest release's signed SHA256SUMS, verified and unexpired. */
async function latestRelease(base: string, publicKeyPem: string): Promise<SignedRelease> {
  const sums = await get(`${base}/latest/SHA256SUMS`, LIMITS.sums);
  const sig = await get(`${base}/latest/SHA256SUMS.sig`, LIMITS.signature);
  if (!verify(null, sums, createPublicKey(publicKeyPem), sig)) {
    throw new Error("the signature of SHA256SUMS does not verify: refusing to upgrade");
  }
  const release = parseSums(new TextDecoder().decode(sums));
  if (release.expires.getTime() <= Date.now()) {
    throw new Error(
      `the signed SHA256SUMS at ${base}/latest expired on ${release.expires.toISOString()}: ` +
        "a mirror may be serving an old copy to keep this box from newer releases (a freeze " +
        "attack), or the publisher has not signed it again (scripts/build --resign); " +
        "check this box's clock too",
    );
  }
  return release;
}

/**
 * Writes `path` as a new file beside it (O_EXCL: never through a link planted at that name) and
 * renames it over `path` (which replaces a link there instead of following it). The state
 * directory belongs to the service's user, and this runs as root.
 */
function replaceFile(path: string, data: Uint8Array, mode: number): void {
  const tmp = `${path}.new`;
  try {
    Deno.removeSync(tmp);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  Deno.writeFileSync(tmp, data, { createNew: true, mode });
  Deno.renameSync(tmp, path);
}

function record(stateDir: string, s: UpgradeStatus): UpgradeStatus {
  try {
    Deno.mkdirSync(stateDir, { recursive: true });
    replaceFile(
      `${stateDir}/upgrade.json`,
      new TextEncoder().encode(JSON.stringify(s, null, 2) + "\n"),
      0o644,
    );
  } catch { /* reported on stdout anyway */ }
  return s;
}

/** The last recorded upgrade outcome, for health and metrics. */
export function lastUpgrade(stateDir: string): UpgradeStatus | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${stateDir}/upgrade.json`));
  } catch {
    return undefined;
  }
}

/**
 * The API token, when its file exists. Read as root from a directory that the service's user
 * owns, so the file opened must be the regular file that was there, not what a planted link
 * (or one swapped in meanwhile) points to.
 */
function apiToken(path: string): string | undefined {
  let seen: Deno.FileInfo;
  try {
    seen = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const refuse = () =>
    new Error(
      `the API token file ${path} is not a small regular file (a symbolic link?): refusing to ` +
        "read it as root; remove it and restart the appliance, which makes a new one",
    );
  if (!seen.isFile) throw refuse();
  using f = Deno.openSync(path);
  const opened = f.statSync();
  if (opened.ino !== seen.ino || opened.dev !== seen.dev || opened.size > 4096) throw refuse();
  const buf = new Uint8Array(opened.size);
  return new TextDecoder().decode(buf.subarray(0, f.readSync(buf) ?? 0)).trim() || undefined;
}

function restart(cmd: string): void {
  const out = new Deno.Command("sh", { args: ["-c", cmd], stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`restart (${cmd}) failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ready(url: string, deadline: number, headers: Record<string, string>) {
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url, { headers, signal: AbortSignal.timeout(1000) });
      await r.body?.cancel();
      if (r.status === 200) return true;
    } catch { /* not up yet */ }
    await sleep(200);
  }
  return false;
}

interface Health {
  mode: string;
  fallbackReason?: string;
  components: { component: string; state: string; reason: string }[];
}

async function health(api: string, headers: Record<string, string>): Promise<Health> {
  const h = JSON.parse(
    new TextDecoder().decode(await get(`${api}/api/v1/health`, LIMITS.api, 2000, headers)),
  );
  if (typeof h?.mode !== "string" || !Array.isArray(h.components)) {
    throw new Error("its answer is not the health document");
  }
  return h;
}

const unhealthy = (h: Health) => h.components.filter((c) => c?.state === "unhealthy");

/**
 * Why the new release may not stay, from its health and the old one's (when it could be read);
 * undefined when it may. A component that was unhealthy before too (an interface that is gone,
 * a kernel without some tracepoint) does not hold an upgrade back: the new release may fix it.
 */
function unfit(h: Health, before: Health | undefined, latest: string): string | undefined {
  if (h.mode === "fallback" && before?.mode === "ebpf") {
    return `${latest} runs in fallback mode (${h.fallbackReason ?? "eBPF not running"}) ` +
      `where ${VERSION} ran eBPF`;
  }
  const was = new Set(before ? unhealthy(before).map((c) => c.component) : []);
  const bad = unhealthy(h).filter((c) => !was.has(c.component));
  if (bad.length) {
    return `${latest} reports ${
      bad.map((c) => `${c.component} unhealthy (${c.reason})`).join(", ")
    }`;
  }
}

/**
 * Restarts into the new binary and waits until it is ready and its health fit, within the
 * timeout: undefined when it is, else why not. Throws when the restart fails.
 */
async function settle(
  o: UpgradeOptions,
  latest: string,
  before: Health | undefined,
  headers: Record<string, string>,
): Promise<string | undefined> {
  restart(o.restart);
  const deadline = Date.now() + o.readyTimeoutMs;
  if (!await ready(`${o.api}/readyz`, deadline, headers)) {
    return `${latest} did not become ready within ${o.readyTimeoutMs} ms`;
  }
  let why: string | undefined;
  do {
    try {
      why = unfit(await health(o.api, headers), before, latest);
    } catch (e) {
      why = `the health of ${latest} cannot be read (${(e as Error).message})`;
    }
    if (!why) return undefined;
    await sleep(200);
  } while (Date.now() < deadline);
  return why;
}

export async function upgrade(o: UpgradeOptions): Promise<UpgradeStatus> {
  const at = new Date().toISOString();
  let latest: string | undefined;
  try {
    const base = releaseBase(o.baseUrl, o.insecureHttp);
    const release = await latestRelease(base, o.publicKeyPem);
    latest = release.version;
    const order = compareVersions(latest, VERSION);
    if (order === 0) {
      return record(o.stateDir, { ok: true, at, current: VERSION, latest, outcome: "up-to-date" });
    }
    if (order < 0 && !o.allowDowngrade) {
      throw new Error(
        `the latest release is ${latest}, older than the running ${VERSION}: refusing to ` +
          "downgrade (a mirror that serves an old release may be rolling boxes back to its " +
          "holes); pass --allow-downgrade to install it anyway",
      );
    }
    if (o.check) {
      return record(o.stateDir, { ok: true, at, current: VERSION, latest, outcome: "available" });
    }
    const token = apiToken(o.tokenFile);
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const asset = `x0tta6bl4-linux-${arch()}`;
    const sum = release.sums.get(asset);
    if (!sum) throw new Error(`SHA256SUMS does not list ${asset}`);
    const bin = await get(`${base}/${latest}/${asset}`, LIMITS.binary, BINARY_TIMEOUT_MS);
    if (createHash("sha256").update(bin).digest("hex") !== sum) {
      throw new Error(`checksum mismatch for ${asset}: refusing to upgrade`);
    }
    // How the running release fares, to hold the new one to it.
    const before = await health(o.api, headers).catch(() => undefined);
    // Beside the current binary, then a rename: the swap is atomic, the old one kept as .prev.
    Deno.copyFileSync(o.binary, `${o.binary}.prev`);
    replaceFile(o.binary, bin, 0o755);
    let why: string | undefined;
    try {
      why = await settle(o, latest, before, headers);
    } catch (e) {
      why = (e as Error).message;
    }
    if (!why) {
      return record(o.stateDir, { ok: true, at, current: latest, latest, outcome: "upgraded" });
    }
    Deno.renameSync(`${o.binary}.prev`, o.binary);
    let back: string;
    try {
      restart(o.restart);
      back = await ready(`${o.api}/readyz`, Date.now() + o.readyTimeoutMs, headers)
        ? "is back and ready"
        : "is back but not ready either";
    } catch (e) {
      back = `is back but did not restart: ${(e as Error).message}`;
    }
    return record(o.stateDir, {
      ok: false,
      at,
      current: VERSION,
      latest,
      outcome: "rolled-back",
      error: `${why}; ${VERSION} ${back}`,
    });
  } catch (e) {
    return record(o.stateDir, {
      ok: false,
      at,
      current: VERSION,
      latest,
      outcome: "failed",
      error: (e as Error).message,
    });
  }
}
