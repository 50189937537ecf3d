/**
 * Release files: the installer stamped with the public key, the download address and the
 * systemd units; SHA256SUMS and its detached Ed25519 signature (openssl); a manifest. Used by
 * scripts/build and by the installer's tests.
 *
 * SHA256SUMS is the release's one signed statement: besides the checksums it names the version
 * and until when this statement may be trusted (both as comment lines, which `sha256sum -c`
 * skips), so that the version an upgrade compares is never taken from unsigned data and an old
 * copy of it served forever stops being accepted (see the README, "Downgrades").
 */
import { createHash } from "node:crypto";

const ROOT = new URL("../", import.meta.url).pathname;

/** Where install.sh takes each unit from deploy/systemd (placeholder → file). */
const UNITS: Record<string, string> = {
  "@UNIT@": "x0tta6bl4.service",
  "@UPGRADE_SERVICE@": "x0tta6bl4-upgrade.service",
  "@UPGRADE_TIMER@": "x0tta6bl4-upgrade.timer",
};

/** How long a signed SHA256SUMS is trusted when the build is not told otherwise. */
export const VALID_DAYS = 30;

export function stampInstaller(publicKeyPem: string, baseUrl: string): string {
  // Replacement functions, not strings: a "$&" or "$'" in a unit or an address stays literal.
  let out = Deno.readTextFileSync(`${ROOT}install.sh`)
    .replace("@PUBLIC_KEY@", () => publicKeyPem.trim())
    .replace("@BASE_URL@", () => baseUrl);
  for (const [mark, file] of Object.entries(UNITS)) {
    if (!out.includes(mark)) throw new Error(`install.sh has no ${mark} for ${file}`);
    const unit = Deno.readTextFileSync(`${ROOT}deploy/systemd/${file}`).trimEnd();
    out = out.replace(mark, () => unit);
  }
  return out;
}

function openssl(args: string[]): string {
  const out = new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** The public key (PEM) of an Ed25519 private key file. */
export function publicKeyOf(privateKeyFile: string): string {
  return openssl(["pkey", "-in", privateKeyFile, "-pubout"]);
}

export function generateKey(file: string): void {
  openssl(["genpkey", "-algorithm", "ed25519", "-out", file]);
  Deno.chmodSync(file, 0o600);
}

/** The signed header's expiry line: seconds since the epoch (for the shell), then the date. */
function expiresLine(expires: Date): string {
  return `# expires: ${Math.floor(expires.getTime() / 1000)} (${expires.toISOString()})`;
}

/** Writes `<dir>/SHA256SUMS` from its lines and signs it into `<dir>/SHA256SUMS.sig`. */
function writeSigned(dir: string, lines: string[], signingKey: string): void {
  Deno.writeTextFileSync(`${dir}/SHA256SUMS`, lines.join("\n") + "\n");
  openssl([
    "pkeyutl",
    "-sign",
    "-inkey",
    signingKey,
    "-rawin",
    "-in",
    `${dir}/SHA256SUMS`,
    "-out",
    `${dir}/SHA256SUMS.sig`,
  ]);
}

export interface ReleaseFile {
  name: string;
  bytes: Uint8Array;
}

/** Writes a release directory: the files, SHA256SUMS(.sig), manifest.json and install.sh. */
export function writeRelease(o: {
  dir: string;
  version: string;
  channel: string;
  files: ReleaseFile[];
  signingKey: string;
  baseUrl: string;
  minKernel: string;
  /** Until when the signed SHA256SUMS may be trusted as the latest release. */
  expires: Date;
}): void {
  Deno.mkdirSync(o.dir, { recursive: true });
  const lines = [`# version: ${o.version}`, expiresLine(o.expires)];
  for (const f of o.files) {
    Deno.writeFileSync(`${o.dir}/${f.name}`, f.bytes, { mode: 0o755 });
    lines.push(`${createHash("sha256").update(f.bytes).digest("hex")}  ${f.name}`);
  }
  writeSigned(o.dir, lines, o.signingKey);
  // Unsigned and trusted by nothing since the version went into SHA256SUMS: it stays for the
  // upgrade command of earlier releases, which reads the version from it.
  Deno.writeTextFileSync(
    `${o.dir}/manifest.json`,
    JSON.stringify(
      {
        version: o.version,
        channel: o.channel,
        date: new Date().toISOString(),
        minKernel: o.minKernel,
        files: o.files.map((f) => f.name),
      },
      null,
      2,
    ) + "\n",
  );
  Deno.writeTextFileSync(
    `${o.dir}/install.sh`,
    stampInstaller(publicKeyOf(o.signingKey), o.baseUrl),
    { mode: 0o755 },
  );
}

/**
 * Signs a published release's SHA256SUMS again with a later expiry, nothing else changed: run
 * it on `latest/` before the expiry comes, or every box reports its upgrade check as failed.
 */
export function resign(dir: string, signingKey: string, expires: Date): void {
  const lines = Deno.readTextFileSync(`${dir}/SHA256SUMS`).trimEnd().split("\n");
  if (!lines[1]?.startsWith("# expires: ")) {
    throw new Error(`${dir}/SHA256SUMS has no "# expires:" line: not a release of this format`);
  }
  lines[1] = expiresLine(expires);
  writeSigned(dir, lines, signingKey);
}
