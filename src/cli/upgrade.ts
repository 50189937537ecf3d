/**
 * `x0tta6bl4 upgrade`: fetches the release manifest, downloads the new binary, verifies the
 * Ed25519 signature of SHA256SUMS and the binary's checksum, writes it beside the current one,
 * swaps it in atomically (rename), restarts, waits for /readyz, and puts the previous binary
 * back by itself when the new one does not become ready in time. `--check` only reports.
 * Every outcome is written to <state_dir>/upgrade.json, which the appliance reports as the
 * "upgrade" component of its health and as a metric: an upgrade never fails silently.
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
  readyUrl: string;
  readyTimeoutMs: number;
  check: boolean;
}

export interface UpgradeStatus {
  ok: boolean;
  at: string;
  current: string;
  latest?: string;
  outcome: "up-to-date" | "available" | "upgraded" | "rolled-back" | "failed";
  error?: string;
}

function arch(): string {
  return Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
}

async function get(url: string): Promise<Uint8Array> {
  const r = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

function record(stateDir: string, s: UpgradeStatus): UpgradeStatus {
  try {
    Deno.mkdirSync(stateDir, { recursive: true });
    Deno.writeTextFileSync(`${stateDir}/upgrade.json`, JSON.stringify(s, null, 2) + "\n");
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

function restart(cmd: string): void {
  const out = new Deno.Command("sh", { args: ["-c", cmd], stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`restart (${cmd}) failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function ready(url: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await r.body?.cancel();
      if (r.status === 200) return true;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

export async function upgrade(o: UpgradeOptions): Promise<UpgradeStatus> {
  const at = new Date().toISOString();
  const base = o.baseUrl.replace(/\/$/, "");
  let latest: string | undefined;
  try {
    const manifest = JSON.parse(
      new TextDecoder().decode(await get(`${base}/latest/manifest.json`)),
    );
    latest = String(manifest.version);
    if (latest === VERSION) {
      return record(o.stateDir, { ok: true, at, current: VERSION, latest, outcome: "up-to-date" });
    }
    if (o.check) {
      return record(o.stateDir, { ok: true, at, current: VERSION, latest, outcome: "available" });
    }
    const dir = `${base}/${latest}`;
    const sums = await get(`${dir}/SHA256SUMS`);
    const sig = await get(`${dir}/SHA256SUMS.sig`);
    if (!verify(null, sums, createPublicKey(o.publicKeyPem), sig)) {
      throw new Error("the signature of SHA256SUMS does not verify: refusing to upgrade");
    }
    const asset = `x0tta6bl4-linux-${arch()}`;
    const line = new TextDecoder().decode(sums).split("\n").find((l) => l.endsWith(`  ${asset}`));
    if (!line) throw new Error(`SHA256SUMS does not list ${asset}`);
    const bin = await get(`${dir}/${asset}`);
    if (createHash("sha256").update(bin).digest("hex") !== line.split("  ")[0]) {
      throw new Error(`checksum mismatch for ${asset}: refusing to upgrade`);
    }
    // Beside the current binary, then renames: the swap is atomic, the old one kept as .prev.
    Deno.writeFileSync(`${o.binary}.new`, bin, { mode: 0o755 });
    Deno.chmodSync(`${o.binary}.new`, 0o755);
    Deno.copyFileSync(o.binary, `${o.binary}.prev`);
    Deno.renameSync(`${o.binary}.new`, o.binary);
    restart(o.restart);
    if (await ready(o.readyUrl, o.readyTimeoutMs)) {
      return record(o.stateDir, { ok: true, at, current: latest, latest, outcome: "upgraded" });
    }
    Deno.renameSync(`${o.binary}.prev`, o.binary);
    restart(o.restart);
    const back = await ready(o.readyUrl, o.readyTimeoutMs);
    return record(o.stateDir, {
      ok: false,
      at,
      current: VERSION,
      latest,
      outcome: "rolled-back",
      error: `${latest} did not become ready within ${o.readyTimeoutMs} ms; ` +
        (back ? `${VERSION} is back and ready` : `${VERSION} is back but not ready either`),
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
