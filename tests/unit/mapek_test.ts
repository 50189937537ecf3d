/**
 * The MAPE-K loop's pure parts: baselines, the allow-list, the analyzer's detectors and
 * evidence, the planner's guards, and the SQLite knowledge store (in a temporary file).
 */
import assert from "node:assert/strict";
import { Baseline } from "../../src/mapek/baseline.ts";
import { AllowList } from "../../src/mapek/allow.ts";
import { dependencyEntries } from "../../src/mapek/depends.ts";
import { cidrContains, parseCidr } from "../../src/net/cidr.ts";
import { Analyzer, type AnalyzerOptions, type Symptom } from "../../src/mapek/analyze.ts";
import { Monitor, type Observation, type SourceObservation } from "../../src/mapek/monitor.ts";
import { FlowTable } from "../../src/flows/table.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { type Action, plan, type PlannerOptions } from "../../src/mapek/plan.ts";
import { Knowledge } from "../../src/mapek/knowledge.ts";
import { MapekLoop } from "../../src/mapek/loop.ts";
import { StateStore } from "../../src/state/store.ts";
import type { Enforcer } from "../../src/datapath/enforce.ts";
import { parseAddress } from "../../src/net/address.ts";
import { flowOf, snapshotOf } from "../helpers/snapshot.ts";

const A: AnalyzerOptions = {
  floodPps: 1000,
  halfOpenPerS: 100,
  scanPorts: 20,
  scanWindowS: 10,
  dropsPerS: 100,
  meshLoss: 0.2,
  flowTableFill: 0.9,
};

function obs(sources: Partial<SourceObservation>[], extra: Partial<Observation> = {}): Observation {
  return {
    at: 0,
    intervalS: 1,
    sources: new Map(sources.map((s) => [s.address!, {
      address: s.address!,
      pps: 0,
      bps: 0,
      repliesPps: 0,
      halfOpen: 0,
      scanPorts: 0,
      verified: true,
      ...s,
    }])),
    busiestPps: Math.max(0, ...sources.map((s) => s.pps ?? 0)),
    halfOpenByDestination: new Map(),
    dropsPerS: new Map(),
    flowTable: { fill: 0.1, evictedPerS: 0, entries: 10, capacity: 100 },
    ringLoss: { kernel: 0, consumer: 0 },
    mesh: [],
    ...extra,
  };
}

Deno.test("mapek: a baseline's median and MAD ignore outliers; thresholds use floors until learned", () => {
  const b = new Baseline(100);
  for (let i = 0; i < 29; i++) b.add(100 + (i % 5)); // 100..104
  const rule = { floor: 50, deviations: 8, ratio: 4, minSamples: 30 };
  assert.equal(b.threshold(rule).learned, false);
  assert.equal(b.threshold(rule).threshold, 50);
  b.add(1e6); // one outlier
  const t = b.threshold(rule);
  assert.equal(t.learned, true);
  assert.equal(t.stats.median, 102);
  assert.ok(t.stats.mad > 1 && t.stats.mad < 5, `mad ${t.stats.mad}`);
  assert.equal(t.threshold, 408, "4 × median dominates 102 + 8·MAD");
  // A window keeps the newest values, oldest first.
  const w = new Baseline(3, [1, 2, 3, 4]);
  w.add(5);
  assert.deepEqual(w.values(), [3, 4, 5]);
  w.add(Number.NaN);
  assert.deepEqual(w.values(), [3, 4, 5], "not a number is not learned");
});

