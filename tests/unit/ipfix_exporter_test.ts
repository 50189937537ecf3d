/**
 * The IPFIX exporter without a network: snapshots made from objects, a clock the test moves and
 * a transport that keeps (or refuses) what it is given. What a collector sums per flow must be
 * what the snapshots counted, through timeouts, evictions, a collector that cannot be reached and
 * restarts (clean, with the collector down, and after a crash).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { defaultConfig } from "../../src/config/schema.ts";
import { EndReason } from "../../src/export/ipfix.ts";
import {
  IpfixExporter,
  type IpfixOptions,
  stateFileBase,
} from "../../src/export/ipfix_exporter.ts";
import { ExportedLog, FlowStates } from "../../src/export/ipfix_state.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import {
  Clock,
  collect,
  FakeTransport,
  flow,
  flowKey,
  SECOND,
  settle,
  snapshot,
  sums,
} from "../export/fixtures.ts";

function make(
  clock: Clock,
  transport: FakeTransport,
  o: Partial<IpfixOptions> = {},
): IpfixExporter {
  return new IpfixExporter({
    collector: "127.0.0.1:4739",
    observationDomainId: 9,
    activeTimeoutS: 60,
    idleTimeoutS: 15,
    templateRefreshS: 300,
    queueMaxRecords: 65536,
    monoNs: clock.mono,
    wallMs: clock.wall,
    transport,
    ...o,
  });
}

/** Flows at time `clock` with these counters (packets; bytes are 100 per packet). */
function at(clock: Clock, fs: { f: FlowSnapshot; packets: number; quiet?: boolean }[]) {
  return snapshot(fs.map(({ f, packets, quiet }) => ({
    ...f,
    packets,
    bytes: packets * 100,
    lastSeenNs: quiet ? f.lastSeenNs : clock.ns,
  })));
}

Deno.test("delta counts: idle, active and forced end; sums equal the last counters", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t);
  const a = flow(1, { firstSeenNs: clock.ns }), b = flow(2, { firstSeenNs: clock.ns });
  const bLast = clock.ns;
  e.offer(at(clock, [{ f: a, packets: 10 }, { f: b, packets: 5 }]), () => "");
  await settle();
  assert.equal(t.sent.length, 0, "nothing is due yet");
  clock.advance(10);
  e.offer(
    at(clock, [{ f: a, packets: 30 }, { f: { ...b, lastSeenNs: bLast }, packets: 5, quiet: true }]),
    () => "",
  );
  clock.advance(10); // b silent for 20 s: idle
  e.offer(
    at(clock, [{ f: a, packets: 50 }, { f: { ...b, lastSeenNs: bLast }, packets: 5, quiet: true }]),
    () => "",
  );
  await settle();
  let got = collect(t.sent).records;
  assert.deepEqual(got.map((r) => [r.key, r.packets, r.octets, r.reason]), [
    [flowKey(b), 5, 500, EndReason.idleTimeout],
  ]);
  assert.equal(got[0].startMs, clock.wallAtZero + b.firstSeenNs / 1e6);
  assert.equal(got[0].endMs, clock.wallAtZero + bLast / 1e6);
  assert.equal(got[0].ifindex, b.ifindex);
  clock.advance(45); // a's record open for 65 s: active timeout
  e.offer(
    at(clock, [{ f: a, packets: 80 }, { f: { ...b, lastSeenNs: bLast }, packets: 5, quiet: true }]),
    () => "",
  );
  clock.advance(5);
  e.offer(
    at(clock, [{ f: a, packets: 81 }, { f: { ...b, lastSeenNs: bLast }, packets: 5, quiet: true }]),
    () => "",
  );
  await e.stop();
  got = collect(t.sent).records;
  assert.deepEqual(got.slice(1).map((r) => [r.key, r.packets, r.reason]), [
    [flowKey(a), 80, EndReason.activeTimeout],
    [flowKey(a), 1, EndReason.forcedEnd],
  ]);
  // The continuation starts after the previous record's end, and not before the last snapshot.
  assert.ok(got[2].startMs >= got[1].endMs);
  assert.deepEqual(e.byReason, { idle: 1, active: 1, end: 0, forced: 1, evicted: 0 });
  assert.ok(t.closed);
  const s = e.status();
  assert.equal(s.state, "healthy");
  assert.equal(s.sent, 3);
  assert.match(s.reason, /sent 3 records in \d+ messages, 0 queued, 0 dropped, 0 failed sends/);
});

