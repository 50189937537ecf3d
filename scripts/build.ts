/**
 * The release build: `deno compile` for x86_64 and aarch64 Linux with the BPF objects and the UI
 * embedded, the version, commit and date stamped in, and a signed release directory.
 *
 *   X0TTA6BL4_SIGNING_KEY=release.key X0TTA6BL4_RELEASE_URL=https://… deno run -A scripts/build.ts
 *
 * Options (environment): X0TTA6BL4_TARGETS (default both), X0TTA6BL4_CHANNEL (stable),
 * X0TTA6BL4_DIST (dist), X0TTA6BL4_VALID_DAYS (how long the signed SHA256SUMS is trusted as
 * the latest release: 30).
 * `deno compile` downloads its runtime (denort) for each target; where it cannot, set DENORT_BIN
 * to a denort binary of this Deno version for the target being built.
 *
 *   X0TTA6BL4_SIGNING_KEY=release.key deno run -A scripts/build.ts --resign DIR
 *
 * signs DIR/SHA256SUMS again, valid for X0TTA6BL4_VALID_DAYS from now (run it on the published
 * latest/ before it expires).
 */
import { dirname } from "node:path";
import { VERSION } from "../src/version.ts";
import { generateKey, publicKeyOf, resign, VALID_DAYS, writeRelease } from "./release.ts";
import { V8_FLAGS } from "./v8_flags.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const TARGETS: Record<string, string> = {
  x86_64: "x86_64-unknown-linux-gnu",
  aarch64: "aarch64-unknown-linux-gnu",
};

function fail(msg: string): never {
  console.error(`build: ${msg}`);
  Deno.exit(1);
}

function run(cmd: string, args: string[], cwd = ROOT) {
  return new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).outputSync();
}

if (Deno.args.includes("--new-key")) {
  const file = Deno.args[Deno.args.indexOf("--new-key") + 1] ?? "release.key";
  generateKey(file);
  console.log(`build: wrote a new Ed25519 release key to ${file}; keep it secret`);
  Deno.exit(0);
}

const key = Deno.env.get("X0TTA6BL4_SIGNING_KEY");
const baseUrl = Deno.env.get("X0TTA6BL4_RELEASE_URL");
if (!key) {
  fail(
    "set X0TTA6BL4_SIGNING_KEY to the Ed25519 release key (make one: scripts/build --new-key FILE)",
  );
}
const days = Number(Deno.env.get("X0TTA6BL4_VALID_DAYS") ?? VALID_DAYS);
if (!(days > 0 && days <= 3660)) {
  fail("X0TTA6BL4_VALID_DAYS must be a number of days from 1 to 3660");
}
const expires = new Date(Date.now() + days * 86_400_000);
if (Deno.args.includes("--resign")) {
  const dir = Deno.args[Deno.args.indexOf("--resign") + 1];
  if (!dir) fail("--resign needs the release directory whose SHA256SUMS to sign again");
  resign(dir, key, expires);
  console.log(`build: ${dir}/SHA256SUMS signed again, valid until ${expires.toISOString()}`);
  Deno.exit(0);
}
if (!baseUrl) fail("set X0TTA6BL4_RELEASE_URL to where the release will be published");
const targets = (Deno.env.get("X0TTA6BL4_TARGETS") ?? "x86_64,aarch64").split(",");
for (const t of targets) if (!TARGETS[t]) fail(`unknown target ${t} (x86_64, aarch64)`);

// A clean copy of the tracked tree plus the built objects, with the build facts stamped in.
const stage = Deno.makeTempDirSync({ prefix: "x0tta6bl4-build-" });
try {
  const files = new TextDecoder().decode(run("git", ["ls-files", "-z"]).stdout).split("\0")
    .filter(Boolean);
  const objects = new TextDecoder().decode(run("find", ["bpf/build", "-name", "*.o"]).stdout)
    .split("\n").filter(Boolean);
  for (const f of [...files, ...objects]) {
    Deno.mkdirSync(dirname(`${stage}/${f}`), { recursive: true });
    Deno.copyFileSync(`${ROOT}${f}`, `${stage}/${f}`);
  }
  const commit = new TextDecoder().decode(run("git", ["rev-parse", "--short=12", "HEAD"]).stdout)
    .trim() || "unknown";
  const date = new Date().toISOString();
  Deno.writeTextFileSync(
    `${stage}/src/build_info.json`,
    JSON.stringify({ commit, date, publicKey: publicKeyOf(key), baseUrl }) + "\n",
  );

  const built: { name: string; bytes: Uint8Array }[] = [];
  for (const t of targets) {
    const out = `${stage}/out/x0tta6bl4-linux-${t}`;
    const r = run(Deno.execPath(), [
      "compile",
      "-A",
      "--frozen",
      V8_FLAGS,
      "--target",
      TARGETS[t],
      "--output",
      out,
      "main.ts",
    ], stage);
    if (!r.success) {
      // The line that says why (deno prints a cause chain, then a backtrace), colours removed.
      // deno-lint-ignore no-control-regex
      const err = new TextDecoder().decode(r.stderr).replace(/\x1b\[[0-9;]*m/g, "").split("\n")
        .findLast((l) => /error/i.test(l) && !/backtrace/i.test(l))?.trim() ?? "unknown error";
      fail(
        `deno compile for ${t} failed: ${err}\n` +
          `build: deno compile needs its runtime (denort ${Deno.version.deno}) for ${
            TARGETS[t]
          }; ` +
          "where it cannot be downloaded, set DENORT_BIN to a denort binary for that target " +
          "(from Deno's release archive denort-" + TARGETS[t] + ".zip) and build one target at " +
          "a time with X0TTA6BL4_TARGETS",
      );
    }
    built.push({ name: `x0tta6bl4-linux-${t}`, bytes: Deno.readFileSync(out) });
  }
  const dist = `${Deno.env.get("X0TTA6BL4_DIST") ?? `${ROOT}dist`}/v${VERSION}`;
  writeRelease({
    dir: dist,
    version: VERSION,
    channel: Deno.env.get("X0TTA6BL4_CHANNEL") ?? "stable",
    files: built,
    signingKey: key,
    baseUrl,
    minKernel: "5.15",
    expires,
  });
  console.log(`build: release ${VERSION} (${commit}) in ${dist}`);
} finally {
  Deno.removeSync(stage, { recursive: true });
}
