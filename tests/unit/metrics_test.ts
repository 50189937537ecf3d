import assert from "node:assert/strict";
import { defaultConfig } from "../../src/config/schema.ts";
import { FlowTable } from "../../src/flows/table.ts";
import {
  globToRegExp,
  InterfaceFilter,
  type MetricsOptions,
  MetricsRenderer,
} from "../../src/metrics/exposition.ts";
import { protocolLabel } from "../../src/net/protocol.ts";
import {
  escapeHelp,
  escapeLabelValue,
  formatLabels,
  formatValue,
  hashValues,
  MetricFamily,
  MetricGroup,
  MetricHistogram,
  MetricSet,
} from "../../src/metrics/writer.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import type { ComponentHealth, InterfaceSnapshot, Snapshot } from "../../src/state/snapshot.ts";

// ---------------------------------------------------------------- hand-built snapshots

const BUILD = { version: "0.1.0", commit: "0123abc", denoVersion: "2.9.6" };

function flow(over: Partial<FlowSnapshot> = {}): FlowSnapshot {
  return {
    ifindex: 2,
    hook: "tcIngress",
    family: 4,
    proto: 6,
    saddr: "10.0.0.1",
    daddr: "10.0.0.2",
    sport: 40000,
    dport: 443,
    packets: 1,
    bytes: 100,
    firstSeenNs: 1,
    lastSeenNs: 2,
    tcpFlags: 0x12,
    fragment: false,
    interface: "eth0",
    direction: "rx",
    ...over,
  };
}

function iface(name: string, over: Partial<InterfaceSnapshot> = {}): InterfaceSnapshot {
  return {
    ifindex: 2,
    name,
    source: "ebpf",
    hooks: ["tcIngress", "tcEgress"],
    traffic: [
      { direction: "rx", family: "ipv4", protocol: "tcp", packets: 10, bytes: 1500 },
      { direction: "tx", family: "ipv6", protocol: "udp", packets: 3, bytes: 300 },
    ],
    malformed: { l2_truncated: 1, ip_version: 0 },
    fragments: 4,
    vlanTagged: 5,
    ...over,
  };
}

function snapshot(
  over: Partial<Omit<Snapshot, "flows">> & { flows?: FlowSnapshot[] } = {},
): Snapshot {
  return {
    takenAt: 1_700_000_000_250,
    mode: "ebpf",
    interfaces: [iface("eth0")],
    flowTable: { entries: 16384, capacity: 65536, created: 20000, evicted: 3616, insertFailed: 2 },
    events: { sent: 11, suppressed: 12, lostKernel: 13, lostConsumer: 14, consumed: 15 },
    programs: [
      { name: "x0_tc_ingress", runTimeNs: 2_500_000_000, runCount: 1000 },
      { name: "x0_tc_egress", runTimeNs: 0, runCount: 0 },
    ],
    bpfStatsEnabled: true,
    ...over,
    flows: FlowTable.from(over.flows ?? []),
  };
}

const HEALTH: ComponentHealth[] = [
  { component: "datapath", state: "healthy", reason: "", since: 0 },
  { component: "ringbuf", state: "degraded", reason: "events lost", since: 0 },
];

function renderer(over: Partial<MetricsOptions> = {}): MetricsRenderer {
  return new MetricsRenderer({
    topFlows: 10,
    interfaceAllow: [],
    interfaceDeny: [],
    processMetrics: false,
    ...over,
  });
}

/** The sample lines of one family (by exact metric name). */
function samples(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

/** Every line of `expected` must be in `text`. */
function assertLines(text: string, expected: string[]): void {
  const lines = new Set(text.split("\n"));
  for (const l of expected) assert.ok(lines.has(l), `missing line: ${l}\n--- got:\n${text}`);
}

// ---------------------------------------------------------------- writer

Deno.test("writer: label values and HELP are escaped per the exposition format", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue("plain ünïcode ✓"), "plain ünïcode ✓");
  assert.equal(escapeHelp('back\\slash "quotes" stay\nnext'), 'back\\\\slash "quotes" stay\\nnext');
  assert.equal(formatLabels([], []), "");
  assert.equal(formatLabels(["a", "b"], ["x", 'y"']), '{a="x",b="y\\""}');
  assert.equal(formatValue(NaN), "NaN");
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(-Infinity), "-Inf");
  assert.equal(formatValue(1.5), "1.5");
  assert.equal(formatValue(2 ** 53), "9007199254740992");

  const f = new MetricFamily("t_things_total", "counter", "Things.\nMore \\ text.", ["k"]);
  f.set(['q"\\\n'], 3);
  assert.equal(
    f.render(),
    "# HELP t_things_total Things.\\nMore \\\\ text.\n" +
      "# TYPE t_things_total counter\n" +
      't_things_total{k="q\\"\\\\\\n"} 3\n',
  );
});

