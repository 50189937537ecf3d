/**
 * install.sh for real: into temporary prefixes, against a release tree served over HTTP on
 * loopback, signed with a test key. The "binary" is a stand-in executable, because `deno
 * compile` cannot fetch its runtime here; everything else (download, signature, checksum,
 * files, modes, idempotence, rollback, uninstall) is the real script doing real work.
 */
import assert from "node:assert/strict";
import { generateKey, publicKeyOf, stampInstaller } from "../../scripts/release.ts";
import { ReleaseServer, STANDIN } from "../helpers/release_server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const BUILD = new URL("../../scripts/build.ts", import.meta.url).pathname;

function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    try {
      for (const e of Deno.readDirSync(d)) {
        const p = `${d}/${e.name}`;
        if (e.isDirectory) walk(p);
        else out.push(p.slice(dir.length));
      }
    } catch { /* absent */ }
  };
  walk(dir);
  return out.sort();
}

const mode = (p: string) => Deno.statSync(p).mode! & 0o777;
const mtimes = (dir: string) => tree(dir).map((f) => Deno.statSync(dir + f).mtime!.getTime());

/** The words of a unit's ExecStart, with systemd's %% and $$ undone (the line has no quotes). */
function execStart(unit: string): string[] {
  const line = unit.split("\n").find((l) => l.startsWith("ExecStart="));
  assert.ok(line, "no ExecStart= line");
  return line.slice("ExecStart=".length).split(" ")
    .map((w) => w.replaceAll("%%", "%").replaceAll("$$", "$"));
}

