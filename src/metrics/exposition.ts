/**
 * The Prometheus /metrics page: one snapshot, the components' health and the build, as text
 * exposition format 0.0.4, with the appliance's own process metrics appended (`render`);
 * `renderSnapshot` gives the same text without the process metrics.
 *
 * Every family is re-set from the snapshot on each render, so series that are gone from the
 * snapshot (an interface removed, a flow that left the top N) are gone from the page too. Base
 * units throughout: bytes, seconds, ratios in [0, 1].
 */
import { type MeshSnapshot, RTT_BUCKETS } from "../mesh/node.ts";
import { SYMPTOM_KINDS } from "../mapek/analyze.ts";
import { ACTION_KINDS } from "../mapek/plan.ts";
import type { ComponentHealth, HealthState, MapekSnapshot, Snapshot } from "../state/snapshot.ts";
import { protocolLabel } from "../net/protocol.ts";
import { escapeLabelValue, type MetricFamily, type MetricGroup, MetricSet } from "./writer.ts";
import { PREFIX } from "./collector.ts";
import { ProcessMetrics } from "./process.ts";

/** The Content-Type of what `render` returns. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface MetricsOptions {
  /** Flows exported, the largest by bytes (0: none). */
  topFlows: number;
  /** Glob patterns (`*`, `?`) of interfaces to export; empty: all. */
  interfaceAllow: string[];
  /** Glob patterns of interfaces never exported; wins over interfaceAllow. */
  interfaceDeny: string[];
  /** Append the process's own metrics (default true). */
  processMetrics?: boolean;
}

export interface BuildInfo {
  version: string;
  commit: string;
  denoVersion: string;
}

const HEALTH_STATES: readonly HealthState[] = ["healthy", "degraded", "unhealthy"];

/** A glob (`*` any run, `?` any one character, everything else literal) as a RegExp. */
export function globToRegExp(glob: string): RegExp {
  let re = "^";
  for (const c of glob) {
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else re += c.replace(/[\\^$.|+(){}[\]*?]/g, "\\$&");
  }
  return new RegExp(`${re}$`, "u");
}

/** Which interface names pass the allow and deny globs (deny wins; no allow: all allowed). */
export class InterfaceFilter {
  readonly #allow: RegExp[];
  readonly #deny: RegExp[];
  readonly #memo = new Map<string, boolean>();
  /** The last name asked about and the answer: flows come in runs of one interface. */
  #lastName: string | undefined;
  #lastOk = true;

  constructor(allow: readonly string[], deny: readonly string[]) {
    this.#allow = allow.map(globToRegExp);
    this.#deny = deny.map(globToRegExp);
  }

  /** Whether every name passes (no patterns at all). */
  get acceptsAll(): boolean {
    return this.#allow.length === 0 && this.#deny.length === 0;
  }