Deno.test("writer: one HELP/TYPE per family, series in first-set order, set/add", () => {
  const g = new MetricGroup(
    [
      { name: "t_bytes_total", type: "counter", help: "Bytes." },
      { name: "t_packets_total", type: "counter", help: "Packets." },
    ],
    ["if"],
  );
  g.set(["b"], 10, 1);
  g.set(["a"], 20, 2);
  g.add(["b"], 5, 1); // merged into the first b
  const slot = g.slot(["c"]);
  g.setAt(1, slot, 7); // bytes stay 0
  assert.equal(g.size, 3);
  assert.ok(g.has(["a"]) && !g.has(["zz"]));
  assert.equal(
    g.render(),
    [
      "# HELP t_bytes_total Bytes.",
      "# TYPE t_bytes_total counter",
      't_bytes_total{if="b"} 15',
      't_bytes_total{if="a"} 20',
      't_bytes_total{if="c"} 0',
      "# HELP t_packets_total Packets.",
      "# TYPE t_packets_total counter",
      't_packets_total{if="b"} 2',
      't_packets_total{if="a"} 2',
      't_packets_total{if="c"} 7',
      "",
    ].join("\n"),
  );
  const empty = new MetricFamily("t_up", "gauge", "Up.");
  assert.equal(empty.render(), "# HELP t_up Up.\n# TYPE t_up gauge\n");
  empty.set([], 1);
  assert.equal(empty.render(), "# HELP t_up Up.\n# TYPE t_up gauge\nt_up 1\n");
});

Deno.test("writer: series not set in a cycle disappear; the cache forgets them later", () => {
  const f = new MetricFamily("t_flows", "gauge", "Flows.", ["id"], { retainCycles: 2 });
  f.set(["1"], 1);
  f.set(["2"], 2);
  f.render();
  assert.equal(f.cached, 2);
  f.set(["2"], 22);
  assert.deepEqual(f.render().split("\n").filter((l) => !l.startsWith("#")), [
    't_flows{id="2"} 22',
    "",
  ]);
  assert.equal(f.cached, 2, "kept for retainCycles");
  f.set(["2"], 23);
  f.render();
  assert.equal(f.cached, 1, "series 1 forgotten after two cycles without it");
  // Coming back is fine: the text is built again.
  f.set(["1"], 5);
  assert.match(f.render(), /^t_flows\{id="1"\} 5$/m);
  // discard drops the cycle.
  f.set(["3"], 3);
  f.discard();
  assert.equal(f.size, 0);
  assert.doesNotMatch(f.render(), /id="3"/);
});

Deno.test("writer: label sets are told apart exactly (NUL, empty values, many series)", () => {
  const f = new MetricFamily("t_x", "gauge", "X.", ["a", "b"]);
  f.set(["a\0", "b"], 1);
  f.set(["a", "\0b"], 2);
  f.set(["", "a\0b"], 3);
  f.set(["a\0b", ""], 4);
  f.set(["", ""], 5);
  assert.equal(f.size, 5);
  f.render();
  const g = new MetricFamily("t_y", "gauge", "Y.", ["a", "b", "c"]);
  const seen = new Set<string>();
  for (let i = 0; i < 20000; i++) {
    const v = [`${i % 7}`, `${i}`, `${(i * 31) % 1000}`];
    g.set(v, i);
    seen.add(JSON.stringify(v));
  }
  assert.equal(g.size, seen.size);
  // A second cycle over the same label sets hits the cache: nothing new is cached.
  g.render();
  for (let i = 0; i < 20000; i++) g.set([`${i % 7}`, `${i}`, `${(i * 31) % 1000}`], i);
  assert.equal(g.cached, seen.size);
  const lines = g.render().split("\n").filter((l) => l && !l.startsWith("#"));
  assert.equal(lines.length, seen.size);
  assert.equal(new Set(lines).size, lines.length);
});

Deno.test("writer: label sets whose hashes collide stay apart, also through eviction", () => {
  const seen = new Map<number, string>();
  let pair: [string, string] | undefined;
  for (let i = 0; pair === undefined; i++) {
    const v = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
    const h = hashValues([v]);
    const other = seen.get(h);
    if (other !== undefined) pair = [other, v];
    seen.set(h, v);
  }
  const [a, b] = pair;
  assert.equal(hashValues([a]), hashValues([b]));
  const f = new MetricFamily("t_c", "gauge", "C.", ["v"], { retainCycles: 1 });
  f.set([a], 1);
  f.set([b], 2);
  f.set([a], 3);
  assert.equal(f.size, 2);
  assert.ok(f.has([a]) && f.has([b]));
  assert.equal(f.render(), `# HELP t_c C.\n# TYPE t_c gauge\nt_c{v="${a}"} 3\nt_c{v="${b}"} 2\n`);
  // a drops out (evicted from its chain), b stays and is still found.
  f.set([b], 4);
  assert.equal(f.render(), `# HELP t_c C.\n# TYPE t_c gauge\nt_c{v="${b}"} 4\n`);
  assert.equal(f.cached, 1);
  f.set([a], 5); // a is now first in the chain
  f.set([b], 6);
  assert.equal(f.size, 2);
  assert.equal(f.cached, 2);
  f.render();
  f.set([b], 7); // the first of the chain goes
  assert.equal(f.render(), `# HELP t_c C.\n# TYPE t_c gauge\nt_c{v="${b}"} 7\n`);
  assert.equal(f.cached, 1);
  f.set([b], 8);
  assert.ok(f.has([b]) && !f.has([a]));
});