Deno.test("mapek: CIDRs parse, contain, and reject bad input with the reason", () => {
  const c = parseCidr("10.1.0.0/16");
  assert.ok(cidrContains(c, 4, parseAddress("10.1.200.3").bytes));
  assert.ok(!cidrContains(c, 4, parseAddress("10.2.0.1").bytes));
  assert.ok(!cidrContains(c, 6, parseAddress("::a01:1").bytes), "families never mix");
  assert.ok(cidrContains(parseCidr("2001:db8::/33"), 6, parseAddress("2001:db8:7fff::1").bytes));
  assert.ok(!cidrContains(parseCidr("2001:db8::/33"), 6, parseAddress("2001:db8:8000::1").bytes));
  assert.ok(cidrContains(parseCidr("0.0.0.0/0"), 4, parseAddress("8.8.8.8").bytes));
  assert.equal(parseCidr("192.0.2.7").bits, 32);
  assert.throws(() => parseCidr("10.0.0.0/33"), /prefix length not 0..32/);
  assert.throws(() => parseCidr("10.0.0/8"), /not an IPv4 or IPv6 address/);
  assert.throws(() => parseCidr("10.0.0.0/8/1"), /not a CIDR/);
  const allow = new AllowList();
  allow.set([{ cidr: c, why: "configured" }]);
  assert.equal(allow.match("10.1.2.3"), "configured");
  assert.equal(allow.match("10.9.2.3"), undefined);
  assert.equal(allow.match("not-an-address"), undefined);
});

Deno.test("mapek: the analyzer flags a flooding source with evidence, and learns normal traffic", () => {
  const an = new Analyzer(A);
  for (let i = 0; i < 40; i++) {
    assert.deepEqual(an.analyze(obs([{ address: "192.0.2.1", pps: 200 + i }])), []);
  }
  const [s] = an.analyze(obs([{ address: "192.0.2.1", pps: 5000, topDestination: "192.0.2.9" }]));
  assert.equal(s.kind, "source_flood");
  assert.equal(s.source, "192.0.2.1");
  assert.match(s.summary, /192\.0\.2\.1 sends 5000 packets\/s \(mostly to 192\.0\.2\.9\)/);
  const e = s.evidence[0];
  assert.equal(e.value, 5000);
  assert.equal(e.threshold, 1000, "the floor, above the learned 4 × median");
  assert.equal(e.baseline?.samples, 40);
  assert.equal(e.learning, undefined, "learned: no floor stands in");
  assert.ok(Math.abs(e.baseline!.median - 219.5) < 1e-9);
  // The flood itself is not learned: the baseline still has 40 samples.
  assert.equal(an.baselines.get("source_pps:192.0.2.1")!.stats().samples, 40);
  // A box whose normal is higher: the learned baseline raises the threshold above the floor.
  const busy = new Analyzer(A);
  for (let i = 0; i < 40; i++) busy.analyze(obs([{ address: "192.0.2.2", pps: 900 + (i % 3) }]));
  assert.deepEqual(busy.analyze(obs([{ address: "192.0.2.2", pps: 1500 }])), []);
  assert.equal(busy.analyze(obs([{ address: "192.0.2.2", pps: 4000 }]))[0].kind, "source_flood");
});

Deno.test("mapek: a source the box answers (a download it asked for) is no flood, however fast", () => {
  const an = new Analyzer(A);
  assert.deepEqual(
    an.analyze(obs([{ address: "192.0.2.1", pps: 50_000, repliesPps: 20_000 }])),
    [],
  );
  const [s] = an.analyze(obs([{ address: "192.0.2.1", pps: 50_000, repliesPps: 1000 }]));
  assert.equal(s.kind, "source_flood");
  assert.deepEqual([s.evidence[1].value, s.evidence[1].threshold], [1000, 5000]);
  assert.equal(s.evidence[0].learning, true, "a new source: the floor while learning");
  assert.equal(s.evidence[1].learning, undefined, "the share of replies is a fixed threshold");
  assert.match(s.summary, /gets 1000 back/);
});

Deno.test("mapek: SYN floods name their main source only when one sent most of it", () => {
  const an = new Analyzer(A);
  const one = an.analyze(obs([], {
    halfOpenByDestination: new Map([["192.0.2.9:80", {
      perS: 500,
      sources: new Map([["192.0.2.1", 450], ["192.0.2.2", 50]]),
    }]]),
  }));
  assert.equal(one[0].kind, "syn_flood");
  assert.equal(one[0].source, "192.0.2.1");
  assert.equal(one[0].evidence[1].value, 0.9);
  const spread = an.analyze(obs([], {
    halfOpenByDestination: new Map([["192.0.2.9:80", {
      perS: 500,
      sources: new Map(Array.from({ length: 10 }, (_, i) => [`198.51.100.${i}`, 50])),
    }]]),
  }));
  assert.equal(spread[0].source, undefined, "spoofed-looking spread: no one source to act on");
});

