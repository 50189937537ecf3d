/**
 * Versions compare the same in `x0tta6bl4 upgrade` and in install.sh (semver precedence): each
 * pair through compareVersions and through the installer's own shell functions.
 */
import assert from "node:assert/strict";
import { compareVersions } from "../../src/cli/upgrade.ts";

/** The installer's version functions: its "# ---- versions" section, run in sh. */
const SECTION = Deno.readTextFileSync(new URL("../../install.sh", import.meta.url))
  .match(/^# ---- versions.*\n([\s\S]*?)^# ---- /m)?.[1];

function sh(script: string): string {
  assert.ok(SECTION, "install.sh has no '# ---- versions' section");
  const out = new Deno.Command("sh", { args: ["-c", `${SECTION}\n${script}`], stdout: "piped" })
    .outputSync();
  return new TextDecoder().decode(out.stdout).trim();
}

/** Each pair: the first is older than the second. */
const OLDER: [string, string][] = [
  ["0.9.0", "0.10.0"],
  ["0.1.0", "0.1.1"],
  ["0.99.99", "1.0.0"],
  ["1.9.0", "1.10.0"],
  ["1.0.0-rc.1", "1.0.0"],
  ["1.0.0-alpha", "1.0.0-alpha.1"],
  ["1.0.0-alpha.1", "1.0.0-alpha.beta"],
  ["1.0.0-alpha.beta", "1.0.0-beta"],
  ["1.0.0-beta.2", "1.0.0-beta.11"],
  ["1.0.0-beta.11", "1.0.0-rc.1"],
  ["1.0.0-2", "1.0.0-a"],
  ["v0.1.0", "0.2.0"],
];

Deno.test("versions: semver precedence, the same in upgrade.ts and install.sh", () => {
  const pairs = [...OLDER, ...OLDER.map(([a, b]) => [b, a])];
  const expected = [...OLDER.map(() => -1), ...OLDER.map(() => 1), 0, 0];
  pairs.push(["0.1.0", "v0.1.0"], ["1.0.0-rc.1", "1.0.0-rc.1"]);
  assert.deepEqual(pairs.map(([a, b]) => compareVersions(a, b)), expected);
  const shell = sh(pairs.map(([a, b]) => `version_cmp '${a}' '${b}'`).join("\n"));
  assert.deepEqual(shell.split("\n").map(Number), expected);
});

Deno.test("versions: what is not a version is refused by both", () => {
  const valid = ["0.1.0", "v1.2.3", "1.2.3-rc.1", "1.2.3-x-y.7", "10.20.30"];
  const invalid = ["", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3 x", "../1.2.3"];
  for (const v of valid) assert.equal(compareVersions(v, v), 0);
  for (const v of invalid) assert.throws(() => compareVersions(v, "0.1.0"), /is not a version/);
  const checks = [...valid, ...invalid].map((v) => `valid_version '${v}' && echo y || echo n`);
  assert.deepEqual(
    sh(checks.join("\n")).split("\n"),
    [...valid.map(() => "y"), ...invalid.map(() => "n")],
  );
});