Deno.test("templates first; sequence numbers count every data record sent before (RFC 7011 3.1)", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t, { idleTimeoutS: 1 });
  const flows = Array.from({ length: 300 }, (_, i) => flow(i, { firstSeenNs: clock.ns }));
  e.offer(at(clock, flows.map((f) => ({ f, packets: 3 }))), () => "");
  clock.advance(2);
  e.offer(at(clock, flows.map((f) => ({ f, packets: 3, quiet: true }))), () => "");
  await e.stop();
  const { records, sequences, templateMessages } = collect(t.sent);
  assert.equal(records.length, 300);
  assert.equal(templateMessages, 1);
  let expected = 0;
  for (const s of sequences) {
    assert.equal(s.sequence, expected);
    expected += s.dataRecords;
  }
  assert.equal(expected, 301, "300 flow records and the sampling options record");
  assert.ok(t.sent.every((m) => m.length <= 1400));
});

Deno.test("templates again every template_refresh_s", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t, { templateRefreshS: 1, idleTimeoutS: 1 });
  const f = flow(1, { firstSeenNs: clock.ns });
  e.offer(at(clock, [{ f, packets: 1 }]), () => "");
  clock.advance(2);
  e.offer(at(clock, [{ f, packets: 1, quiet: true }]), () => "");
  await settle();
  await new Promise((r) => setTimeout(r, 1100));
  e.offer(at(clock, [{ f, packets: 2 }]), () => "");
  clock.advance(2);
  e.offer(at(clock, [{ f, packets: 2, quiet: true }]), () => "");
  await e.stop();
  assert.equal(collect(t.sent).templateMessages, 2);
});

Deno.test("eviction: a flow gone from the table, or replaced under its key, ends with its last counts", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t);
  const a = flow(4, { firstSeenNs: clock.ns }), b = flow(5, { firstSeenNs: clock.ns });
  e.offer(at(clock, [{ f: a, packets: 7 }, { f: b, packets: 9 }]), () => "");
  clock.advance(1);
  e.offer(at(clock, [{ f: a, packets: 8 }]), () => ""); // b evicted
  clock.advance(1);
  const a2 = { ...a, firstSeenNs: clock.ns }; // a evicted and made again by a new packet
  e.offer(at(clock, [{ f: a2, packets: 2 }]), () => "");
  await e.stop();
  const got = collect(t.sent).records.map((r) => [r.key, r.packets, r.reason]);
  assert.deepEqual(got, [
    [flowKey(b), 9, EndReason.lackOfResources],
    [flowKey(a), 8, EndReason.lackOfResources],
    [flowKey(a), 2, EndReason.forcedEnd],
  ]);
  assert.equal(e.byReason.evicted, 2);
});

Deno.test("counters lower for one snapshot are a read that missed a cache flush; for two, a new flow", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t);
  const a = flow(6, { firstSeenNs: clock.ns });
  for (const p of [50, 40, 55]) { // 40: a read between the table and the cache
    e.offer(at(clock, [{ f: a, packets: p }]), () => "");
    clock.advance(1);
  }
  for (const p of [3, 4, 6]) { // evicted; the key now holds only what a cache flushed back
    e.offer(at(clock, [{ f: a, packets: p }]), () => "");
    clock.advance(1);
  }
  await e.stop();
  const got = collect(t.sent).records.map((r) => [r.packets, r.reason]);
  assert.deepEqual(got, [[55, EndReason.lackOfResources], [6, EndReason.forcedEnd]]);
});