Deno.test("writer: names are checked", () => {
  assert.throws(() => new MetricFamily("t_bytes", "counter", "h"), /must end in _total/);
  assert.throws(() => new MetricFamily("t_open_total", "gauge", "h"), /must not end in _total/);
  assert.throws(() => new MetricFamily("t-x", "gauge", "h"), /invalid metric name/);
  assert.throws(() => new MetricFamily("t_x", "gauge", "h", ["__x"]), /invalid label name/);
  assert.throws(() => new MetricFamily("t_x", "gauge", "h", ["a", "a"]), /given twice/);
  const f = new MetricFamily("t_x", "gauge", "h", ["a"]);
  assert.throws(() => f.set([], 1), /0 label values for 1 labels/);
  const set = new MetricSet();
  set.gauge("t_x", "h");
  assert.throws(() => set.counter("t_y_total", "h") && set.gauge("t_x", "h"), /added twice/);
});

Deno.test("writer: histograms: cumulative buckets, +Inf, _sum, _count; nothing when empty", () => {
  const h = new MetricHistogram("t_rtt_seconds", "RTT.", [0.001, 0.25, 1], ["peer"], {
    retainCycles: 1,
  });
  assert.equal(h.render(), "", "no series: not even HELP and TYPE");
  h.set(['a"b'], [1, 0, 2], 1.5, 4); // one observation above the last bound
  h.set(["c"], [0, 3, 0], 0.75); // count: the buckets' total
  h.set(["c"], [0, 2, 0], 0.5); // set again: replaced
  assert.equal(h.size, 2);
  assert.equal(
    h.render(),
    [
      "# HELP t_rtt_seconds RTT.",
      "# TYPE t_rtt_seconds histogram",
      't_rtt_seconds_bucket{peer="a\\"b",le="0.001"} 1',
      't_rtt_seconds_bucket{peer="a\\"b",le="0.25"} 1',
      't_rtt_seconds_bucket{peer="a\\"b",le="1"} 3',
      't_rtt_seconds_bucket{peer="a\\"b",le="+Inf"} 4',
      't_rtt_seconds_sum{peer="a\\"b"} 1.5',
      't_rtt_seconds_count{peer="a\\"b"} 4',
      't_rtt_seconds_bucket{peer="c",le="0.001"} 0',
      't_rtt_seconds_bucket{peer="c",le="0.25"} 2',
      't_rtt_seconds_bucket{peer="c",le="1"} 2',
      't_rtt_seconds_bucket{peer="c",le="+Inf"} 2',
      't_rtt_seconds_sum{peer="c"} 0.5',
      't_rtt_seconds_count{peer="c"} 2',
      "",
    ].join("\n"),
  );
  // A series not set again disappears, and with retainCycles 1 its text is forgotten.
  h.set(["c"], [1, 0, 0], 0.0005);
  assert.doesNotMatch(h.render(), /peer="a/);
  assert.equal(h.cached, 1);

  const bare = new MetricHistogram("t_wait_seconds", "Wait.", [0.5]);
  bare.set([], [2], 0.25);
  assert.equal(
    bare.render(),
    "# HELP t_wait_seconds Wait.\n# TYPE t_wait_seconds histogram\n" +
      't_wait_seconds_bucket{le="0.5"} 2\nt_wait_seconds_bucket{le="+Inf"} 2\n' +
      "t_wait_seconds_sum 0.25\nt_wait_seconds_count 2\n",
  );

  assert.throws(() => new MetricHistogram("t_h", "h", [1], ["le"]), /label le/);
  assert.throws(() => new MetricHistogram("t_h", "h", [1, 1]), /increasing/);
  assert.throws(() => new MetricHistogram("t_h", "h", [1, Infinity]), /finite/);
  assert.throws(() => new MetricHistogram("t-h", "h", [1]), /invalid metric name/);
  assert.throws(() => bare.set([], [1, 2], 0), /2 counts for 1 buckets/);
  assert.throws(() => bare.set(["x"], [1], 0), /1 label values for 0 labels/);

  const set = new MetricSet();
  set.gauge("t_up", "Up.");
  set.histogram("t_wait_seconds", "Wait.", [1]);
  assert.deepEqual(set.names, ["t_up", "t_wait_seconds"]);
  assert.throws(() => set.gauge("t_wait_seconds", "h"), /added twice/);
});

Deno.test("exposition: exact lines of the snapshot families", () => {
  const s = snapshot({
    interfaces: [
      iface("eth0"),
      iface("wan1", {
        source: "fallback",
        hooks: [],
        traffic: [
          { direction: "rx", family: "all", protocol: "all", packets: 7, bytes: 700 },
          { direction: "tx", family: "all", protocol: "all", packets: 8, bytes: 800 },
        ],
        malformed: {},
        fragments: 0,
        vlanTagged: 0,
      }),
    ],
    flows: [flow({ proto: 58, family: 6, saddr: "fe80::1", daddr: "ff02::1", sport: 135 })],
  });
  const text = renderer().renderSnapshot(s, HEALTH, BUILD);
  const P = "x0tta6bl4_";
  assertLines(text, [
    `# HELP ${P}interface_bytes_total Bytes of whole frames (Ethernet header included) on an ` +
    "interface, by direction, IP family and protocol; source fallback: the kernel's totals " +
    "(family and protocol all).",
    `# TYPE ${P}interface_bytes_total counter`,
    `${P}interface_bytes_total{interface="eth0",direction="rx",family="ipv4",protocol="tcp",` +
    `source="ebpf"} 1500`,
    `${P}interface_bytes_total{interface="eth0",direction="tx",family="ipv6",protocol="udp",` +
    `source="ebpf"} 300`,
    `${P}interface_bytes_total{interface="wan1",direction="rx",family="all",protocol="all",` +
    `source="fallback"} 700`,
    `${P}interface_packets_total{interface="wan1",direction="tx",family="all",protocol="all",` +
    `source="fallback"} 8`,
    `${P}interface_malformed_packets_total{interface="eth0",reason="l2_truncated"} 1`,
    `${P}interface_malformed_packets_total{interface="eth0",reason="ip_version"} 0`,
    `${P}interface_fragments_total{interface="eth0"} 4`,
    `${P}interface_vlan_tagged_packets_total{interface="eth0"} 5`,
    `# TYPE ${P}flow_table_entries gauge`,
    `${P}flow_table_entries 16384`,
    `${P}flow_table_capacity 65536`,
    `${P}flow_table_fullness_ratio 0.25`,
    `# TYPE ${P}flow_table_created_total counter`,
    `${P}flow_table_created_total 20000`,
    `${P}flow_table_evicted_total 3616`,
    `${P}flow_table_insert_failed_total 2`,
    `${P}flow_bytes_total{interface="eth0",direction="rx",protocol="icmpv6",src="fe80::1",` +
    `dst="ff02::1",sport="135",dport="443"} 100`,
    `${P}flow_packets_total{interface="eth0",direction="rx",protocol="icmpv6",src="fe80::1",` +
    `dst="ff02::1",sport="135",dport="443"} 1`,
    `${P}flows_exported 1`,
    `${P}ringbuf_events_total{outcome="sent"} 11`,
    `${P}ringbuf_events_total{outcome="suppressed"} 12`,
    `${P}ringbuf_events_total{outcome="lost_kernel"} 13`,
    `${P}ringbuf_events_total{outcome="lost_consumer"} 14`,
    `${P}ringbuf_events_total{outcome="consumed"} 15`,
    `${P}bpf_program_run_seconds_total{program="x0_tc_ingress"} 2.5`,
    `${P}bpf_program_runs_total{program="x0_tc_ingress"} 1000`,
    `${P}bpf_program_run_seconds_total{program="x0_tc_egress"} 0`,
    `${P}bpf_stats_enabled 1`,
    `${P}mode{mode="ebpf"} 1`,
    `${P}mode{mode="fallback"} 0`,
    `${P}snapshot_timestamp_seconds 1700000000.25`,
    `${P}build_info{version="0.1.0",commit="0123abc",deno="2.9.6"} 1`,
  ]);
  // Malformed, fragments and VLAN counts are eBPF-only: none for the fallback interface.
  assert.doesNotMatch(text, /_(malformed_packets|fragments|vlan_tagged_packets)_total\{[^}]*wan1/);
  // HELP and TYPE once per family, HELP first.
  const types = text.split("\n").filter((l) => l.startsWith("# TYPE "));
  const names = types.map((l) => l.split(" ")[2]);
  assert.equal(new Set(names).size, names.length);
  for (const n of names) {
    assert.equal(text.split("\n").filter((l) => l.startsWith(`# HELP ${n} `)).length, 1, n);
    assert.ok(text.indexOf(`# HELP ${n} `) < text.indexOf(`# TYPE ${n} `), n);
  }
  assert.ok(text.endsWith("\n"));
});

/** Two destinations, one that never delivered, as the exporters' status() counts them. */
const EXPORTS: Snapshot["exports"] = [
  {
    kind: "ipfix",
    destination: "[2001:db8::9]:4739",
    sent: 1200,
    failed: 2,
    droppedBy: { queue_full: 30, stopped: 0 },
    queued: 17,
    lastSuccessAt: 1_700_000_000_500,
  },
  {
    kind: "remote_write",
    destination: "https://prom.example:9090/api/v1/write",
    sent: 0,
    failed: 5,
    droppedBy: { queue_full: 0, rejected: 7, stopped: 0 },
    queued: 4000,
  },
];

Deno.test("exposition: the exporters' families, per destination, exact lines", () => {
  const text = renderer().renderSnapshot(snapshot({ exports: EXPORTS }), HEALTH, BUILD);
  const P = "x0tta6bl4_export_";
  const ipfix = 'kind="ipfix",destination="[2001:db8::9]:4739"';
  const rw = 'kind="remote_write",destination="https://prom.example:9090/api/v1/write"';
  assert.deepEqual(text.split("\n").filter((l) => l.includes(P)), [
    `# HELP ${P}records_total IPFIX data records an exporter delivered to its collector.`,
    `# TYPE ${P}records_total counter`,
    `${P}records_total{${ipfix}} 1200`,
    `# HELP ${P}samples_total Samples remote-write delivered to its receiver (answered 2xx).`,
    `# TYPE ${P}samples_total counter`,
    `${P}samples_total{${rw}} 0`,
    `# HELP ${P}failures_total Sends that failed: retried later, or given up (remote-write: ` +
    "refused with 4xx).",
    `# TYPE ${P}failures_total counter`,
    `${P}failures_total{${ipfix}} 2`,
    `${P}failures_total{${rw}} 5`,
    `# HELP ${P}dropped_total Records or samples never delivered, by reason: queue_full (the ` +
    "oldest went), rejected (4xx), stopped (left at stop, and not kept for the next start).",
    `# TYPE ${P}dropped_total counter`,
    `${P}dropped_total{${ipfix},reason="queue_full"} 30`,
    `${P}dropped_total{${ipfix},reason="stopped"} 0`,
    `${P}dropped_total{${rw},reason="queue_full"} 0`,
    `${P}dropped_total{${rw},reason="rejected"} 7`,
    `${P}dropped_total{${rw},reason="stopped"} 0`,
    `# HELP ${P}queue Records or samples waiting to be sent.`,
    `# TYPE ${P}queue gauge`,
    `${P}queue{${ipfix}} 17`,
    `${P}queue{${rw}} 4000`,
    `# HELP ${P}last_success_timestamp_seconds When a send last succeeded, in seconds since ` +
    "the epoch (absent: never).",
    `# TYPE ${P}last_success_timestamp_seconds gauge`,
    `${P}last_success_timestamp_seconds{${ipfix}} 1700000000.5`,
  ]);
  // Without exporters, their families have no series.
  const none = renderer().renderSnapshot(snapshot(), HEALTH, BUILD);
  assert.deepEqual(none.split("\n").filter((l) => l.startsWith(P)), []);
});

Deno.test("exposition: label values from the snapshot are escaped", () => {
  const weird = 'we"ird\\if\nname';
  const s = snapshot({
    interfaces: [iface(weird, { traffic: [], malformed: {} })],
    flows: [flow({ interface: weird })],
  });
  const text = renderer().renderSnapshot(s, [
    { component: 'x"y', state: "healthy", reason: "", since: 0 },
  ], {
    ...BUILD,
    commit: 'a"b\\c\nd',
  });
  const esc = 'we\\"ird\\\\if\\nname';
  assertLines(text, [
    `x0tta6bl4_interface_fragments_total{interface="${esc}"} 4`,
    `x0tta6bl4_flow_bytes_total{interface="${esc}",direction="rx",protocol="tcp",` +
    `src="10.0.0.1",dst="10.0.0.2",sport="40000",dport="443"} 100`,
    'x0tta6bl4_component_health{component="x\\"y",state="healthy"} 1',
    'x0tta6bl4_build_info{version="0.1.0",commit="a\\"b\\\\c\\nd",deno="2.9.6"} 1',
  ]);
  // No raw newline inside a sample: every line is a comment or a sample.
  for (const l of text.split("\n")) assert.match(l, /^(#|x0tta6bl4_|$)/);
});

Deno.test("exposition: component health is 1 for the current state, 0 for the others", () => {
  const text = renderer().renderSnapshot(snapshot(), [
    ...HEALTH,
    { component: "api", state: "unhealthy", reason: "port", since: 0 },
  ], BUILD);
  assert.deepEqual(samples(text, "x0tta6bl4_component_health"), [
    'x0tta6bl4_component_health{component="datapath",state="healthy"} 1',
    'x0tta6bl4_component_health{component="datapath",state="degraded"} 0',
    'x0tta6bl4_component_health{component="datapath",state="unhealthy"} 0',
    'x0tta6bl4_component_health{component="ringbuf",state="healthy"} 0',
    'x0tta6bl4_component_health{component="ringbuf",state="degraded"} 1',
    'x0tta6bl4_component_health{component="ringbuf",state="unhealthy"} 0',
    'x0tta6bl4_component_health{component="api",state="healthy"} 0',
    'x0tta6bl4_component_health{component="api",state="degraded"} 0',
    'x0tta6bl4_component_health{component="api",state="unhealthy"} 1',
  ]);
  const fallback = renderer().renderSnapshot(snapshot({ mode: "fallback" }), [], BUILD);
  assert.deepEqual(samples(fallback, "x0tta6bl4_mode"), [
    'x0tta6bl4_mode{mode="ebpf"} 0',
    'x0tta6bl4_mode{mode="fallback"} 1',
  ]);
  assert.deepEqual(samples(fallback, "x0tta6bl4_component_health"), []);
});

Deno.test("exposition: top-N flows by bytes, largest first, capped; protocol names", () => {
  const flows = [
    flow({ saddr: "10.0.0.1", bytes: 500, packets: 5 }),
    flow({ saddr: "10.0.0.2", bytes: 9000, packets: 9, proto: 17 }),
    flow({ saddr: "10.0.0.3", bytes: 700, packets: 7, proto: 1, sport: 8, dport: 0 }),
    flow({ saddr: "10.0.0.4", bytes: 700, packets: 70, proto: 47, sport: 0, dport: 0 }),
    flow({ saddr: "10.0.0.5", bytes: 10, packets: 1 }),
  ];
  const r = renderer({ topFlows: 3 });
  const text = r.renderSnapshot(snapshot({ flows }), [], BUILD);
  const fl = (proto: string, src: string, sport: number, dport: number, v: number) =>
    `x0tta6bl4_flow_bytes_total{interface="eth0",direction="rx",protocol="${proto}",` +
    `src="${src}",dst="10.0.0.2",sport="${sport}",dport="${dport}"} ${v}`;
  assert.deepEqual(samples(text, "x0tta6bl4_flow_bytes_total"), [
    fl("udp", "10.0.0.2", 40000, 443, 9000),
    fl("icmp", "10.0.0.3", 8, 0, 700), // tie at 700: snapshot order
    fl("47", "10.0.0.4", 0, 0, 700),
  ]);
  assert.deepEqual(
    samples(text, "x0tta6bl4_flow_packets_total").map((l) => l.split(" ")[1]),
    ["9", "7", "70"],
  );
  assert.deepEqual(samples(text, "x0tta6bl4_flows_exported"), ["x0tta6bl4_flows_exported 3"]);
  assert.deepEqual(
    samples(
      renderer({ topFlows: 0 }).renderSnapshot(snapshot({ flows }), [], BUILD),
      "x0tta6bl4_flows_exported",
    ),
    ["x0tta6bl4_flows_exported 0"],
  );
  assert.equal(protocolLabel(6), "tcp");
  assert.equal(protocolLabel(58), "icmpv6");
  assert.equal(protocolLabel(132), "132");
});

Deno.test("exposition: the same flow labels twice (two hooks) make one series", () => {
  const flows = [
    flow({ hook: "xdp", bytes: 100, packets: 1 }),
    flow({ hook: "tcIngress", bytes: 200, packets: 2 }),
  ];
  const text = renderer().renderSnapshot(snapshot({ flows }), [], BUILD);
  assert.equal(samples(text, "x0tta6bl4_flow_bytes_total").length, 1);
  assert.match(text, /^x0tta6bl4_flow_bytes_total\{[^}]*\} 300$/m);
  assert.match(text, /^x0tta6bl4_flow_packets_total\{[^}]*\} 3$/m);
  assert.match(text, /^x0tta6bl4_flows_exported 1$/m);
});

Deno.test("exposition: stale series are removed (flow left the top N, interface gone)", () => {
  const r = renderer({ topFlows: 2 });
  const a = flow({ saddr: "10.0.0.1", bytes: 300 });
  const b = flow({ saddr: "10.0.0.2", bytes: 200 });
  const c = flow({ saddr: "10.0.0.3", bytes: 100 });
  const first = r.renderSnapshot(
    snapshot({ interfaces: [iface("eth0"), iface("eth1")], flows: [a, b, c] }),
    HEALTH,
    BUILD,
  );
  assert.match(first, /src="10\.0\.0\.2"/);
  assert.doesNotMatch(first, /src="10\.0\.0\.3"/);
  assert.match(first, /interface="eth1"/);
  // c overtakes b; eth1 is gone; a component disappears.
  const second = r.renderSnapshot(
    snapshot({ flows: [a, b, { ...c, bytes: 1000 }] }),
    HEALTH.slice(0, 1),
    BUILD,
  );
  assert.deepEqual(
    samples(second, "x0tta6bl4_flow_bytes_total").map((l) => /src="([^"]+)"/.exec(l)?.[1]),
    ["10.0.0.3", "10.0.0.1"],
  );
  assert.doesNotMatch(second, /src="10\.0\.0\.2"/);
  assert.doesNotMatch(second, /interface="eth1"/);
  assert.doesNotMatch(second, /component="ringbuf"/);
  // And back again.
  const third = r.renderSnapshot(
    snapshot({ interfaces: [iface("eth0"), iface("eth1")], flows: [a, b, c] }),
    HEALTH,
    BUILD,
  );
  assert.equal(third, first);
});

