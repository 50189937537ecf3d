/**
 * install.sh for real: into temporary prefixes, against a release tree served over HTTP on
 * loopback, signed with a test key. The "binary" is a stand-in executable, because `deno
 * compile` cannot fetch its runtime here; everything else (download, signature, checksum,
 * files, modes, idempotence, rollback, uninstall) is the real script doing real work.
 */
import assert from "node:assert/strict";
import { generateKey } from "../../scripts/release.ts";
import { ReleaseServer, STANDIN } from "../helpers/release_server.ts";

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
    rel.publish("v0.1.0", STANDIN, other);
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

Deno.test("install.sh passes shellcheck", () => {
  const out = new Deno.Command("shellcheck", {
    args: ["-s", "sh", new URL("../../install.sh", import.meta.url).pathname],
    stdout: "piped",
  }).outputSync();
  assert.ok(out.success, new TextDecoder().decode(out.stdout));
});

Deno.test("scripts/build: a signed release where denort can be had, else a clear message", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-build-" });
  try {
    generateKey(`${dir}/release.key`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../../scripts/build.ts", import.meta.url).pathname],
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
          args: ["run", "-A", new URL("../../scripts/build.ts", import.meta.url).pathname],
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
