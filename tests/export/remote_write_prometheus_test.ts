/**
 * Remote-write into a real Prometheus (Debian's, with `--web.enable-remote-write-receiver`) on a
 * loopback port with its own storage directory: PromQL answers what the /metrics text said,
 * series that leave the page end at once (stale markers), and a receiver that is down for a while
 * (not started yet, or restarted on the same storage) loses nothing the queue could hold, while
 * a small queue counts exactly what it could not hold. No BPF, no namespace.
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { type RemoteWriteOptions, RemoteWriter } from "../../src/export/remote_write.ts";
import { MetricsRenderer } from "../../src/metrics/exposition.ts";
import {
  BUILD,
  flow,
  freePort,
  metric,
  page,
  Prometheus,
  snapshot,
  testWriter,
  until,
} from "../helpers/remote_write.ts";

const writer = (url: string, over: Partial<RemoteWriteOptions> = {}) => testWriter(url, over);

/** Everything offered was either delivered or dropped, and nothing waits. */
function settled(w: RemoteWriter, offered: number): boolean {
  const st = w.status();
  return st.sent + st.dropped === offered && /, 0 queued,/.test(st.reason);
}

const samplesOf = (text: string) => text.split("\n").filter((l) => l && !l.startsWith("#")).length;

Deno.test("remote-write → Prometheus: PromQL answers what /metrics said", async () => {
  await using prom = new Prometheus(freePort());
  await prom.start();
  const w = writer(prom.url);
  try {
    const r = new MetricsRenderer({
      topFlows: 1,
      interfaceAllow: [],
      interfaceDeny: ["lo"],
      processMetrics: false,
    });
    const t0 = Date.now() - 30_000;
    const steps = [
      { at: t0, packets: 10, flows: [flow(53, 900)] },
      { at: t0 + 5000, packets: 25, flows: [flow(53, 1800)] },
      // Port 443 overtakes: the flow to 53 leaves the top 1.
      { at: t0 + 10_000, packets: 40, flows: [flow(53, 1800), flow(443, 7000)] },
    ];
    const texts: string[] = [];
    let offered = 0;
    for (const s of steps) {
      const snap = snapshot(s.flows, { rxPackets: s.packets, takenAt: s.at });
      w.offer(snap, () => {
        const text = r.renderSnapshot(snap, [], BUILD);
        texts.push(text);
        offered += samplesOf(text);
        return text;
      });
      await new Promise((r) => setTimeout(r, 0)); // read in the background
    }
    assert.equal(texts.length, 3);
    await until("delivery", () => settled(w, offered + 2), 20_000); // + 2 stale markers
    assert.equal(w.status().dropped, 0);
    assert.equal(w.status().state, "healthy");

    const at = (i: number) => steps[i].at / 1000;
    const sel = `{job="x0tta6bl4",instance="${hostname()}"`;
    for (const i of [0, 1, 2]) {
      for (const name of ["x0tta6bl4_interface_packets_total", "x0tta6bl4_interface_bytes_total"]) {
        const want = metric(texts[i], name, { direction: "rx", protocol: "udp" });
        assert.ok(want !== undefined && want > 0);
        assert.equal(
          await prom.value(`${name}${sel},interface="eth0",direction="rx",protocol="udp"}`, at(i)),
          want,
          `${name} at step ${i}`,
        );
      }
      // Every series of the page, and no other (the flow that left is stale, not counted).
      assert.equal(await prom.value(`count(${sel}})`, at(i)), samplesOf(texts[i]), `step ${i}`);
    }
    const flow53 = `x0tta6bl4_flow_bytes_total${sel},dport="53"}`;
    assert.equal(
      await prom.value(flow53, at(1)),
      metric(texts[1], "x0tta6bl4_flow_bytes_total", { dport: "53" }),
    );
    assert.equal(await prom.value(flow53, at(1)), 1800);
    // Gone at once at step 2 (a stale marker), though the lookback is 5 minutes.
    assert.equal(await prom.value(flow53, at(2)), undefined);
    assert.equal(await prom.value(`x0tta6bl4_flow_bytes_total${sel},dport="443"}`, at(2)), 7000);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write → Prometheus: a receiver down for a while loses nothing the queue held", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-prom-rw-" });
  const port = freePort();
  const w = writer(`http://127.0.0.1:${port}/api/v1/write`);
  try {
    const t0 = Date.now() - 60_000;
    let offered = 0;
    const push = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        w.offer(snapshot([], { takenAt: t0 + i * 1000 }), () => page(20, i));
        offered += 20;
        await new Promise((r) => setTimeout(r, 30));
      }
    };
    // Not started yet: every attempt fails, and is retried.
    await push(0, 10);
    await until("failed attempts", () => w.status().failed >= 2);
    assert.equal(w.status().state, "degraded");
    {
      await using prom = new Prometheus(port, { dir });
      await prom.start();
      await until("delivery", () => settled(w, offered));
      assert.equal(await prom.value(`sum(count_over_time(m[1h]))`), 200);
      // Stopped, then restarted on the same storage.
      await prom.stop();
      const failed = w.status().failed;
      await push(10, 15);
      await until("failed attempts while it is down", () => w.status().failed >= failed + 2);
      await prom.start();
      await until("delivery after the restart", () => settled(w, offered));
      assert.equal(await prom.value(`sum(count_over_time(m[1h]))`), 300);
      assert.equal(await prom.value(`count_over_time(m{i="7"}[1h])`), 15);
      assert.equal(await prom.value(`m{i="7"}`, (t0 + 14_000) / 1000), 14);
    }
    const st = w.status();
    assert.deepEqual([st.sent, st.dropped, st.state], [300, 0, "healthy"]);
  } finally {
    await w.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("remote-write → Prometheus: a small queue counts exactly what it could not hold", async () => {
  const port = freePort();
  const w = writer(`http://127.0.0.1:${port}/api/v1/write`, { queueMaxSamples: 1000 });
  try {
    const t0 = Date.now() - 60_000;
    for (let i = 0; i < 10; i++) {
      w.offer(snapshot([], { takenAt: t0 + i * 1000 }), () => page(300, i));
      await new Promise((r) => setTimeout(r, 30));
    }
    assert.equal(w.status().dropped, 2000);
    await using prom = new Prometheus(port);
    await prom.start();
    await until("delivery", () => settled(w, 3000));
    const st = w.status();
    assert.deepEqual([st.sent, st.dropped], [1000, 2000]);
    assert.match(st.reason, /2000 queue full/);
    assert.equal(await prom.value(`sum(count_over_time(m[1h]))`), st.sent);
    // The newest page is whole.
    assert.equal(await prom.value(`count(m == 9)`, (t0 + 9000) / 1000), 300);
  } finally {
    await w.stop();
  }
});
