/**
 * `x0tta6bl4 upgrade` against a release server on loopback. The binaries are stand-in
 * executables (deno compile cannot fetch its runtime here) that serve /readyz and
 * /api/v1/health as a ready, never ready, fallback-mode or unhealthy release, and answer health
 * only with the API token; download, signature, version and expiry checks, size limits, atomic
 * swap, restart, readiness and health wait and rollback are the real upgrade code. The running
 * version is this tree's (0.1.0).
 */
import assert from "node:assert/strict";
import { publicKeyOf } from "../../scripts/release.ts";
import { ReleaseServer } from "../helpers/release_server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const STANDIN = new URL("../helpers/standin.ts", import.meta.url).pathname;

type Kind = "ready" | "never" | "fallback" | "unhealthy" | "cannot-start";
let nextPort = 20000 + (Deno.pid % 5000) * 2;

/** A stand-in appliance "installed" in a temporary directory, its state and token beside it. */
class Box implements AsyncDisposable {
  readonly rel = new ReleaseServer();
  readonly dir = Deno.makeTempDirSync({ prefix: "x0t-upgrade-" });
  readonly port = nextPort++;
  readonly bin = `${this.dir}/x0tta6bl4`;
  readonly pidfile = `${this.dir}/pid`;
  readonly token = `${this.dir}/api-token`;
  readonly pub = `${this.dir}/release.pub`;
  /** Stops the running stand-in, then starts the binary, unless it "cannot start". */
  readonly restart = `[ -f ${this.pidfile} ] && kill $(cat ${this.pidfile}) 2>/dev/null; ` +
    `sleep 0.3; if grep -q cannot-start ${this.bin}; then ` +
    `echo 'x0tta6bl4.service: start request repeated too quickly' >&2; exit 1; fi; ` +
    `${this.bin} >/dev/null 2>&1 & echo $! > ${this.pidfile}`;

  constructor() {
    Deno.writeTextFileSync(this.pub, publicKeyOf(this.rel.key));
    Deno.writeTextFileSync(this.token, "0123456789abcdef0123456789abcdef\n", { mode: 0o600 });
  }

  standin(kind: Kind, name: string): Uint8Array {
    return new TextEncoder().encode(
      `#!/bin/sh\n# ${kind}\n` +
        `exec ${Deno.execPath()} run -A ${STANDIN} ${this.port} ${kind} ${name} ${this.token}\n`,
    );
  }

  /** Installs and starts the running "0.1.0". */
  async start(kind: Kind = "ready") {
    Deno.writeFileSync(this.bin, this.standin(kind, "old"), { mode: 0o755 });
    new Deno.Command("sh", { args: ["-c", this.restart] }).outputSync();
    for (let i = 0; i < 50 && await this.readyz() !== "ready: old"; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await this.readyz(), "ready: old");
  }

  async readyz(): Promise<string> {
    try {
      return (await (await fetch(`http://127.0.0.1:${this.port}/readyz`)).text()).trim();
    } catch {
      return "down";
    }
  }

  /** Runs the upgrade command (from this plain-HTTP server: --insecure-http unless `http`). */
  async upgrade(extra: string[] = [], { http = true } = {}) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "upgrade",
        "--base-url",
        this.rel.url,
        ...(http ? ["--insecure-http"] : []),
        "--binary",
        this.bin,
        "--public-key",
        this.pub,
        "--restart",
        this.restart,
        "--timeout",
        "3",
        "--listen",
        `127.0.0.1:${this.port}`,
        "--state-dir",
        this.dir,
        ...extra,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const status = JSON.parse(Deno.readTextFileSync(`${this.dir}/upgrade.json`));
    return { code: out.code, out: said, status };
  }

  /** The installed binary is still the running "old" one. */
  assertUnchanged() {
    assert.match(Deno.readTextFileSync(this.bin), /ready old/);
  }

  async [Symbol.asyncDispose]() {
    try {
      Deno.kill(Number(Deno.readTextFileSync(this.pidfile)), "SIGTERM");
    } catch { /* not running */ }
    await new Promise((r) => setTimeout(r, 200));
    Deno.removeSync(this.dir, { recursive: true });
    await this.rel[Symbol.asyncDispose]();
  }
}