Deno.test("mapek: scans, drop rises, mesh, table pressure and ring loss are symptoms", () => {
  const an = new Analyzer(A);
  const out = an.analyze(obs([{ address: "192.0.2.5", pps: 10, scanPorts: 64 }], {
    dropsPerS: new Map([["NETFILTER_DROP", 300], ["NO_SOCKET", 5]]),
    flowTable: { fill: 0.95, evictedPerS: 0, entries: 95, capacity: 100 },
    ringLoss: { kernel: 3, consumer: 0 },
    mesh: [
      {
        name: "edge-2",
        state: "alive",
        loss: { ratio: 0.3, window: 200 },
        rtt: { ewmaSeconds: 0.001 },
      } as unknown as Observation["mesh"][number],
    ],
  }));
  const by = new Map(out.map((s) => [s.kind, s]));
  assert.deepEqual([...by.keys()].sort(), [
    "drop_rise",
    "flow_table_pressure",
    "mesh_degraded",
    "port_scan",
    "ringbuf_loss",
  ]);
  assert.equal(by.get("port_scan")!.evidence[0].value, 64);
  assert.equal(by.get("drop_rise")!.subject, "NETFILTER_DROP");
  assert.match(by.get("mesh_degraded")!.summary, /loses 30% of probes/);
  assert.match(by.get("flow_table_pressure")!.summary, /95% full/);
});

const P: PlannerOptions = {
  mode: "enforce",
  policies: {
    source_flood: "block",
    syn_flood: "rate_limit",
    port_scan: "block",
    drop_rise: "none",
    mesh_degraded: "mark_degraded",
    flow_table_pressure: "shrink_top_n",
    ringbuf_loss: "sample_events",
  },
  ttlS: 60,
  maxActions: 2,
  maxUnverified: 2,
  unverifiedPerStep: 2,
  ratePps: 100,
  shrinkTopN: 10,
  sampleShift: 3,
};

const flood = (src: string): Symptom => ({
  kind: "source_flood",
  subject: src,
  source: src,
  summary: "",
  evidence: [],
});

Deno.test("mapek: the planner acts within its guards and says why at every step", () => {
  const allow = new AllowList();
  allow.set([{ cidr: parseCidr("192.0.2.0/24"), why: "mesh peer edge-2" }]);
  const recent = new Map<string, number>();
  const ps = plan(
    [flood("198.51.100.1"), flood("192.0.2.7"), flood("198.51.100.2"), flood("198.51.100.3")],
    [],
    recent,
    allow,
    P,
    1000,
  );
  assert.deepEqual(ps.map((p) => p.decision.outcome), [
    "executed",
    "skipped",
    "executed",
    "skipped",
  ]);
  assert.match(ps[1].decision.reason, /192\.0\.2\.7 is allow-listed \(mesh peer edge-2\)/);
  assert.match(ps[3].decision.reason, /cap of 2 active actions/);
  const a = ps[0].action!;
  assert.deepEqual([a.kind, a.target, a.state, a.expiresAt], [
    "block",
    "198.51.100.1",
    "active",
    61_000,
  ]);
  assert.match(ps[0].decision.reason, /block 198\.51\.100\.1 in the datapath for 60 s/);
  // While its action lives, the same subject gets no new decision.
  const live: Action[] = [a, ps[2].action!];
  assert.deepEqual(plan([flood("198.51.100.1")], live, new Map(), allow, P, 2000), []);
  // Reported-only symptoms are decided once per TTL.
  const drop: Symptom = { kind: "drop_rise", subject: "NO_SOCKET", summary: "", evidence: [] };
  assert.equal(plan([drop], [], recent, allow, P, 3000)[0].decision.outcome, "reported");
  assert.deepEqual(plan([drop], [], recent, allow, P, 4000), []);
  assert.equal(plan([drop], [], recent, allow, P, 64_000).length, 1);
  // Observe mode: planned, never executed, and no cap applies.
  const o = plan([flood("203.0.113.1")], live, new Map(), allow, { ...P, mode: "observe" }, 5000);
  assert.equal(o[0].decision.outcome, "observed");
  assert.equal(o[0].action!.state, "observed");
  assert.match(o[0].decision.reason, /^would block 203\.0\.113\.1 .*observe mode: not executed/);
  // A SYN flood without one main source has nothing safe to act on.
  const syn: Symptom = { kind: "syn_flood", subject: "192.0.2.9:80", summary: "", evidence: [] };
  assert.match(
    plan([syn], [], new Map(), allow, P, 6000)[0].decision.reason,
    /needs one source to act on/,
  );
});