/** `systemd-analyze verify` over unit files: what it said (nothing, when they are clean). */
function verifyUnits(...files: string[]): { ok: boolean; said: string } {
  const out = new Deno.Command("systemd-analyze", {
    args: ["verify", ...files],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, said: said.trim() };
}

Deno.test("install.sh (stand-in binary): installs, verifies, is idempotent, uninstalls", async () => {
  await using rel = new ReleaseServer();
  rel.publish("v0.1.0");
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  try {
    const first = await rel.install(prefix, ["--no-service"]);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /will work: /);
    assert.match(first.out, /signature and checksum verified/);
    assert.deepEqual(tree(prefix), [
      "/bin/x0tta6bl4",
      "/etc/x0tta6bl4/config.yaml",
      "/var/lib/x0tta6bl4/api-token",
    ]);
    assert.deepEqual(Deno.readFileSync(`${prefix}/bin/x0tta6bl4`), STANDIN);
    assert.equal(mode(`${prefix}/bin/x0tta6bl4`), 0o755);
    assert.equal(mode(`${prefix}/var/lib/x0tta6bl4/api-token`), 0o600);
    assert.match(
      Deno.readTextFileSync(`${prefix}/var/lib/x0tta6bl4/api-token`),
      /^[0-9a-f]{64}\n$/,
    );
    const stamps = tree(prefix).map((f) => Deno.statSync(prefix + f).mtime!.getTime());

    const second = await rel.install(prefix, ["--no-service"]);
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, /already installed: nothing to do/);
    assert.deepEqual(tree(prefix).map((f) => Deno.statSync(prefix + f).mtime!.getTime()), stamps);

    // With the unit: written for this prefix, and systemd accepts it.
    const withUnit = await rel.install(prefix);
    assert.equal(withUnit.code, 0, withUnit.out);
    const unit = `${prefix}/lib/systemd/system/x0tta6bl4.service`;
    assert.match(
      Deno.readTextFileSync(unit),
      new RegExp(`ExecStart=${prefix}/bin/x0tta6bl4 serve`),
    );
    assert.match(
      Deno.readTextFileSync(unit),
      /AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN/,
    );
    assert.match(Deno.readTextFileSync(unit), /User=x0tta6bl4/);
    const verify = new Deno.Command("systemd-analyze", { args: ["verify", unit], stderr: "piped" })
      .outputSync();
    assert.ok(verify.success, new TextDecoder().decode(verify.stderr));

    const un = await rel.install(prefix, ["--uninstall"]);
    assert.equal(un.code, 0, un.out);
    assert.deepEqual(tree(prefix), ["/etc/x0tta6bl4/config.yaml", "/var/lib/x0tta6bl4/api-token"]);
    assert.equal((await rel.install(prefix, ["--uninstall", "--purge"])).code, 0);
    assert.deepEqual(tree(prefix), []);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh --auto-upgrade: a daily upgrade timer for the installer's address, remembered, removed", async () => {
  await using rel = new ReleaseServer();
  rel.publish("0.2.0");
  // A mirror whose address holds an & (special to sed) and a % (special to systemd): the units
  // must carry the address this run was given, not the one stamped into install.sh, unaltered.
  Deno.symlinkSync(".", `${rel.root}/www/m&x%A`);
  const mirror = `${rel.url}/m&x%25A`;
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  const dir = `${prefix}/lib/systemd/system`;
  const unit = `${dir}/x0tta6bl4.service`;
  const service = `${dir}/x0tta6bl4-upgrade.service`;
  const timer = `${dir}/x0tta6bl4-upgrade.timer`;
  const [bin, etc, state] = [
    `${prefix}/bin`,
    `${prefix}/etc/x0tta6bl4`,
    `${prefix}/var/lib/x0tta6bl4`,
  ];
  try {
    const help = await rel.install(prefix, ["--help"]);
    assert.match(help.out, /--auto-upgrade .*x0tta6bl4-upgrade\.timer/);
    assert.match(help.out, /--no-auto-upgrade +remove that timer/);

    // --dry-run says what it would install and changes nothing.
    const dry = await rel.install(prefix, ["--auto-upgrade", "--base-url", mirror, "--dry-run"]);
    assert.equal(dry.code, 0, dry.out);
    assert.match(dry.out, /would install .*\/x0tta6bl4-upgrade\.service/);
    assert.match(dry.out, /would install .*\/x0tta6bl4-upgrade\.timer/);
    assert.deepEqual(tree(prefix), []);

    // An upgrade restarts x0tta6bl4.service: without the service it is refused before any change.
    const noService = await rel.install(prefix, ["--auto-upgrade", "--no-service"]);
    assert.equal(noService.code, 1);
    assert.match(noService.out, /--auto-upgrade needs the service/);
    assert.deepEqual(tree(prefix), []);

    const first = await rel.install(prefix, ["--auto-upgrade", "--base-url", mirror]);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /signature and checksum verified/);
    assert.deepEqual(tree(prefix), [
      "/bin/x0tta6bl4",
      "/etc/x0tta6bl4/config.yaml",
      "/lib/systemd/system/x0tta6bl4-upgrade.service",
      "/lib/systemd/system/x0tta6bl4-upgrade.timer",
      "/lib/systemd/system/x0tta6bl4.service",
      "/var/lib/x0tta6bl4/api-token",
    ]);
    const svc = Deno.readTextFileSync(service);
    const tim = Deno.readTextFileSync(timer);
    for (const text of [svc, tim]) assert.doesNotMatch(text, /@[A-Z_]+@/);
    assert.equal(mode(service), 0o644);
    assert.equal(mode(timer), 0o644);
    // The upgrade from this run's address (plain http, accepted as this run accepted it), for
    // this prefix's binary, config and state.
    assert.deepEqual(execStart(svc), [
      `${bin}/x0tta6bl4`,
      "upgrade",
      "--base-url",
      mirror,
      "--insecure-http",
      "--binary",
      `${bin}/x0tta6bl4`,
      "--config",
      `${etc}/config.yaml`,
      "--state-dir",
      state,
    ]);
    assert.ok(svc.includes(` --base-url ${rel.url}/m&x%%25A `), "% is doubled for systemd");
    assert.match(svc, /^Type=oneshot$/m);
    // Root for the swap and the restart, and nothing more than that needs.
    assert.match(svc, /^User=root$/m);
    assert.match(svc, /^CapabilityBoundingSet=CAP_DAC_OVERRIDE$/m);
    assert.match(svc, /^NoNewPrivileges=yes$/m);
    assert.match(svc, /^ProtectSystem=strict$/m);
    assert.match(svc, new RegExp(`^ReadWritePaths=${bin} ${state}$`, "m"));
    assert.match(svc, /^ProtectHome=yes$/m);
    assert.match(svc, /^SystemCallFilter=@system-service$/m);
    assert.match(svc, /^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$/m);
    assert.doesNotMatch(svc, /^\[Install\]/m, "started by the timer only");
    assert.match(tim, /^OnCalendar=\*-\*-\* 00:00:00$/m);
    assert.match(tim, /^RandomizedDelaySec=6h$/m);
    assert.match(tim, /^Persistent=true$/m);
    assert.match(tim, /^WantedBy=timers\.target$/m);
    const verified = verifyUnits(unit, service, timer);
    assert.ok(verified.ok, verified.said);
    assert.equal(verified.said, "", "systemd-analyze verify has nothing to say about the units");
    // Hardened as far as a root job that swaps a binary and restarts a service can be: systemd's
    // own offline score ("exposure", 0 to 10; 2.0 when written) stays at 2.5 or below.
    const exposure = new Deno.Command("systemd-analyze", {
      args: ["security", "--offline=true", "--threshold=25", service],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    assert.ok(
      exposure.success,
      new TextDecoder().decode(exposure.stdout).split("\n").filter((l) =>
        l.includes("✗") || l.includes("exposure level")
      ).join("\n"),
    );

    // The unit's command line, run by the real upgrade command (with the test key, which the
    // stand-in binary cannot carry), finds this release at that address and records the
    // outcome in the state directory the unit names.
    const pub = `${rel.root}/release.pub`;
    Deno.writeTextFileSync(pub, publicKeyOf(rel.key));
    const check = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...execStart(svc).slice(1), "--check", "--public-key", pub],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(check.stdout) + new TextDecoder().decode(check.stderr);
    assert.equal(check.code, 0, said);
    assert.match(said, /upgrade: available \(running 0\.1\.0, latest 0\.2\.0\)/);
    const recorded = JSON.parse(Deno.readTextFileSync(`${state}/upgrade.json`));
    assert.equal(recorded.outcome, "available");

    // Systemd does not run here, so enabling and starting the timer cannot be tested; the
    // installer says so instead of pretending.
    let systemd = true;
    try {
      Deno.statSync("/run/systemd/system");
    } catch {
      systemd = false;
    }
    if (!systemd) assert.match(first.out, /systemd is not running here: x0tta6bl4-upgrade\.timer/);

    // The same options again: nothing changes.
    const stamps = mtimes(prefix);
    const second = await rel.install(prefix, ["--auto-upgrade", "--base-url", mirror]);
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, /already installed: nothing to do/);
    assert.deepEqual(mtimes(prefix), stamps);

    // Remembered: a run without the option keeps the timer as it is...
    const again = await rel.install(prefix, ["--base-url", mirror]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /keeping the automatic upgrade timer/);
    assert.match(again.out, /already installed: nothing to do/);
    assert.deepEqual(mtimes(prefix), stamps);
    // ...and rewrites it for the address that run used.
    const moved = await rel.install(prefix);
    assert.equal(moved.code, 0, moved.out);
    assert.match(moved.out, /installed .*\/x0tta6bl4-upgrade\.service/);
    assert.equal(execStart(Deno.readTextFileSync(service))[3], rel.url);
    assert.equal(Deno.readTextFileSync(timer), tim);

    // --no-auto-upgrade removes both units, and a later plain run does not bring them back.
    const off = await rel.install(prefix, ["--no-auto-upgrade"]);
    assert.equal(off.code, 0, off.out);
    assert.match(off.out, /removed .*\/x0tta6bl4-upgrade\.timer/);
    assert.match(off.out, /removed .*\/x0tta6bl4-upgrade\.service/);
    const withoutTimer = [
      "/bin/x0tta6bl4",
      "/etc/x0tta6bl4/config.yaml",
      "/lib/systemd/system/x0tta6bl4.service",
      "/var/lib/x0tta6bl4/api-token",
      "/var/lib/x0tta6bl4/upgrade.json",
    ];
    assert.deepEqual(tree(prefix), withoutTimer);
    const plain = await rel.install(prefix);
    assert.equal(plain.code, 0, plain.out);
    assert.match(plain.out, /already installed: nothing to do/);
    assert.deepEqual(tree(prefix), withoutTimer);

    // --uninstall removes the timer and its service with the rest (config and data stay).
    assert.equal((await rel.install(prefix, ["--auto-upgrade"])).code, 0);
    assert.ok(tree(prefix).includes("/lib/systemd/system/x0tta6bl4-upgrade.timer"));
    const dryUn = await rel.install(prefix, ["--uninstall", "--dry-run"]);
    assert.match(dryUn.out, /would run: rm -f .*\/x0tta6bl4-upgrade\.timer/);
    assert.ok(tree(prefix).includes("/lib/systemd/system/x0tta6bl4-upgrade.timer"));
    const un = await rel.install(prefix, ["--uninstall"]);
    assert.equal(un.code, 0, un.out);
    assert.match(un.out, /removed .*\/x0tta6bl4-upgrade\.timer/);
    assert.deepEqual(tree(prefix), [
      "/etc/x0tta6bl4/config.yaml",
      "/var/lib/x0tta6bl4/api-token",
      "/var/lib/x0tta6bl4/upgrade.json",
    ]);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh refuses a checksum mismatch, a bad signature, an unknown architecture", async () => {
  await using rel = new ReleaseServer();
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  try {
    rel.publish("v0.1.0");
    // The binary changed after signing.
    Deno.writeFileSync(
      `${rel.root}/www/latest/x0tta6bl4-linux-x86_64`,
      new TextEncoder().encode("evil"),
    );
    Deno.writeFileSync(
      `${rel.root}/www/latest/x0tta6bl4-linux-aarch64`,
      new TextEncoder().encode("evil"),
    );
    const mismatch = await rel.install(prefix, ["--no-service"]);
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.out, /checksum mismatch for x0tta6bl4-linux-\w+: refusing to install/);
    assert.deepEqual(tree(prefix), []);

    // Signed with another key than the one in install.sh.
    const other = `${rel.root}/other.key`;
    generateKey(other);
    rel.publish("v0.1.0");
    const good = Deno.readFileSync(`${rel.root}/www/latest/install.sh`);
    rel.publish("v0.1.0", STANDIN, { signingKey: other });
    Deno.writeFileSync(`${rel.root}/www/latest/install.sh`, good);
    const badSig = await rel.install(prefix, ["--no-service"]);
    assert.equal(badSig.code, 1);
    assert.match(badSig.out, /signature of SHA256SUMS does not verify: refusing to install/);
    assert.deepEqual(tree(prefix), []);

    // An architecture we do not build for (uname -m answered by a stand-in in PATH).
    const stub = Deno.makeTempDirSync({ prefix: "x0t-uname-" });
    Deno.writeTextFileSync(
      `${stub}/uname`,
      `#!/bin/sh\n[ "$1" = -m ] && { echo mips64; exit 0; }\nexec /bin/uname "$@"\n`,
      { mode: 0o755 },
    );
    const arch = await rel.install(prefix, ["--no-service"], {
      PATH: `${stub}:${Deno.env.get("PATH")}`,
    });
    Deno.removeSync(stub, { recursive: true });
    assert.equal(arch.code, 1);
    assert.match(arch.out, /unsupported architecture: mips64/);
    assert.deepEqual(tree(prefix), []);

    // --dry-run changes nothing.
    rel.publish("v0.1.0");
    const dry = await rel.install(prefix, ["--no-service", "--dry-run"]);
    assert.equal(dry.code, 0, dry.out);
    assert.match(dry.out, /would install .*\/bin\/x0tta6bl4/);
    assert.deepEqual(tree(prefix), []);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh leaves nothing half-installed when a step fails", async () => {
  await using rel = new ReleaseServer();
  rel.publish("v0.1.0");
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  try {
    // The config directory cannot be made (a file stands in its way), after the binary went in.
    Deno.mkdirSync(`${prefix}/etc`);
    Deno.writeTextFileSync(`${prefix}/etc/x0tta6bl4`, "in the way");
    const r = await rel.install(prefix, ["--no-service"]);
    assert.notEqual(r.code, 0);
    assert.deepEqual(tree(prefix), ["/etc/x0tta6bl4"], r.out);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh passes shellcheck, as a template and as published with the units in it", () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-stamped-" });
  try {
    generateKey(`${dir}/release.key`);
    const stamped = stampInstaller(publicKeyOf(`${dir}/release.key`), "https://example.invalid/r");
    assert.doesNotMatch(stamped, /@(PUBLIC_KEY|BASE_URL|UNIT|UPGRADE_SERVICE|UPGRADE_TIMER)@/);
    Deno.writeTextFileSync(`${dir}/install.sh`, stamped);
    for (
      const file of [new URL("../../install.sh", import.meta.url).pathname, `${dir}/install.sh`]
    ) {
      const out = new Deno.Command("shellcheck", { args: ["-s", "sh", file], stdout: "piped" })
        .outputSync();
      assert.ok(out.success, new TextDecoder().decode(out.stdout));
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("scripts/build: a signed release where denort can be had, else a clear message", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-build-" });
  try {
    generateKey(`${dir}/release.key`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", BUILD],
      env: {
        X0TTA6BL4_SIGNING_KEY: `${dir}/release.key`,
        X0TTA6BL4_RELEASE_URL: "http://127.0.0.1:1/releases",
        X0TTA6BL4_TARGETS: "x86_64",
        X0TTA6BL4_DIST: `${dir}/dist`,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (out.success) {
      const rel = [...Deno.readDirSync(`${dir}/dist`)][0].name;
      const files = [...Deno.readDirSync(`${dir}/dist/${rel}`)].map((e) => e.name).sort();
      assert.deepEqual(files, [
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "install.sh",
        "manifest.json",
        "x0tta6bl4-linux-x86_64",
      ]);
    } else {
      // This machine cannot download denort: the build says so and names the way out.
      assert.equal(out.code, 1);
      assert.match(text, /deno compile needs its runtime \(denort [\d.]+\) for x86_64/);
      assert.match(text, /set DENORT_BIN/);
    }
    assert.match(
      new TextDecoder().decode(
        (await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", BUILD],
          env: { X0TTA6BL4_SIGNING_KEY: "" },
          stderr: "piped",
        }).output()).stderr,
      ),
      /set X0TTA6BL4_SIGNING_KEY/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** A stand-in binary that says it is version `v`. */
const standinOf = (v: string) => new TextEncoder().encode(`#!/bin/sh\necho 'x0tta6bl4 ${v}'\n`);

Deno.test("install.sh believes only the signed version: no downgrade unless asked, no stale latest, no mismatch", async () => {
  await using rel = new ReleaseServer();
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  const bin = `${prefix}/bin/x0tta6bl4`;
  const installed = () => Deno.readTextFileSync(bin).match(/x0tta6bl4 (\S+)'/)?.[1];
  try {
    rel.publish("0.10.0", standinOf("0.10.0"));
    const first = await rel.install(prefix, ["--no-service"]);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /signature and checksum verified/);

    // An older release (signed in its day) served as the latest: 0.9.0 is older than 0.10.0.
    rel.publish("0.9.0", standinOf("0.9.0"));
    const older = await rel.install(prefix, ["--no-service"]);
    assert.equal(older.code, 1, older.out);
    assert.match(
      older.out,
      /0\.9\.0 is older than the installed 0\.10\.0: refusing to downgrade .*--allow-downgrade/,
    );
    assert.equal(installed(), "0.10.0");
    const asked = await rel.install(prefix, ["--no-service", "--allow-downgrade"]);
    assert.equal(asked.code, 0, asked.out);
    assert.match(asked.out, /downgrading from 0\.10\.0 to 0\.9\.0 \(--allow-downgrade\)/);
    assert.equal(installed(), "0.9.0");
    // A pinned newer version goes in without asking.
    const pinned = await rel.install(prefix, ["--no-service", "--version", "0.10.0"]);
    assert.equal(pinned.code, 0, pinned.out);
    assert.equal(installed(), "0.10.0");

    // A directory named for one version that holds another's signed files.
    Deno.mkdirSync(`${rel.root}/www/1.0.0`);
    for (const f of ["SHA256SUMS", "SHA256SUMS.sig", "x0tta6bl4-linux-x86_64"]) {
      Deno.copyFileSync(`${rel.root}/www/0.9.0/${f}`, `${rel.root}/www/1.0.0/${f}`);
    }
    const mixed = await rel.install(prefix, ["--no-service", "--version", "1.0.0"]);
    assert.equal(mixed.code, 1, mixed.out);
    assert.match(mixed.out, /\/1\.0\.0 holds version 0\.9\.0, not 1\.0\.0: refusing to install/);

    // A latest/ whose signed data has expired (a mirror serving an old copy) is refused; the
    // same release asked for by its version is not about freshness and goes in.
    rel.publish("0.11.0", standinOf("0.11.0"), { expires: new Date(Date.now() - 1000) });
    const frozen = await rel.install(prefix, ["--no-service"]);
    assert.equal(frozen.code, 1, frozen.out);
    assert.match(frozen.out, /SHA256SUMS at .*\/latest expired on .*\(a freeze attack\)/);
    assert.equal(installed(), "0.10.0");
    assert.equal((await rel.install(prefix, ["--no-service", "--version", "0.11.0"])).code, 0);
    assert.equal(installed(), "0.11.0");
    // The publisher signs latest/ again (nothing else changed), and it is fresh once more.
    const resign = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", BUILD, "--resign", `${rel.root}/www/latest`],
      env: { X0TTA6BL4_SIGNING_KEY: rel.key, X0TTA6BL4_VALID_DAYS: "7" },
      stdout: "piped",
    }).output();
    assert.match(new TextDecoder().decode(resign.stdout), /signed again, valid until/);
    const fresh = await rel.install(prefix, ["--no-service"]);
    assert.equal(fresh.code, 0, fresh.out);
    assert.match(fresh.out, /already installed: nothing to do/);

    // A SHA256SUMS without the signed version (the format before it), even properly signed.
    const sums = `${rel.root}/www/latest/SHA256SUMS`;
    Deno.writeTextFileSync(sums, Deno.readTextFileSync(sums).replace(/^#.*\n/gm, ""));
    const sign = new Deno.Command("openssl", {
      args: ["pkeyutl", "-sign", "-inkey", rel.key, "-rawin", "-in", sums, "-out", `${sums}.sig`],
    }).outputSync();
    assert.ok(sign.success);
    const unversioned = await rel.install(prefix, ["--no-service"]);
    assert.equal(unversioned.code, 1, unversioned.out);
    assert.match(unversioned.out, /SHA256SUMS does not begin with its signed '# version:'/);
    assert.equal(installed(), "0.11.0");
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh refuses a plain http address unless --insecure-http", async () => {
  await using rel = new ReleaseServer();
  rel.publish("0.2.0");
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  try {
    const r = await rel.sh(["--prefix", prefix, "--non-interactive", "--no-service"]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /release address http:\/\/.* is plain http.*pass --insecure-http/);
    const other = await rel.sh(["--prefix", prefix, "--base-url", "ftp://example.invalid/r"]);
    assert.match(other.out, /release address ftp:\/\/example\.invalid\/r is not https:\/\//);
    assert.deepEqual(tree(prefix), []);
    assert.match((await rel.sh(["--help"])).out, /--insecure-http +accept an http:\/\//);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh aborts downloads beyond their limits (endless data)", async () => {
  await using rel = new ReleaseServer();
  rel.publish("0.2.0");
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  try {
    for (const arch of ["x86_64", "aarch64"]) rel.endless(`/latest/x0tta6bl4-linux-${arch}`);
    const binary = await rel.install(prefix, ["--no-service"]);
    assert.equal(binary.code, 1, binary.out);
    assert.match(
      binary.out,
      /\/latest\/x0tta6bl4-linux-\w+ is larger than 268435456 bytes: download aborted/,
    );
    rel.endless("/latest/SHA256SUMS");
    const sums = await rel.install(prefix, ["--no-service"]);
    assert.equal(sums.code, 1, sums.out);
    assert.match(sums.out, /\/latest\/SHA256SUMS is larger than 16384 bytes: download aborted/);
    assert.deepEqual(tree(prefix), []);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});

Deno.test("install.sh writes the token through no link that the state directory's owner planted", async () => {
  await using rel = new ReleaseServer();
  rel.publish("0.2.0");
  const prefix = Deno.makeTempDirSync({ prefix: "x0t-prefix-" });
  const state = `${prefix}/var/lib/x0tta6bl4`;
  const outside = `${prefix}/shadow`;
  try {
    Deno.mkdirSync(state, { recursive: true });
    Deno.writeTextFileSync(outside, "root's\n", { mode: 0o644 });
    // The link is planted at the name the installer once wrote the token to first, api-token.new
    // and its process id: `exec` keeps the id, so the link is there before the installer starts.
    const r = await new Deno.Command("sh", {
      args: [
        "-c",
        'ln -s "$0" "$1/api-token.new.$$" && exec sh "$2" --prefix "$3" --non-interactive ' +
        "--insecure-http --no-service",
        outside,
        state,
        `${rel.root}/www/latest/install.sh`,
        prefix,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    assert.equal(Deno.readTextFileSync(outside), "root's\n");
    assert.equal(mode(outside), 0o644);
    assert.ok(Deno.lstatSync(`${state}/api-token`).isFile);
    assert.equal(mode(`${state}/api-token`), 0o600);
    assert.match(Deno.readTextFileSync(`${state}/api-token`), /^[0-9a-f]{64}\n$/);
  } finally {
    Deno.removeSync(prefix, { recursive: true });
  }
});