Deno.test("upgrade (stand-in binaries): success, corrupted download, never ready → rollback", async () => {
  await using box = new Box();
  const { rel } = box;
  await box.start();

  // --check only reports.
  rel.publish("0.2.0", box.standin("ready", "new"));
  const check = await box.upgrade(["--check"]);
  assert.equal(check.code, 0, check.out);
  assert.equal(check.status.outcome, "available");
  assert.equal(await box.readyz(), "ready: old");

  // A corrupted download is refused; nothing changes.
  for (const arch of ["x86_64", "aarch64"]) {
    Deno.writeTextFileSync(`${rel.root}/www/0.2.0/x0tta6bl4-linux-${arch}`, "bad");
  }
  const corrupt = await box.upgrade();
  assert.equal(corrupt.code, 1);
  assert.equal(corrupt.status.outcome, "failed");
  assert.match(corrupt.status.error, /checksum mismatch/);
  assert.equal(await box.readyz(), "ready: old");

  // A release that never becomes ready is rolled back; the old one serves again.
  rel.publish("0.2.0", box.standin("never", "broken"));
  const broken = await box.upgrade();
  assert.equal(broken.code, 1, broken.out);
  assert.equal(broken.status.outcome, "rolled-back");
  assert.match(broken.status.error, /did not become ready .*0\.1\.0 is back and ready/);
  assert.equal(await box.readyz(), "ready: old");
  box.assertUnchanged();

  // A good release goes in: its health (read with the token, which the stand-in demands) is fit.
  rel.publish("0.2.0", box.standin("ready", "new"));
  const good = await box.upgrade();
  assert.equal(good.code, 0, good.out);
  assert.equal(good.status.outcome, "upgraded");
  assert.equal(await box.readyz(), "ready: new");
  assert.match(Deno.readTextFileSync(`${box.bin}.prev`), /ready old/);
});

Deno.test("upgrade refuses an older signed release (rollback attack) unless --allow-downgrade", async () => {
  await using box = new Box();
  const { rel } = box;
  await box.start();

  // An old release, properly signed in its day, served as the latest.
  rel.publish("0.0.9", box.standin("ready", "older"));
  for (const extra of [[], ["--check"]]) {
    const r = await box.upgrade(extra);
    assert.equal(r.code, 1, r.out);
    assert.equal(r.status.outcome, "failed");
    assert.equal(r.status.latest, "0.0.9");
    assert.match(
      r.status.error,
      /the latest release is 0\.0\.9, older than the running 0\.1\.0: refusing to downgrade.*--allow-downgrade/,
    );
    box.assertUnchanged();
  }

  // The version is believed only from signed data: an unsigned manifest.json does not count,
  // and a SHA256SUMS whose version line was changed no longer verifies.
  Deno.writeTextFileSync(`${rel.root}/www/latest/manifest.json`, '{"version":"9.9.9"}');
  assert.match((await box.upgrade()).status.error, /older than the running/);
  const sums = `${rel.root}/www/latest/SHA256SUMS`;
  Deno.writeTextFileSync(sums, Deno.readTextFileSync(sums).replace("0.0.9", "0.9.0"));
  const forged = await box.upgrade();
  assert.equal(forged.status.outcome, "failed");
  assert.match(forged.status.error, /signature of SHA256SUMS does not verify/);
  box.assertUnchanged();

  // Asked for: it goes in.
  rel.publish("0.0.9", box.standin("ready", "older"));
  const allowed = await box.upgrade(["--allow-downgrade"]);
  assert.equal(allowed.code, 0, allowed.out);
  assert.equal(allowed.status.outcome, "upgraded");
  assert.equal(await box.readyz(), "ready: older");
});

Deno.test("upgrade refuses plain http without --insecure-http, and expired signed data (freeze)", async () => {
  await using box = new Box();
  const { rel } = box;
  await box.start();
  rel.publish("0.2.0", box.standin("ready", "new"));

  const http = await box.upgrade([], { http: false });
  assert.equal(http.code, 1, http.out);
  assert.equal(http.status.outcome, "failed");
  assert.match(http.status.error, /is plain http.*use https:\/\/, or pass --insecure-http/);
  box.assertUnchanged();

  // A mirror that keeps serving an old latest/ (signed, but past its expiry).
  rel.publish("0.2.0", box.standin("ready", "new"), { expires: new Date(Date.now() - 1000) });
  const frozen = await box.upgrade(["--check"]);
  assert.equal(frozen.code, 1, frozen.out);
  assert.equal(frozen.status.outcome, "failed");
  assert.match(frozen.status.error, /SHA256SUMS at .*\/latest expired on .*freeze attack/);
  box.assertUnchanged();
});