Deno.test("exposition: interfaces filtered by allow/deny globs (deny wins, no allow = all)", () => {
  const s = snapshot({
    interfaces: ["eth0", "eth1", "eth10", "wlan0", "lo"].map((n) => iface(n)),
    flows: ["eth0", "eth1", "eth10", "wlan0", "lo"].map((n, i) =>
      flow({ interface: n, ifindex: i + 1, bytes: 100 + i })
    ),
  });
  const exported = (allow: string[], deny: string[]) => {
    const text = renderer({ interfaceAllow: allow, interfaceDeny: deny }).renderSnapshot(
      s,
      [],
      BUILD,
    );
    const of = (family: string) =>
      [...new Set(samples(text, family).map((l) => /interface="([^"]+)"/.exec(l)?.[1]))].sort();
    const ifs = of("x0tta6bl4_interface_bytes_total");
    assert.deepEqual(of("x0tta6bl4_flow_bytes_total"), ifs, "flows filtered like interfaces");
    assert.deepEqual(of("x0tta6bl4_interface_fragments_total"), ifs);
    return ifs;
  };
  assert.deepEqual(exported([], []), ["eth0", "eth1", "eth10", "lo", "wlan0"]);
  assert.deepEqual(exported(["eth*"], []), ["eth0", "eth1", "eth10"]);
  assert.deepEqual(exported(["eth?"], []), ["eth0", "eth1"]);
  assert.deepEqual(exported(["eth*"], ["eth1*"]), ["eth0"]);
  assert.deepEqual(exported([], ["lo", "wlan*"]), ["eth0", "eth1", "eth10"]);
  assert.deepEqual(exported(["eth0", "lo"], ["*"]), []);
  assert.deepEqual(exported(["*"], ["e?h1"]), ["eth0", "eth10", "lo", "wlan0"]);

  assert.ok(globToRegExp("a.b+(c)").test("a.b+(c)"));
  assert.ok(!globToRegExp("a.b").test("axb"));
  assert.ok(globToRegExp("veth*").test("veth"));
  const f = new InterfaceFilter(["br-*"], ["br-x"]);
  assert.deepEqual(["br-1", "br-x", "br-1", "eth0"].map((n) => f.accepts(n)), [
    true,
    false,
    true,
    false,
  ]);
});

Deno.test("exposition: fromConfig takes the metrics section and the MAPE-K cap", () => {
  const c = defaultConfig();
  c.metrics.top_flows = 3;
  c.metrics.interface_allow = ["eth*"];
  c.metrics.interface_deny = ["eth1"];
  const flows = ["eth0", "eth1", "eth0", "eth0", "lo"].map((n, i) =>
    flow({ interface: n, ifindex: n === "eth0" ? 2 : 3 + i, saddr: `10.0.0.${i}`, bytes: 10 + i })
  );
  const s = snapshot({ interfaces: [iface("eth0"), iface("eth1"), iface("lo")], flows });
  const exported = (r: MetricsRenderer) => {
    const text = r.renderSnapshot(s, [], BUILD);
    return samples(text, "x0tta6bl4_flow_bytes_total").concat(
      samples(text, "x0tta6bl4_interface_fragments_total"),
    ).map((l) => `${/interface="([^"]+)"/.exec(l)?.[1]} ${/src="([^"]+)"/.exec(l)?.[1]}`);
  };
  const r = MetricsRenderer.fromConfig(c);
  assert.equal(r.topFlowsCap, undefined);
  assert.ok(r.processFamilyNames.length > 0, "process metrics on");
  assert.deepEqual(exported(r), [
    "eth0 10.0.0.3",
    "eth0 10.0.0.2",
    "eth0 10.0.0.0",
    "eth0 undefined",
  ]);
  const capped = MetricsRenderer.fromConfig(c, 1);
  assert.equal(capped.topFlowsCap, 1);
  assert.deepEqual(exported(capped), ["eth0 10.0.0.3", "eth0 undefined"]);
});

Deno.test("exposition: the mesh and TCP RTT histograms, last on the page, exact text", () => {
  const zeros = (n: number) => Array.from({ length: n }, () => 0);
  const meshBuckets = zeros(13);
  meshBuckets[0] = 1;
  meshBuckets[3] = 2;
  const rtt = (name: string) => {
    const buckets = zeros(24);
    buckets[0] = 1;
    buckets[2] = 2;
    return { interface: name, buckets };
  };
  const s = snapshot({
    mesh: {
      id: "me",
      name: "me",
      listen: "0.0.0.0:7946",
      peers: [{
        id: "p1",
        name: 'site"a',
        mesh: "10.0.0.9:7946",
        metrics: "",
        state: "alive",
        since: 0,
        lastHeardMsAgo: 5,
        rtt: {
          lastSeconds: 0.001,
          ewmaSeconds: 0.001,
          jitterSeconds: null,
          buckets: meshBuckets,
          count: 4, // one above the last bound
          sumSeconds: 1.5,
        },
        loss: { ratio: 0, window: 200 },
        probes: { sent: 4, acked: 4, indirectAcks: 0 },
        probeBytes: { sent: 400, received: 400 },
        bytes: { sent: 0, received: 0 },
      }],
      dropped: {},
      datagrams: { sent: 4, received: 4, bytesSent: 400, bytesReceived: 400 },
    },
    signals: {
      drops: [],
      flows: new Map(),
      rtt: [rtt("eth0"), rtt("lo")],
      retransmitsByInterface: {},
      unavailable: {},
    },
  });
  const text = renderer({ interfaceDeny: ["lo"] }).renderSnapshot(s, [], BUILD);
  const mesh = "x0tta6bl4_mesh_peer_rtt_seconds";
  const meshLes = "0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1";
  const tcp = "x0tta6bl4_tcp_rtt_seconds";
  const tcpLes = Array.from({ length: 24 }, (_, b) => String(2 ** (b + 1) / 1e6));
  assert.equal(tcpLes[0], "0.000002");
  assert.equal(tcpLes[23], "16.777216");
  const expected = [
    `# HELP ${mesh} Round-trip time of direct probes to a mesh peer.`,
    `# TYPE ${mesh} histogram`,
    ...meshLes.split(" ").map((le, i) =>
      `${mesh}_bucket{peer="site\\"a",le="${le}"} ${i < 3 ? 1 : 3}`
    ),
    `${mesh}_bucket{peer="site\\"a",le="+Inf"} 4`,
    `${mesh}_sum{peer="site\\"a"} 1.5`,
    `${mesh}_count{peer="site\\"a"} 4`,
    `# HELP ${tcp} Smoothed RTT of TCP sockets at each received segment, by interface.`,
    `# TYPE ${tcp} histogram`,
    ...tcpLes.map((le, b) => `${tcp}_bucket{interface="eth0",le="${le}"} ${b < 2 ? 1 : 3}`),
    `${tcp}_bucket{interface="eth0",le="+Inf"} 3`,
    `${tcp}_sum{interface="eth0"} 0.0000135`,
    `${tcp}_count{interface="eth0"} 3`,
    "",
  ].join("\n");
  const build = 'x0tta6bl4_build_info{version="0.1.0",commit="0123abc",deno="2.9.6"} 1\n';
  assert.equal(text.slice(text.indexOf(build) + build.length), expected);
  // Without series a histogram is left out, HELP and TYPE included.
  const bare = renderer().renderSnapshot(snapshot(), [], BUILD);
  assert.ok(bare.endsWith(build));
  assert.doesNotMatch(bare, /_rtt_seconds /);
});

Deno.test("exposition: 100k flows with topFlows 100000 render", () => {
  const N = 100_000;
  const flows = Array.from({ length: N }, (_, i) =>
    flow({
      saddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      sport: 1024 + (i % 60000),
      dport: 443 + (i >> 16),
      bytes: (i * 7919) % 1000003,
      packets: i,
    }));
  const r = renderer({ topFlows: N });
  for (let round = 0; round < 2; round++) {
    const text = r.renderSnapshot(snapshot({ flows }), HEALTH, BUILD);
    assert.equal(samples(text, "x0tta6bl4_flow_bytes_total").length, N);
    assert.equal(samples(text, "x0tta6bl4_flow_packets_total").length, N);
    assert.match(text, new RegExp(`^x0tta6bl4_flows_exported ${N}$`, "m"));
    const bytes = samples(text, "x0tta6bl4_flow_bytes_total").map((l) => Number(l.split(" ")[1]));
    assert.ok(bytes.every((b, i) => i === 0 || bytes[i - 1] >= b), "largest first");
  }
});

// ------------------------------------------------------- with the process metrics and promtool

/** promtool on PATH or in /usr/bin; a missing promtool fails the test (it is not skipped). */
function promtoolPath(): string {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter((d) => d), "/usr/bin"];
  for (const dir of dirs) {
    try {
      if (Deno.statSync(`${dir}/promtool`).isFile) return `${dir}/promtool`;
    } catch {
      // not here
    }
  }
  assert.fail(
    "promtool not found: install the Debian package `prometheus` " +
      "(apt-get install -y prometheus), which provides /usr/bin/promtool",
  );
}