Deno.test("mapek: knowledge survives reopening: baselines, decisions newest first, live actions", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const file = `${dir}/knowledge.db`;
    const k = new Knowledge(file);
    k.saveBaselines({ "source_pps:192.0.2.1": [1, 2, 3] });
    const ps = plan([flood("198.51.100.1")], [], new Map(), new AllowList(), P, 1000);
    k.addDecision(ps[0].decision);
    k.addDecision({ ...ps[0].decision, id: "later", at: 2000 });
    k.putAction(ps[0].action!);
    k.putAction({ ...ps[0].action!, id: "gone", state: "expired" });
    k.close();
    const k2 = new Knowledge(file);
    assert.deepEqual(k2.baselines(), { "source_pps:192.0.2.1": [1, 2, 3] });
    assert.deepEqual(k2.decisions(10).map((d) => d.id), ["later", ps[0].decision.id]);
    assert.deepEqual(k2.actions().map((a) => a.id), [ps[0].action!.id]);
    assert.equal(k2.actions(true).length, 2);
    k2.close();
    assert.throws(
      () => new Knowledge(`${dir}/missing/dir/k.db`),
      /cannot open the knowledge store/,
    );
    // A file that is not a database: refused with its name (the appliance then keeps its
    // knowledge in memory and says so in health).
    Deno.writeTextFileSync(`${dir}/garbage.db`, "not a database\n".repeat(500));
    assert.throws(
      () => new Knowledge(`${dir}/garbage.db`),
      /cannot open the knowledge store .*garbage\.db/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("mapek: the monitor turns snapshots into rates per source, across sources that come and go", () => {
  const m = new Monitor({ scanWindowS: 10, floodPps: 100, scanPorts: 20 });
  const flow = (saddr: string, packets: number, sport = 1000) =>
    flowOf({ saddr, sport, dport: 53, packets, bytes: packets * 100 });
  const snap = (at: number, flows: FlowSnapshot[]) => snapshotOf(flows, { takenAt: at });
  const now = 1e12; // flows first seen long before: outside the scan window
  // What the box sends back to a source: its egress flows towards it.
  const reply = (packets: number): FlowSnapshot => ({
    ...flow("192.0.2.1", packets),
    hook: "tcEgress",
    direction: "tx",
    daddr: "198.51.100.1",
  });
  assert.equal(
    m.observe(snap(1000, [flow("198.51.100.1", 10), reply(5)]), now),
    undefined,
    "primes",
  );
  // Two flows of one source add up; 500 packets in 0.5 s is 1000/s.
  let o = m.observe(
    snap(1500, [flow("198.51.100.1", 300), flow("198.51.100.1", 210, 1001), reply(105)]),
    now,
  )!;
  assert.equal(o.sources.get("198.51.100.1")!.pps, 1000);
  assert.equal(o.sources.get("198.51.100.1")!.repliesPps, 200);
  assert.equal(o.sources.get("198.51.100.1")!.bps, 100_000);
  assert.equal(o.busiestPps, 1000);
  // Many sources once (the totals compact after they leave), then the first one again, new.
  const many = Array.from({ length: 3000 }, (_, i) => flow(`10.0.${i >> 8}.${i & 255}`, 1));
  m.observe(snap(2000, many), now);
  o = m.observe(snap(2500, [flow("198.51.100.1", 40)]), now)!;
  assert.equal(o.sources.get("198.51.100.1")!.pps, 80, "back after leaving: counted from 0");
  o = m.observe(snap(3000, [flow("198.51.100.1", 40)]), now)!;
  assert.equal(o.busiestPps, 0);
  assert.equal(o.sources.size, 0, "quiet sources are counted, not reported");
});

Deno.test("mapek: a long scan is not learned as normal: the threshold stays at the floor", () => {
  const an = new Analyzer(A);
  for (let i = 0; i < 100; i++) {
    const [s] = an.analyze(obs([{ address: "192.0.2.5", scanPorts: 400 }]));
    assert.equal(s.kind, "port_scan");
    assert.equal(s.evidence[0].threshold, 20, `interval ${i}`);
  }
});

Deno.test("mapek: one block or rate limit per source, whichever symptom asks", () => {
  const a = plan([flood("198.51.100.1")], [], new Map(), new AllowList(), P, 1000)[0].action!;
  const scan: Symptom = {
    kind: "syn_flood",
    subject: "192.0.2.9:80",
    source: "198.51.100.1",
    summary: "",
    evidence: [],
  };
  assert.deepEqual(plan([scan], [a], new Map(), new AllowList(), P, 2000), []);
});

Deno.test("mapek: switching observe to enforce ends the plans, so the next interval acts", () => {
  let cap: number | undefined;
  const store = new StateStore();
  const loop = new MapekLoop({ ...A, ...P, mode: "observe" }, {
    knowledge: new Knowledge(":memory:"),
    allow: new AllowList(),
    events: store.events,
    health: store.health,
    effectors: { enforcer: () => undefined, setTopFlows: (n) => cap = n },
  });
  const full = (at: number) => ({
    takenAt: at,
    mode: "ebpf" as const,
    interfaces: [],
    flows: FlowTable.from([]),
    flowTable: { entries: 95, capacity: 100, created: 95, evicted: 0, insertFailed: 0 },
    events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
    programs: [],
    bpfStatsEnabled: false,
  });
  loop.step(full(1000), 0);
  assert.equal(loop.step(full(2000), 1e9)[0].outcome, "observed");
  assert.equal(cap, undefined);
  loop.reconfigure({ ...A, ...P, mode: "enforce" });
  assert.equal(loop.actions(true)[0].state, "revoked");
  assert.match(loop.actions(true)[0].endReason!, /mapek\.mode is enforce/);
  const [d] = loop.step(full(3000), 2e9);
  assert.equal(d.outcome, "executed");
  assert.equal(cap, 10);
  // Back to observe: what is in force is revoked and undone.
  loop.reconfigure({ ...A, ...P, mode: "observe" });
  assert.equal(cap, undefined);
  assert.equal(loop.live().length, 0);
  loop.close();
});

Deno.test("mapek: spoofable sources have a budget; a source that completed a conversation always finds room", () => {
  const scan = (src: string, verified: boolean): Symptom => ({
    kind: "port_scan",
    subject: src,
    source: src,
    verified,
    summary: "",
    evidence: [],
  });
  const o = { ...P, maxActions: 8, maxUnverified: 4, unverifiedPerStep: 2 };
  // 200 spoofed sources, each scanning, then one real attacker: it is planned first.
  const spoofed = Array.from({ length: 200 }, (_, i) => scan(`203.0.${i >> 8}.${i & 255}`, false));
  const real = scan("198.51.100.9", true);
  const live: Action[] = [];
  const recent = new Map<string, number>();
  let ps = plan([...spoofed, real], live, recent, new AllowList(), o, 1000);
  assert.equal(ps[0].action?.target, "198.51.100.9");
  assert.equal(ps[0].action?.verified, true);
  assert.deepEqual(ps.slice(1).map((p) => p.action?.verified), [false, false]);
  assert.equal(ps.deferred, 198, "the rest waits: no decision recorded for each spoofed address");
  live.push(...ps.map((p) => p.action!));
  // Next interval: two more spoofed ones, then the live budget for them (4) is spent.
  ps = plan(spoofed, live, recent, new AllowList(), o, 2000);
  assert.equal(ps.length, 2);
  live.push(...ps.map((p) => p.action!));
  ps = plan(spoofed, live, recent, new AllowList(), o, 3000);
  assert.deepEqual(ps, []);
  assert.equal(ps.deferred, 196);
  // The cap still holds room for real attackers: 5 of 8 in force.
  const more = ["198.51.100.10", "198.51.100.11", "198.51.100.12"].map((a) => scan(a, true));
  ps = plan(more, live, recent, new AllowList(), o, 4000);
  assert.deepEqual(ps.map((p) => p.decision.outcome), ["executed", "executed", "executed"]);
  // A plain neighbour that scans (it never completed a connection either) is still acted on.
  ps = plan([scan("10.201.9.3", false)], [], new Map(), new AllowList(), o, 5000);
  assert.equal(ps[0].decision.outcome, "executed");
  // An allow-listed spoofed address is skipped with its reason, never silently deferred.
  const allow = new AllowList();
  allow.set([{ cidr: parseCidr("10.201.9.1"), why: "default gateway (eth0)" }]);
  ps = plan([scan("10.201.9.1", false)], live, new Map(), allow, o, 6000);
  assert.match(ps[0].decision.reason, /allow-listed \(default gateway \(eth0\)\)/);
});

Deno.test("mapek: a source is verified only when this box sent it TCP payload", () => {
  const m = new Monitor({ scanWindowS: 10, floodPps: 100, scanPorts: 2 });
  const base = {
    ifindex: 2,
    interface: "eth0",
    family: 4 as const,
    proto: 6,
    daddr: "192.0.2.1",
    sport: 40000,
    firstSeenNs: 1e12,
    lastSeenNs: 1e12,
    fragment: false,
  };
  const syn = (saddr: string, dport: number): FlowSnapshot => ({
    ...base,
    direction: "rx",
    hook: "tcIngress",
    saddr,
    dport,
    packets: 1,
    bytes: 74,
    tcpFlags: 0x02,
  });
  const back = (daddr: string, packets: number, bytes: number): FlowSnapshot => ({
    ...base,
    direction: "tx",
    hook: "tcEgress",
    saddr: "192.0.2.1",
    daddr,
    sport: 80,
    dport: 40000,
    packets,
    bytes,
    tcpFlags: 0x12,
  });
  const snap = (at: number, flows: FlowSnapshot[]) => snapshotOf(flows, { takenAt: at });
  const flows = [
    // A spoofed scanner: only our SYN-ACKs (and their retransmits) went back.
    ...[1, 2, 3].map((p) => syn("203.0.113.7", p)),
    back("203.0.113.7", 6, 6 * 74),
    // A client that got a web page before scanning.
    ...[1, 2, 3].map((p) => syn("198.51.100.4", p)),
    back("198.51.100.4", 10, 9000),
  ];
  m.observe(snap(1000, []), 1e12 + 5e8);
  const o = m.observe(snap(2000, flows), 1e12 + 5e8)!;
  assert.equal(o.sources.get("203.0.113.7")?.verified, false);
  assert.equal(o.sources.get("198.51.100.4")?.verified, true);
});

Deno.test("mapek: a knowledge store that cannot be written skips no plan and says so in health", () => {
  const store = new StateStore();
  const knowledge = new Knowledge(":memory:");
  knowledge.putAction = () => {
    throw new Error("database or disk is full");
  };
  const put: string[] = [];
  const loop = new MapekLoop(
    { ...A, ...P, maxActions: 8, maxUnverified: 8, unverifiedPerStep: 8 },
    {
      knowledge,
      allow: new AllowList(),
      events: store.events,
      health: store.health,
      effectors: {
        enforcer: () =>
          ({
            put: (r: { address: string }) => put.push(r.address),
            list: () => [],
          }) as unknown as Enforcer,
        setTopFlows: () => {},
      },
    },
  );
  const udp = (saddr: string, packets: number) =>
    flowOf({ saddr, sport: 1000, dport: 53, packets, bytes: packets * 100 });
  const snap = (at: number, n: number) => ({
    takenAt: at,
    mode: "ebpf" as const,
    interfaces: [],
    flows: FlowTable.from(["198.51.100.1", "198.51.100.2", "198.51.100.3"].map((a) => udp(a, n))),
    flowTable: { entries: 3, capacity: 1e6, created: 0, evicted: 0, insertFailed: 0 },
    events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
    programs: [],
    bpfStatsEnabled: false,
  });
  loop.step(snap(1000, 0), 0);
  const ds = loop.step(snap(2000, 50_000), 1e9);
  assert.deepEqual(ds.map((d) => d.outcome), ["executed", "executed", "executed"]);
  assert.deepEqual(put.sort(), ["198.51.100.1", "198.51.100.2", "198.51.100.3"]);
  const h = store.health.list().find((c) => c.component === "mapek")!;
  assert.equal(h.state, "degraded");
  assert.match(h.reason, /knowledge store cannot be written: database or disk is full/);
  loop.close();
});

Deno.test("mapek: events sampled by a pinned setting are restored to full rate at start unless an action says so", () => {
  let shift = 3;
  const enforcer = {
    list: () => [],
    remove: () => {},
    setEventRateShift: (s: number) => shift = s,
  } as unknown as Enforcer;
  const store = new StateStore();
  const make = (knowledge: Knowledge) =>
    new MapekLoop({ ...A, ...P }, {
      knowledge,
      allow: new AllowList(),
      events: store.events,
      health: store.health,
      effectors: { enforcer: () => enforcer, setTopFlows: () => {} },
    });
  const empty = make(new Knowledge(":memory:"));
  empty.restore(1000);
  assert.equal(shift, 0, "no live action: full rate again");
  empty.close();
  // With a live sample_events action in the store, it stays sampled.
  const k = new Knowledge(":memory:");
  k.putAction({
    id: "a-1",
    kind: "sample_events",
    target: "events",
    value: 3,
    decisionId: "d-1",
    createdAt: 500,
    expiresAt: 60_000,
    state: "active",
  });
  shift = 0;
  const sampled = make(k);
  sampled.restore(1000);
  assert.equal(shift, 3);
  sampled.close();
});

Deno.test("mapek: what the box depends on is read from its routing tables and resolv.conf", () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0t-depends-" });
  try {
    Deno.writeTextFileSync(
      `${dir}/route`,
      [
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0",
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0",
        "eth1\t0000000A\tFE00000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0",
        "",
      ].join("\n"),
    );
    const z = "0".repeat(32);
    Deno.writeTextFileSync(
      `${dir}/ipv6_route`,
      [
        `${z} 00 ${z} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0`,
        `20010db8000100000000000000000000 30 ${z} 00 20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth1`,
        `fe800000000000000000000000000000 40 ${z} 00 ${z} 00000100 00000001 00000000 00000001     eth0`,
        "",
      ].join("\n"),
    );
    Deno.writeTextFileSync(
      `${dir}/resolv.conf`,
      "# comment\nnameserver 192.0.2.53\nnameserver fe80::53%eth0\nnameserver not-an-address\nsearch lan\n",
    );
    Deno.writeTextFileSync(`${dir}/upstreams.conf`, "nameserver 192.0.2.53\nnameserver 9.9.9.9\n");
    const got = dependencyEntries({
      procNet: dir,
      resolvConf: [`${dir}/resolv.conf`, `${dir}/upstreams.conf`, `${dir}/missing.conf`],
    }).map((e) => [e.cidr.text, e.why]);
    assert.deepEqual(got, [
      ["192.168.1.1", "default gateway (eth0)"],
      ["10.0.0.254", "next hop for 10.0.0.0/8 (eth1)"],
      ["fe80::1", "default gateway (eth0)"],
      ["2001:db8::1", "next hop for 2001:db8:1::/48 (eth1)"],
      ["192.0.2.53", `nameserver (${dir}/resolv.conf)`],
      ["fe80::53", `nameserver (${dir}/resolv.conf)`],
      ["9.9.9.9", `nameserver (${dir}/upstreams.conf)`],
    ]);
    // The allow-list then spares them, with why.
    const allow = new AllowList();
    allow.set(dependencyEntries({ procNet: dir, resolvConf: [`${dir}/resolv.conf`] }));
    assert.equal(allow.match("192.168.1.1"), "default gateway (eth0)");
    assert.equal(allow.match("fe80::1"), "default gateway (eth0)");
    assert.equal(allow.match("192.168.1.2"), undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