Deno.test("upgrade rolls back a release that comes up in fallback mode or with an unhealthy component", async () => {
  await using box = new Box();
  const { rel } = box;
  await box.start();

  rel.publish("0.2.0", box.standin("fallback", "no-ebpf"));
  const fallback = await box.upgrade();
  assert.equal(fallback.code, 1, fallback.out);
  assert.equal(fallback.status.outcome, "rolled-back");
  assert.match(
    fallback.status.error,
    /0\.2\.0 runs in fallback mode \(BPF objects failed to load\) where 0\.1\.0 ran eBPF; 0\.1\.0 is back and ready/,
  );
  assert.equal(await box.readyz(), "ready: old");
  box.assertUnchanged();

  rel.publish("0.2.0", box.standin("unhealthy", "sick"));
  const sick = await box.upgrade();
  assert.equal(sick.status.outcome, "rolled-back");
  assert.match(sick.status.error, /0\.2\.0 reports collector unhealthy \(ring buffer lost\)/);
  assert.equal(await box.readyz(), "ready: old");
  box.assertUnchanged();
});

Deno.test("upgrade keeps a release in fallback mode, or with an unhealthy component, where the old one was so too", async () => {
  await using box = new Box();
  await box.start("fallback");
  box.rel.publish("0.2.0", box.standin("fallback", "new"));
  const fallback = await box.upgrade();
  assert.equal(fallback.code, 0, fallback.out);
  assert.equal(fallback.status.outcome, "upgraded");

  // The new release may be what fixes it: a component unhealthy before does not hold it back.
  await box.start("unhealthy");
  box.rel.publish("0.2.0", box.standin("unhealthy", "new"));
  const sick = await box.upgrade();
  assert.equal(sick.code, 0, sick.out);
  assert.equal(sick.status.outcome, "upgraded");
});

Deno.test("upgrade puts the old binary back and restarts it when the restart fails", async () => {
  await using box = new Box();
  await box.start();
  box.rel.publish("0.2.0", box.standin("cannot-start", "new"));
  const r = await box.upgrade();
  assert.equal(r.code, 1, r.out);
  assert.equal(r.status.outcome, "rolled-back");
  assert.match(
    r.status.error,
    /restart \(.*\) failed: x0tta6bl4\.service: start request repeated too quickly; 0\.1\.0 is back and ready/,
  );
  box.assertUnchanged();
  assert.equal(await box.readyz(), "ready: old");
});

Deno.test("upgrade aborts downloads beyond their limits (endless data)", async () => {
  await using box = new Box();
  const { rel } = box;
  await box.start();
  rel.publish("0.2.0", box.standin("ready", "new"));

  for (const arch of ["x86_64", "aarch64"]) rel.endless(`/0.2.0/x0tta6bl4-linux-${arch}`);
  const binary = await box.upgrade();
  assert.equal(binary.status.outcome, "failed");
  assert.match(
    binary.status.error,
    /\/0\.2\.0\/x0tta6bl4-linux-\w+ is larger than 256 MiB: download aborted/,
  );
  box.assertUnchanged();
  assert.equal(await box.readyz(), "ready: old");

  rel.endless("/latest/SHA256SUMS");
  const sums = await box.upgrade(["--check"]);
  assert.equal(sums.status.outcome, "failed");
  assert.match(sums.status.error, /\/latest\/SHA256SUMS is larger than 16 KiB: download aborted/);
});

Deno.test("upgrade writes upgrade.json through no link that the state directory's owner planted", async () => {
  await using box = new Box();
  const { rel, dir } = box;
  rel.publish("0.2.0", box.standin("ready", "new"));
  const outside = Deno.makeTempDirSync({ prefix: "x0t-outside-" });
  try {
    // Links at the record and at the name it is first written to, pointing at root's files.
    const targets = [`${outside}/shadow`, `${outside}/passwd`];
    for (const t of targets) Deno.writeTextFileSync(t, "root's\n", { mode: 0o640 });
    Deno.symlinkSync(targets[0], `${dir}/upgrade.json`);
    Deno.symlinkSync(targets[1], `${dir}/upgrade.json.new`);
    const r = await box.upgrade(["--check"]);
    assert.equal(r.status.outcome, "available", r.out);
    for (const t of targets) {
      assert.equal(Deno.readTextFileSync(t), "root's\n");
      assert.equal(Deno.statSync(t).mode! & 0o777, 0o640);
    }
    assert.ok(Deno.lstatSync(`${dir}/upgrade.json`).isFile);
    assert.equal(Deno.statSync(`${dir}/upgrade.json`).mode! & 0o777, 0o644);

    // Nor does it read a token file that is a link to a file of root's (and send it on).
    Deno.removeSync(box.token);
    Deno.symlinkSync(targets[0], box.token);
    const token = await box.upgrade();
    assert.equal(token.status.outcome, "failed");
    assert.match(token.status.error, /API token file .* is not a small regular file/);
  } finally {
    Deno.removeSync(outside, { recursive: true });
  }
});
