/**
 * Release files: the installer stamped with the public key, the download address and the
 * systemd unit; SHA256SUMS and its detached Ed25519 signature (openssl); a manifest. Used by
 * scripts/build and by the installer's tests.
 */
import { createHash } from "node:crypto";

const ROOT = new URL("../", import.meta.url).pathname;

export function stampInstaller(publicKeyPem: string, baseUrl: string): string {
  const template = Deno.readTextFileSync(`${ROOT}install.sh`);
  const unit = Deno.readTextFileSync(`${ROOT}deploy/systemd/x0tta6bl4.service`).trimEnd();
  return template.replace("@PUBLIC_KEY@", publicKeyPem.trim()).replace("@BASE_URL@", baseUrl)
    .replace("@UNIT@", unit);
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
