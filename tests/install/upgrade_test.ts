/**
 * `x0tta6bl4 upgrade` against a release server on loopback. The binaries are stand-in
 * executables (deno compile cannot fetch its runtime here) that serve /readyz as ready or never
 * ready; download, signature, checksum, atomic swap, restart, readiness wait and rollback are
 * the real upgrade code.
 */
import assert from "node:assert/strict";
import { ReleaseServer } from "../helpers/release_server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const STANDIN = new URL("../helpers/standin.ts", import.meta.url).pathname;

function standin(port: number, mode: "ready" | "never", name: string): Uint8Array {
  return new TextEncoder().encode(
    `#!/bin/sh\nexec ${Deno.execPath()} run -A ${STANDIN} ${port} ${mode} ${name}\n`,
  );
}

Deno.test("upgrade (stand-in binaries): success, corrupted download, never ready → rollback", async () => {
  await using rel = new ReleaseServer();
  const dir = Deno.makeTempDirSync({ prefix: "x0t-upgrade-" });
  const port = 20000 + (Deno.pid % 10000);
  const bin = `${dir}/x0tta6bl4`;
  const pidfile = `${dir}/pid`;
  const restart = `[ -f ${pidfile} ] && kill $(cat ${pidfile}) 2>/dev/null; sleep 0.3; ` +
    `${bin} >/dev/null 2>&1 & echo $! > ${pidfile}`;
  const pub = `${dir}/release.pub`;
  Deno.writeTextFileSync(
    pub,
    new TextDecoder().decode(
      new Deno.Command("openssl", { args: ["pkey", "-in", rel.key, "-pubout"], stdout: "piped" })
        .outputSync().stdout,
    ),
  );
  const upgrade = async (...extra: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "upgrade",
        "--base-url",
        rel.url,
        "--binary",
        bin,
        "--public-key",
        pub,
        "--restart",
        restart,
        "--timeout",
        "3",
        "--listen",
        `127.0.0.1:${port}`,
        "--state-dir",
        dir,
        ...extra,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const status = JSON.parse(Deno.readTextFileSync(`${dir}/upgrade.json`));
    return { code: out.code, out: new TextDecoder().decode(out.stdout), status };
  };
  const readyz = async () => (await (await fetch(`http://127.0.0.1:${port}/readyz`)).text()).trim();
  try {
    // The running "0.1.0".
    Deno.writeFileSync(bin, standin(port, "ready", "old"), { mode: 0o755 });
    new Deno.Command("sh", { args: ["-c", restart] }).outputSync();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await readyz(), "ready: old");

    // --check only reports.
    rel.publish("0.2.0", standin(port, "ready", "new"));
    const check = await upgrade("--check");
    assert.equal(check.code, 0);
    assert.equal(check.status.outcome, "available");
    assert.equal(await readyz(), "ready: old");

    // A corrupted download is refused; nothing changes.
    Deno.writeFileSync(
      `${rel.root}/www/0.2.0/x0tta6bl4-linux-x86_64`,
      new TextEncoder().encode("bad"),
    );
    Deno.writeFileSync(
      `${rel.root}/www/0.2.0/x0tta6bl4-linux-aarch64`,
      new TextEncoder().encode("bad"),
    );
    const corrupt = await upgrade();
    assert.equal(corrupt.code, 1);
    assert.equal(corrupt.status.outcome, "failed");
    assert.match(corrupt.status.error, /checksum mismatch/);
    assert.equal(await readyz(), "ready: old");

    // A release that never becomes ready is rolled back; the old one serves again.
    rel.publish("0.2.0", standin(port, "never", "broken"));
    const broken = await upgrade();
    assert.equal(broken.code, 1, broken.out);
    assert.equal(broken.status.outcome, "rolled-back");
    assert.match(broken.status.error, /did not become ready .*0\.1\.0 is back and ready/);
    assert.equal(await readyz(), "ready: old");
    assert.match(Deno.readTextFileSync(bin), /ready old/);

    // A good release goes in.
    rel.publish("0.2.0", standin(port, "ready", "new"));
    const good = await upgrade();
    assert.equal(good.code, 0, good.out);
    assert.equal(good.status.outcome, "upgraded");
    assert.equal(await readyz(), "ready: new");
    assert.match(Deno.readTextFileSync(`${bin}.prev`), /ready old/);
  } finally {
    try {
      Deno.kill(Number(Deno.readTextFileSync(pidfile)), "SIGTERM");
    } catch { /* not running */ }
    await new Promise((r) => setTimeout(r, 200));
    Deno.removeSync(dir, { recursive: true });
  }
});
