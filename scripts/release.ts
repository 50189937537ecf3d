/**
 * Release files: the installer stamped with the public key, the download address and the
 * systemd units; SHA256SUMS and its detached Ed25519 signature (openssl); a manifest. Used by
 * scripts/build and by the installer's tests.
 */
import { createHash } from "node:crypto";

const ROOT = new URL("../", import.meta.url).pathname;

/** Where install.sh takes each unit from deploy/systemd (placeholder → file). */
const UNITS: Record<string, string> = {
  "@UNIT@": "x0tta6bl4.service",
  "@UPGRADE_SERVICE@": "x0tta6bl4-upgrade.service",
  "@UPGRADE_TIMER@": "x0tta6bl4-upgrade.timer",
};

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
}): void {
  Deno.mkdirSync(o.dir, { recursive: true });
  const sums: string[] = [];
  for (const f of o.files) {
    Deno.writeFileSync(`${o.dir}/${f.name}`, f.bytes, { mode: 0o755 });
    sums.push(`${createHash("sha256").update(f.bytes).digest("hex")}  ${f.name}`);
  }
  Deno.writeTextFileSync(`${o.dir}/SHA256SUMS`, sums.join("\n") + "\n");
  openssl([
    "pkeyutl",
    "-sign",
    "-inkey",
    o.signingKey,
    "-rawin",
    "-in",
    `${o.dir}/SHA256SUMS`,
    "-out",
    `${o.dir}/SHA256SUMS.sig`,
  ]);
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
    {
      mode: 0o755,
    },
  );
}