  accepts(name: string): boolean {
    if (name === this.#lastName) return this.#lastOk;
    let ok = this.#memo.get(name);
    if (ok === undefined) {
      ok = !this.#deny.some((r) => r.test(name)) &&
        (this.#allow.length === 0 || this.#allow.some((r) => r.test(name)));
      if (this.#memo.size >= 4096) this.#memo.clear();
      this.#memo.set(name, ok);
    }
    this.#lastName = name;
    this.#lastOk = ok;
    return ok;
  }
}

const PORT_LABELS: string[] = [];
function portLabel(port: number): string {
  if (port >= 0 && port < 65536 && Number.isInteger(port)) {
    return PORT_LABELS[port] ??= String(port);
  }
  return String(port);
}

/** Renders snapshots as Prometheus text; keep one per scrape endpoint (it caches series text). */
export class MetricsRenderer {
  readonly #opts: MetricsOptions;
  readonly #filter: InterfaceFilter;
  readonly #set = new MetricSet();
  readonly #process: ProcessMetrics | undefined;
  readonly #f: ReturnType<typeof families>;
  /** A lower top-N while the appliance is under pressure (a MAPE-K shrink_top_n action). */
  topFlowsCap?: number;

  constructor(opts: MetricsOptions) {
    this.#opts = { ...opts };
    this.#filter = new InterfaceFilter(opts.interfaceAllow, opts.interfaceDeny);
    this.#f = families(this.#set);
    if (opts.processMetrics ?? true) {
      this.#process = new ProcessMetrics();
      const clash = this.#process.names.filter((n) => this.#set.has(n));
      if (clash.length) throw new Error(`metric families defined twice: ${clash.join(", ")}`);
    }
  }

  /** Names of the families this renderer writes itself, in order. */
  get familyNames(): string[] {
    return this.#set.names;
  }

  /** Names of the process metric families (none when disabled). */
  get processFamilyNames(): string[] {
    return this.#process?.names ?? [];
  }

  /** The whole page: `renderSnapshot`, then the process metrics. */
  render(s: Snapshot, health: ComponentHealth[], build: BuildInfo): string {
    const own = this.renderSnapshot(s, health, build);
    if (this.#process === undefined) return own;
    return `${own}${this.#process.render()}`;
  }

  /** Every family from the snapshot, health and build; synchronous, no process metrics. */
  renderSnapshot(s: Snapshot, health: ComponentHealth[], build: BuildInfo): string {
    const f = this.#f;
    const accepts = (name: string) => this.#filter.accepts(name);
    const l1 = [""], l2 = ["", ""];

    const traffic = ["", "", "", "", ""];
    for (const i of s.interfaces) {
      if (!accepts(i.name)) continue;
      traffic[0] = i.name;
      traffic[4] = i.source;
      for (const c of i.traffic) {
        traffic[1] = c.direction;
        traffic[2] = c.family;
        traffic[3] = c.protocol;
        f.traffic.add(traffic, c.bytes, c.packets);
      }
      // Malformed frames, fragments and VLAN tags are only counted by our programs.
      if (i.source !== "ebpf") continue;
      l2[0] = i.name;
      for (const [reason, n] of Object.entries(i.malformed)) {
        l2[1] = reason;
        f.ifMalformed.add(l2, n);
      }
      l1[0] = i.name;
      f.ifExtra.add(l1, i.fragments, i.vlanTagged);
    }

    const t = s.flowTable;
    f.tableEntries.set([], t.entries);
    f.tableCapacity.set([], t.capacity);
    f.tableFullness.set([], t.capacity > 0 ? t.entries / t.capacity : 0);
    f.tableCreated.set([], t.created);
    f.tableEvicted.set([], t.evicted);
    f.tableInsertFailed.set([], t.insertFailed);

    const flow = ["", "", "", "", "", "", ""];
    const table = s.flows;
    const keep = this.#filter.acceptsAll
      ? undefined
      : (i: number) => accepts(table.ifname(table.ifindex(i)));
    const topN = Math.min(this.#opts.topFlows, this.topFlowsCap ?? Infinity);
    for (const x of table.top("bytes", topN, keep).flows) {
      flow[0] = x.interface;
      flow[1] = x.direction;
      flow[2] = protocolLabel(x.proto);
      flow[3] = x.saddr;
      flow[4] = x.daddr;
      flow[5] = portLabel(x.sport);
      flow[6] = portLabel(x.dport);
      // Added up: two flows with the same labels (one flow seen by two hooks) make one series.
      const slot = f.flows.slot(flow);
      f.flows.addAt(0, slot, x.bytes);
      f.flows.addAt(1, slot, x.packets);
    }
    f.flowsExported.set([], f.flows.size);

    const e = s.events;
    const outcomes: [string, number][] = [
      ["sent", e.sent],
      ["suppressed", e.suppressed],
      ["lost_kernel", e.lostKernel],
      ["lost_consumer", e.lostConsumer],
      ["consumed", e.consumed],
    ];
    for (const [outcome, n] of outcomes) {
      l1[0] = outcome;
      f.events.set(l1, n);
    }

    for (const p of s.programs) {
      l1[0] = p.name;
      f.programs.add(l1, p.runTimeNs / 1e9, p.runCount);
    }
    f.statsEnabled.set([], s.bpfStatsEnabled ? 1 : 0);

    for (const h of health) {
      l2[0] = h.component;
      for (const state of HEALTH_STATES) {
        l2[1] = state;
        f.health.set(l2, h.state === state ? 1 : 0);
      }
    }

    for (const mode of ["ebpf", "fallback"] as const) {
      l1[0] = mode;
      f.mode.set(l1, s.mode === mode ? 1 : 0);
    }
    f.snapshotTime.set([], s.takenAt / 1000);
    f.buildInfo.set([build.version, build.commit, build.denoVersion], 1);

    if (s.signals) {
      for (const d of s.signals.drops) {
        if (!accepts(d.interface)) continue;
        l2[0] = d.interface;
        l2[1] = d.reason;
        f.drops.add(l2, d.count);
      }
      for (const [iface, n] of Object.entries(s.signals.retransmitsByInterface)) {
        if (!accepts(iface)) continue;
        l1[0] = iface;
        f.retransmits.set(l1, n);
      }
    }
    if (s.mapek) renderMapek(s.mapek, f);
    // Histograms are written directly after the writer's families; these set theirs first.
    const histogram = (s.mesh ? renderMesh(s.mesh, f) : "") +
      (s.signals ? renderRtt(s.signals.rtt.filter((r) => accepts(r.interface))) : "");
    return this.#set.render() + histogram;
  }
}

function renderMapek(m: MapekSnapshot, f: ReturnType<typeof families>): void {
  const l1 = [""], l2 = ["", ""];
  for (const mode of ["observe", "enforce"] as const) {
    l1[0] = mode;
    f.mapekMode.set(l1, m.mode === mode ? 1 : 0);
  }
  for (const kind of SYMPTOM_KINDS) {
    l1[0] = kind;
    f.mapekSymptoms.set(l1, m.symptoms[kind] ?? 0);
  }
  for (const d of m.decisions) {
    l2[0] = d.symptom;
    l2[1] = d.outcome;
    f.mapekDecisions.set(l2, d.count);
  }
  for (const kind of ACTION_KINDS) {
    for (const state of ["active", "observed"]) {
      l2[0] = kind;
      l2[1] = state;
      f.mapekActions.set(
        l2,
        m.actions.find((a) => a.kind === kind && a.state === state)?.count ?? 0,
      );
    }
  }
  for (
    const [verdict, n] of [["dropped", m.enforced.droppedPackets], [
      "passed",
      m.enforced.passedPackets,
    ]] as const
  ) {
    l1[0] = verdict;
    f.mapekEnforced.set(l1, n);
  }
  f.mapekEnforcedBytes.set([], m.enforced.droppedBytes);
  for (const peer of m.degradedPeers) {
    l1[0] = peer;
    f.meshDegraded.set(l1, 1);
  }
}

/**
 * The mesh's families. Peers are few (a mesh is a handful of boxes), so the RTT histogram is
 * written directly; the rest go through the writer.
 */
function renderMesh(m: MeshSnapshot, f: ReturnType<typeof families>): string {
  const l1 = [""], l2 = ["", ""];
  for (const p of m.peers) {
    l1[0] = p.name;
    for (const state of PEER_STATES) {
      l2[0] = p.name;
      l2[1] = state;
      f.meshState.set(l2, p.state === state ? 1 : 0);
    }
    f.meshUp.set(l1, p.state === "alive" ? 1 : 0);
    if (p.rtt.ewmaSeconds !== null) f.meshRtt.set(l1, p.rtt.ewmaSeconds);
    if (p.rtt.jitterSeconds !== null) f.meshJitter.set(l1, p.rtt.jitterSeconds);
    if (p.loss.ratio !== null) f.meshLoss.set(l1, p.loss.ratio);
    f.meshProbes.add(l1, p.probes.sent, p.probes.acked);
    for (const dir of ["sent", "received"] as const) {
      l2[0] = p.name;
      l2[1] = dir;
      f.meshProbeBytes.set(l2, p.probeBytes[dir]);
      f.meshBytes.set(l2, p.bytes[dir]);
    }
  }
  for (const [reason, n] of Object.entries(m.dropped)) {
    l1[0] = reason;
    f.meshDropped.set(l1, n);
  }
  const h = `${PREFIX}mesh_peer_rtt_seconds`;
  const lines = [
    `# HELP ${h} Round-trip time of direct probes to a mesh peer.`,
    `# TYPE ${h} histogram`,
  ];
  for (const p of m.peers) {
    const peer = `peer="${escapeLabelValue(p.name)}"`;
    let acc = 0;
    RTT_BUCKETS.forEach((le, i) => {
      acc += p.rtt.buckets[i];
      lines.push(`${h}_bucket{${peer},le="${le}"} ${acc}`);
    });
    lines.push(`${h}_bucket{${peer},le="+Inf"} ${p.rtt.count}`);
    lines.push(`${h}_sum{${peer}} ${p.rtt.sumSeconds}`, `${h}_count{${peer}} ${p.rtt.count}`);
  }
  return m.peers.length ? `${lines.join("\n")}\n` : "";
}

const PEER_STATES = ["alive", "suspect", "dead", "left"] as const;

/** TCP smoothed RTT per interface as a histogram; bucket b holds 2^b ≤ µs < 2^(b+1). */
function renderRtt(rows: { interface: string; buckets: number[] }[]): string {
  if (rows.length === 0) return "";
  const h = `${PREFIX}tcp_rtt_seconds`;
  const lines = [
    `# HELP ${h} Smoothed RTT of TCP sockets at each received segment, by interface.`,
    `# TYPE ${h} histogram`,
  ];
  for (const r of rows) {
    const l = `interface="${escapeLabelValue(r.interface)}"`;
    let acc = 0;
    r.buckets.forEach((n, b) => {
      acc += n;
      lines.push(`${h}_bucket{${l},le="${(2 ** (b + 1)) / 1e6}"} ${acc}`);
    });
    lines.push(`${h}_bucket{${l},le="+Inf"} ${acc}`);
    // The sum is estimated from the buckets' midpoints (the kernel keeps counts only).
    const sum = r.buckets.reduce((a, n, b) => a + n * 1.5 * 2 ** b, 0) / 1e6;
    lines.push(`${h}_sum{${l}} ${sum}`, `${h}_count{${l}} ${acc}`);
  }
  return `${lines.join("\n")}\n`;
}

function families(m: MetricSet) {
  const p = PREFIX;
  const g = (name: string, help: string, labels: string[] = []): MetricFamily =>
    m.gauge(p + name, help, labels);
  const c = (name: string, help: string, labels: string[] = []): MetricFamily =>
    m.counter(p + name, help, labels);
  const counters = (labels: string[], ...fs: [name: string, help: string][]): MetricGroup =>
    m.group(fs.map(([name, help]) => ({ name: p + name, type: "counter", help })), labels);
  return {
    traffic: counters(
      ["interface", "direction", "family", "protocol", "source"],
      [
        "interface_bytes_total",
        "Bytes of whole frames (Ethernet header included) on an interface, by direction, IP " +
        "family and protocol; source fallback: the kernel's totals (family and protocol all).",
      ],
      [
        "interface_packets_total",
        "Frames on an interface, by direction, IP family and protocol; source fallback: the " +
        "kernel's totals (family and protocol all).",
      ],
    ),
    ifMalformed: c(
      "interface_malformed_packets_total",
      "Malformed frames on an interface (rx and tx), by reason. eBPF only.",
      ["interface", "reason"],
    ),
    ifExtra: counters(
      ["interface"],
      ["interface_fragments_total", "IP fragments on an interface (rx and tx). eBPF only."],
      [
        "interface_vlan_tagged_packets_total",
        "VLAN-tagged (802.1Q, 802.1ad) frames on an interface (rx and tx). eBPF only.",
      ],
    ),
    tableEntries: g("flow_table_entries", "Flows in the flow table."),
    tableCapacity: g("flow_table_capacity", "Capacity of the flow table (LRU hash), in flows."),
    tableFullness: g("flow_table_fullness_ratio", "Flow table entries / capacity."),
    tableCreated: c("flow_table_created_total", "Flows created in the flow table."),
    tableEvicted: c(
      "flow_table_evicted_total",
      "Flows the flow table's LRU pushed out to make room (created minus entries).",
    ),
    tableInsertFailed: c(
      "flow_table_insert_failed_total",
      "Flows that could not be inserted into the flow table.",
    ),
    flows: counters(
      ["interface", "direction", "protocol", "src", "dst", "sport", "dport"],
      [
        "flow_bytes_total",
        "Bytes of one of the top flows by bytes (sport/dport: ICMP type/code for ICMP).",
      ],
      [
        "flow_packets_total",
        "Packets of one of the top flows by bytes (sport/dport: ICMP type/code for ICMP).",
      ],
    ),
    flowsExported: g("flows_exported", "Flows exported in x0tta6bl4_flow_*_total (the top N)."),
    events: c(
      "ringbuf_events_total",
      "New-flow events by outcome: sent to the ring buffer, suppressed by the rate limit, lost " +
        "in the kernel (ring full), lost in user space (consumer queue full), consumed.",
      ["outcome"],
    ),
    programs: counters(
      ["program"],
      [
        "bpf_program_run_seconds_total",
        "Time spent running a BPF program (counted only while kernel.bpf_stats_enabled=1).",
      ],
      [
        "bpf_program_runs_total",
        "Runs of a BPF program (counted only while kernel.bpf_stats_enabled=1).",
      ],
    ),
    statsEnabled: g("bpf_stats_enabled", "Whether kernel.bpf_stats_enabled is 1."),
    drops: c(
      "drops_total",
      "Packets the kernel dropped, by interface and reason (enum skb_drop_reason of this kernel).",
      ["interface", "reason"],
    ),
    retransmits: c(
      "tcp_retransmits_total",
      "TCP segments retransmitted, by interface (flows still in the signal table).",
      ["interface"],
    ),
    meshState: g(
      "mesh_peer_state",
      "1 for a mesh peer's current state (alive, suspect, dead, left), 0 for the others.",
      ["peer", "state"],
    ),
    meshUp: g("mesh_peer_up", "1 when a mesh peer answers (alive), else 0.", ["peer"]),
    meshRtt: g("mesh_peer_rtt_ewma_seconds", "Smoothed round-trip time to a mesh peer.", ["peer"]),
    meshJitter: g("mesh_peer_jitter_seconds", "RTT jitter to a mesh peer (RFC 3550).", ["peer"]),
    meshLoss: g(
      "mesh_peer_loss_ratio",
      "Share of the last 200 probes to a mesh peer that got no answer.",
      ["peer"],
    ),
    meshProbes: counters(
      ["peer"],
      ["mesh_probes_sent_total", "Probes sent to a mesh peer."],
      ["mesh_probe_acks_total", "Probe answers received from a mesh peer."],
    ),
    meshProbeBytes: c(
      "mesh_probe_bytes_total",
      "Bytes of mesh protocol datagrams exchanged with a peer (the probing's own cost).",
      ["peer", "direction"],
    ),
    meshBytes: c(
      "mesh_peer_bytes_total",
      "Bytes the datapath saw exchanged with a mesh peer's address on watched interfaces.",
      ["peer", "direction"],
    ),
    meshDropped: c(
      "mesh_datagrams_dropped_total",
      "Mesh datagrams dropped, by reason (bad MAC, replay, truncated…).",
      ["reason"],
    ),
    mapekMode: g(
      "mapek_mode",
      "1 for the MAPE-K loop's mode (observe or enforce), 0 for the other.",
      [
        "mode",
      ],
    ),
    mapekSymptoms: c("mapek_symptoms_total", "Symptoms the MAPE-K analyzer found, by kind.", [
      "kind",
    ]),
    mapekDecisions: c(
      "mapek_decisions_total",
      "MAPE-K decisions by symptom kind and outcome (executed, observed, reported, skipped, failed).",
      ["symptom", "outcome"],
    ),
    mapekActions: g(
      "mapek_actions",
      "Live MAPE-K actions by kind and state (active: in force; observed: planned, not executed).",
      ["kind", "state"],
    ),
    mapekEnforced: c(
      "mapek_enforced_packets_total",
      "Packets that MAPE-K blocks and rate limits dropped or let through, in the datapath.",
      ["verdict"],
    ),
    mapekEnforcedBytes: c(
      "mapek_enforced_dropped_bytes_total",
      "Bytes that MAPE-K blocks and rate limits dropped in the datapath.",
    ),
    meshDegraded: g(
      "mesh_link_degraded",
      "1 while a MAPE-K action marks the link to a mesh peer degraded.",
      ["peer"],
    ),
    health: g(
      "component_health",
      "1 for a component's current state (healthy, degraded, unhealthy), 0 for the others.",
      ["component", "state"],
    ),
    mode: g("mode", "1 for the collector mode in use (ebpf or fallback), 0 for the other.", [
      "mode",
    ]),
    snapshotTime: g(
      "snapshot_timestamp_seconds",
      "When the snapshot shown was taken, in seconds since the epoch.",
    ),
    buildInfo: g("build_info", "Build of the appliance; always 1.", ["version", "commit", "deno"]),
  };
}