async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(promtoolPath(), {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const dec = new TextDecoder();
  return { code, output: (dec.decode(stdout) + dec.decode(stderr)).trim() };
}

Deno.test("exposition: the whole page with process metrics passes promtool check metrics", async () => {
  const r = new MetricsRenderer({
    topFlows: 5,
    interfaceAllow: [],
    interfaceDeny: [],
  });
  const s = snapshot({
    interfaces: [iface("eth0"), iface('od"d\\name\n')],
    flows: [
      flow(),
      flow({ family: 6, proto: 58, saddr: "2001:db8::1", daddr: "2001:db8::2", sport: 128 }),
    ],
    exports: EXPORTS,
  });
  const text = await r.render(s, HEALTH, BUILD);
  // Ours first, then the process metrics, with no family twice.
  assert.ok(text.startsWith("# HELP x0tta6bl4_interface_bytes_total "));
  assert.match(text, /^# TYPE x0tta6bl4_process_cpu_seconds_total counter$/m);
  assert.match(text, /^# TYPE x0tta6bl4_process_resident_memory_bytes gauge$/m);
  const names = text.split("\n").filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]);
  assert.equal(new Set(names).size, names.length, `a family twice: ${names}`);
  for (const n of r.familyNames) assert.ok(!r.processFamilyNames.includes(n), n);
  assert.ok(r.processFamilyNames.length > 5);
  for (const n of names) {
    assert.ok(n.startsWith("x0tta6bl4_"), n);
    assert.ok(!(n.endsWith("_total") && text.includes(`# TYPE ${n} gauge`)), n);
  }

  const { code, output } = await promtoolCheck(text);
  assert.equal(output, "", `promtool check metrics found problems:\n${output}`);
  assert.equal(code, 0);

  // A second renderer shares the process registry; a second scrape is just as clean.
  const again = await renderer({ processMetrics: true }).render(s, HEALTH, BUILD);
  assert.deepEqual(await promtoolCheck(again), { code: 0, output: "" });
});

Deno.test("exposition: promtool itself flags what we avoid (the check is live)", async () => {
  const { code, output } = await promtoolCheck(
    "# TYPE t_bytes counter\nt_bytes 1\n# HELP t_open_total x\n# TYPE t_open_total gauge\n" +
      "t_open_total 1\n",
  );
  assert.notEqual(code, 0);
  assert.match(output, /counter metrics should have "_total" suffix/);
  assert.match(output, /no help text/);
  assert.match(output, /non-counter metrics should not have "_total" suffix/);
});