Deno.test("end of flow: a TCP flow with FIN or RST ends once a snapshot shows it quiet", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t);
  const a = flow(8, { firstSeenNs: clock.ns, tcpFlags: 0x11 }); // TCP (8 % 4 = 0), FIN|ACK
  assert.equal(a.proto, 6);
  e.offer(at(clock, [{ f: a, packets: 10 }]), () => "");
  clock.advance(1);
  e.offer(at(clock, [{ f: a, packets: 10, quiet: true }]), () => "");
  await settle();
  assert.deepEqual(collect(t.sent).records.map((r) => [r.packets, r.reason, r.flags]), [
    [10, EndReason.endOfFlow, 0x11],
  ]);
  clock.advance(1); // the last ACK, then quiet again
  e.offer(at(clock, [{ f: a, packets: 11 }]), () => "");
  clock.advance(1);
  e.offer(at(clock, [{ f: a, packets: 11, quiet: true }]), () => "");
  await e.stop();
  assert.deepEqual(collect(t.sent).records.map((r) => [r.packets, r.reason]), [
    [10, EndReason.endOfFlow],
    [1, EndReason.endOfFlow],
  ]);
});

Deno.test("a collector that cannot be reached: bounded queue, oldest dropped and counted, never thrown", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const logs: string[] = [];
  const e = make(clock, t, {
    queueMaxRecords: 100,
    idleTimeoutS: 1,
    log: (level, msg) => logs.push(`${level} ${msg}`),
  });
  t.failWith = "ENETUNREACH";
  const flows = Array.from({ length: 300 }, (_, i) => flow(i, { firstSeenNs: clock.ns }));
  e.offer(at(clock, flows.map((f) => ({ f, packets: 1 }))), () => "");
  clock.advance(2);
  e.offer(at(clock, flows.map((f) => ({ f, packets: 1, quiet: true }))), () => "");
  await settle();
  let s = e.status();
  assert.equal(s.state, "degraded");
  assert.equal(s.sent, 0);
  // Whole messages are dropped, oldest first, until at most 100 records wait.
  const queued = 300 - s.dropped;
  assert.ok(queued <= 100 && queued > 70, `${queued} queued`);
  // What /metrics shows of it (src/export/metrics.ts).
  assert.deepEqual(
    [s.kind, s.destination, s.queued, s.droppedBy, s.lastSuccessAt],
    ["ipfix", "127.0.0.1:4739", queued, { queue_full: 300 - queued, stopped: 0 }, undefined],
  );
  assert.ok(s.failed >= 1);
  assert.match(s.lastError!, /send to 127\.0\.0\.1:4739: ENETUNREACH/);
  assert.match(s.reason, /sending fails.*records dropped in the last minute/);
  assert.equal(logs.filter((l) => l.startsWith("warn")).length, 1, "one warning, not one a send");
  // The collector comes back: after the backoff, templates first, then the 100 kept.
  t.failWith = undefined;
  await new Promise((r) => setTimeout(r, 400));
  const { records, templateMessages } = collect(t.sent);
  assert.equal(templateMessages, 1);
  assert.equal(records.length, queued);
  s = e.status();
  assert.equal(s.sent, queued);
  assert.equal(s.sent + s.dropped, 300);
  assert.deepEqual([s.queued, s.lastSuccessAt, s.state], [0, clock.wall(), "degraded"]);
  assert.match(
    s.reason,
    /^records dropped in the last minute \(queue full\) \(sent \d+ records in \d+ messages, 0 queued, \d+ dropped, \d+ failed sends; last error: send to 127\.0\.0\.1:4739: ENETUNREACH\)$/,
  );
  assert.ok(logs.some((l) => l === "info IPFIX: sending again"));
  await e.stop();
});

Deno.test("a collector name that resolves to nothing is counted, never thrown", async () => {
  const clock = new Clock(), t = new FakeTransport();
  let asked = 0;
  const e = make(clock, t, {
    collector: "collector.invalid:4739",
    idleTimeoutS: 1,
    resolve: () => {
      asked++;
      return Promise.reject(new Error("getaddrinfo ENOTFOUND collector.invalid"));
    },
    stopGraceMs: 100,
  });
  const f = flow(1, { firstSeenNs: clock.ns });
  e.offer(at(clock, [{ f, packets: 1 }]), () => "");
  clock.advance(2);
  e.offer(at(clock, [{ f, packets: 1, quiet: true }]), () => "");
  await settle();
  const s = e.status();
  assert.equal(s.state, "degraded");
  assert.match(s.lastError!, /cannot resolve collector\.invalid: getaddrinfo ENOTFOUND/);
  assert.equal(t.attempts, 0);
  await e.stop();
  assert.ok(asked >= 2, "asked again at stop");
  assert.equal(e.status().dropped, 1, "no state directory to keep it for the next start: lost");
  assert.deepEqual(e.status().droppedBy, { queue_full: 0, stopped: 1 });
});

Deno.test("a snapshot of the fallback collector says nothing about the kernel's flows", async () => {
  const clock = new Clock(), t = new FakeTransport();
  const e = make(clock, t);
  const a = flow(3, { firstSeenNs: clock.ns });
  e.offer(at(clock, [{ f: a, packets: 4 }]), () => "");
  e.offer(snapshot([], "fallback"), () => "");
  clock.advance(1);
  e.offer(at(clock, [{ f: a, packets: 6 }]), () => "");
  await e.stop();
  await e.stop(); // twice is harmless
  e.offer(at(clock, [{ f: a, packets: 9 }]), () => ""); // after stop: ignored
  assert.deepEqual(collect(t.sent).records.map((r) => [r.packets, r.reason]), [
    [6, EndReason.forcedEnd],
  ]);
});

Deno.test("restart: resumes from what was exported; a replaced flow starts from 0", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-ipfix-" });
  try {
    const clock = new Clock(), t = new FakeTransport();
    const path = stateFileBase(dir, "127.0.0.1:4739");
    const [a, b, c] = [1, 2, 3].map((i) => flow(i, { firstSeenNs: clock.ns }));
    const d = flow(4, { firstSeenNs: clock.ns + 5 * SECOND });
    const e1 = make(clock, t, { statePath: path });
    assert.equal(e1.restored, 0);
    e1.offer(
      at(clock, [{ f: a, packets: 10 }, { f: b, packets: 20 }, { f: c, packets: 30 }]),
      () => "",
    );
    await e1.stop();
    assert.ok(Deno.statSync(`${path}.state`).isFile);
    // The kernel's table went on while the appliance was down.
    clock.advance(5);
    const e2 = make(clock, t, { statePath: path });
    assert.equal(e2.restored, 3);
    const c2 = { ...c, firstSeenNs: clock.ns }; // c was evicted and made again
    e2.offer(
      at(clock, [{ f: a, packets: 15 }, { f: b, packets: 20, quiet: true }, { f: c2, packets: 2 }, {
        f: d,
        packets: 4,
      }]),
      () => "",
    );
    await e2.stop();
    const got = sums(collect(t.sent).records);
    assert.deepEqual(got.get(flowKey(a)), { packets: 15, octets: 1500 });
    assert.deepEqual(got.get(flowKey(b)), { packets: 20, octets: 2000 });
    assert.deepEqual(got.get(flowKey(c)), { packets: 32, octets: 3200 });
    assert.deepEqual(got.get(flowKey(d)), { packets: 4, octets: 400 });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("restart with the collector down at stop: what was not sent is sent after the restart", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-ipfix-" });
  try {
    const clock = new Clock(), down = new FakeTransport(), up = new FakeTransport();
    const path = stateFileBase(dir, "[::1]:4739");
    const flows = Array.from({ length: 50 }, (_, i) => flow(i, { firstSeenNs: clock.ns }));
    const e1 = make(clock, up, { statePath: path, collector: "[::1]:4739", stopGraceMs: 50 });
    e1.offer(at(clock, flows.map((f, i) => ({ f, packets: i + 1 }))), () => "");
    await settle();
    up.failWith = "ECONNREFUSED";
    clock.advance(70); // every record active-timed out, none can be sent
    e1.offer(at(clock, flows.map((f, i) => ({ f, packets: 2 * (i + 1) }))), () => "");
    await e1.stop();
    assert.equal(e1.status().sent, 0);
    up.failWith = undefined;
    const e2 = make(clock, up, { statePath: path, collector: "[::1]:4739" });
    clock.advance(1);
    e2.offer(at(clock, flows.map((f, i) => ({ f, packets: 2 * (i + 1) }))), () => "");
    await e2.stop();
    const got = sums(collect([...down.sent, ...up.sent]).records);
    flows.forEach((f, i) => assert.equal(got.get(flowKey(f))?.packets, 2 * (i + 1), flowKey(f)));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  name: "restart after a crash: the journal says what was exported; nothing counted twice",
  // The crashed exporter's journal stays open, as it would in a process that died.
  sanitizeResources: false,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "x0t-ipfix-" });
    try {
      const clock = new Clock(), t = new FakeTransport();
      const path = stateFileBase(dir, "127.0.0.1:4739");
      const flows = Array.from({ length: 40 }, (_, i) => flow(i, { firstSeenNs: clock.ns }));
      const crashed = make(clock, t, { statePath: path, activeTimeoutS: 10 });
      crashed.offer(at(clock, flows.map((f) => ({ f, packets: 5 }))), () => "");
      clock.advance(11);
      crashed.offer(at(clock, flows.map((f) => ({ f, packets: 8 }))), () => ""); // exported: 8
      await settle();
      assert.equal(crashed.status().sent, 40);
      // No stop(): the process died. The next run finds the journal.
      clock.advance(1);
      const next = make(clock, t, { statePath: path, activeTimeoutS: 10 });
      assert.equal(next.restored, 40);
      next.offer(at(clock, flows.map((f) => ({ f, packets: 9 }))), () => "");
      await next.stop();
      const got = sums(collect(t.sent).records);
      for (const f of flows) assert.equal(got.get(flowKey(f))?.packets, 9);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("state from another boot, or not ours, is not restored and does not throw", () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-ipfix-" });
  try {
    const base = `${dir}/ipfix-x`;
    const s = new FlowStates();
    const w = new Uint32Array(11);
    w[0] = 42;
    const slot = s.insert(w, 0, s.hashOf(w, 0));
    s.exPackets[slot] = s.packets[slot] = 3;
    const thisBoot = new Uint8Array(16).fill(1), otherBoot = new Uint8Array(16).fill(2);
    assert.ok(new ExportedLog(base, thisBoot).compact(s));
    assert.equal(new ExportedLog(base, thisBoot).load(new FlowStates()), 1);
    assert.equal(new ExportedLog(base, otherBoot).load(new FlowStates()), 0);
    for (
      const garbage of [
        new Uint8Array(0),
        new Uint8Array(7),
        crypto.getRandomValues(new Uint8Array(4096)),
      ]
    ) {
      Deno.writeFileSync(`${base}.state`, garbage);
      Deno.writeFileSync(`${base}.journal`, garbage);
      const log = new ExportedLog(base, thisBoot);
      assert.equal(log.load(new FlowStates()), 0);
      assert.equal(log.error, undefined);
    }
    // A state directory that cannot be written: counted in status, exporting goes on.
    const e = make(new Clock(), new FakeTransport(), { statePath: "/proc/x0t-no-such/ipfix-x" });
    assert.match(e.status().reason, /cannot write .*a restart may count flows twice/);
    assert.equal(e.status().state, "degraded");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the flow table: 5000 flows in and out, rows reused, the index rebuilt without deleted entries", () => {
  const w = new Uint32Array(11);
  {
    // Every flow in and out while the index grows under it: none is found after its removal.
    const small = new FlowStates(16);
    for (let i = 0; i < 100; i++) {
      w[0] = i;
      small.insert(w, 0, small.hashOf(w, 0));
    }
    for (let i = 0; i < 100; i++) {
      w[0] = i;
      small.remove(small.find(w, 0, small.hashOf(w, 0)));
      assert.equal(small.find(w, 0, small.hashOf(w, 0)), -1, `flow ${i} still found`);
    }
    assert.equal(small.size, 0);
    w[0] = 0;
  }
  const s = new FlowStates(16);
  const slots = new Map<number, number>();
  for (let i = 0; i < 5000; i++) {
    w[0] = i;
    w[10] = i * 7;
    const h = s.hashOf(w, 0);
    assert.equal(s.find(w, 0, h), -1);
    const slot = s.insert(w, 0, h);
    s.packets[slot] = i;
    slots.set(i, slot);
  }
  assert.equal(s.size, 5000);
  for (let i = 0; i < 5000; i += 2) {
    w[0] = i;
    w[10] = i * 7;
    s.remove(s.find(w, 0, s.hashOf(w, 0)));
    assert.equal(s.find(w, 0, s.hashOf(w, 0)), -1);
  }
  for (let round = 0; round < 4; round++) { // tombstones make it rebuild in place
    for (let i = 10_000; i < 12_500; i++) {
      w[0] = i + round * 10_000;
      const slot = s.insert(w, 0, s.hashOf(w, 0));
      s.remove(slot);
    }
  }
  assert.equal(s.size, 2500);
  for (let i = 1; i < 5000; i += 2) {
    w[0] = i;
    w[10] = i * 7;
    const slot = s.find(w, 0, s.hashOf(w, 0));
    assert.ok(slot >= 0);
    assert.equal(s.packets[slot], i);
  }
  assert.ok(s.capacity <= 8192, `capacity ${s.capacity}`);
});

Deno.test("fromConfig: one exporter per collector, named as health shows it", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-ipfix-" });
  try {
    const c = defaultConfig();
    c.state_dir = dir;
    c.export.ipfix.collectors = ["127.0.0.1:4739", "[::1]:4740"];
    const xs = IpfixExporter.fromConfig(c, () => {}, () => 0);
    assert.deepEqual(xs.map((x) => x.name), ["ipfix 127.0.0.1:4739", "ipfix [::1]:4740"]);
    for (const x of xs) await x.stop();
    assert.ok(Deno.statSync(`${dir}/ipfix-127.0.0.1_4739.state`).isFile);
    assert.ok(Deno.statSync(`${dir}/ipfix-___1__4740.state`).isFile);
    c.export.ipfix.collectors = [];
    assert.deepEqual(IpfixExporter.fromConfig(c, () => {}), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("property: whatever the kernel's table does, a collector's sums are its last counts", async () => {
  type Step = { action: "grow" | "same" | "dip" | "vanish" | "again"; n: number };
  const step = fc.record({
    action: fc.constantFrom("grow", "grow", "same", "dip", "vanish", "again") as fc.Arbitrary<
      Step["action"]
    >,
    n: fc.integer({ min: 1, max: 1000 }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(step, { minLength: 6, maxLength: 6 }), { minLength: 1, maxLength: 25 }),
      fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 25, maxLength: 25 }),
      async (steps, gaps) => {
        const clock = new Clock(), t = new FakeTransport();
        const e = make(clock, t, { activeTimeoutS: 30, idleTimeoutS: 10 });
        const keys = Array.from({ length: 6 }, (_, i) => flow(i));
        const live = keys.map(() => ({ alive: false, first: 0, count: 0, dipped: false }));
        const truth = keys.map(() => 0);
        let made = 0;
        for (let k = 0; k < steps.length; k++) {
          clock.advance(gaps[k]);
          const shown: FlowSnapshot[] = [];
          steps[k].forEach((s, i) => {
            const m = live[i];
            const dip = s.action === "dip" && m.alive && m.count > 1 && !m.dipped;
            m.dipped = dip;
            if (s.action === "vanish" && m.alive) {
              truth[i] += m.count;
              m.alive = false;
              return;
            }
            if (s.action === "again" || !m.alive) {
              if (m.alive) truth[i] += m.count;
              // A flow made again has a later first packet (the kernel's clock moves on).
              Object.assign(m, { alive: true, first: clock.ns + ++made, count: s.n });
            } else if (s.action === "grow") m.count += s.n;
            const packets = dip ? m.count - 1 : m.count;
            shown.push({
              ...keys[i],
              firstSeenNs: m.first,
              lastSeenNs: clock.ns,
              packets,
              bytes: packets * 100,
            });
          });
          e.offer(snapshot(shown), () => "");
        }
        live.forEach((m, i) => {
          if (m.alive) truth[i] += m.count;
        });
        await e.stop();
        const { records } = collect(t.sent);
        for (const r of records) {
          assert.ok(r.packets > 0 && r.octets === r.packets * 100, JSON.stringify(r));
          assert.ok(r.startMs <= r.endMs);
        }
        const got = sums(records);
        keys.forEach((f, i) => assert.equal(got.get(flowKey(f))?.packets ?? 0, truth[i]));
      },
    ),
    { numRuns: 150 },
  );
});
