/**
 * The datapath's families on /metrics: traffic per interface, the flow table, the top flows,
 * the ring buffer's new-flow events and the BPF programs' own cost.
 */
import type { Families, Scrape, SnapshotCollector } from "../metrics/collector.ts";
import { protocolLabel } from "../net/protocol.ts";
import type { Snapshot } from "../state/snapshot.ts";

/** Bytes and frames per interface; malformed frames, fragments and VLAN tags (eBPF only). */
export class InterfaceMetrics implements SnapshotCollector {
  readonly #traffic;
  readonly #malformed;
  readonly #extra;

  constructor(f: Families) {
    this.#traffic = f.counters(
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
    );
    this.#malformed = f.counter(
      "interface_malformed_packets_total",
      "Malformed frames on an interface (rx and tx), by reason. eBPF only.",
      ["interface", "reason"],
    );
    this.#extra = f.counters(
      ["interface"],
      ["interface_fragments_total", "IP fragments on an interface (rx and tx). eBPF only."],
      [
        "interface_vlan_tagged_packets_total",
        "VLAN-tagged (802.1Q, 802.1ad) frames on an interface (rx and tx). eBPF only.",
      ],
    );
  }

  write(s: Snapshot, scrape: Scrape): void {
    const traffic = ["", "", "", "", ""], reason = ["", ""];
    for (const i of s.interfaces) {
      if (!scrape.accepts(i.name)) continue;
      traffic[0] = i.name;
      traffic[4] = i.source;
      for (const c of i.traffic) {
        traffic[1] = c.direction;
        traffic[2] = c.family;
        traffic[3] = c.protocol;
        this.#traffic.add(traffic, c.bytes, c.packets);
      }
      // Malformed frames, fragments and VLAN tags are only counted by our programs.
      if (i.source !== "ebpf") continue;
      reason[0] = i.name;
      for (const [r, n] of Object.entries(i.malformed)) {
        reason[1] = r;
        this.#malformed.add(reason, n);
      }
      this.#extra.add([i.name], i.fragments, i.vlanTagged);
    }
  }
}

/** The flow table (an LRU hash in the kernel): how full it is and its churn. */
export class FlowTableMetrics implements SnapshotCollector {
  readonly #entries;
  readonly #capacity;
  readonly #fullness;
  readonly #created;
  readonly #evicted;
  readonly #insertFailed;

  constructor(f: Families) {
    this.#entries = f.gauge("flow_table_entries", "Flows in the flow table.");
    this.#capacity = f.gauge(
      "flow_table_capacity",
      "Capacity of the flow table (LRU hash), in flows.",
    );
    this.#fullness = f.gauge("flow_table_fullness_ratio", "Flow table entries / capacity.");
    this.#created = f.counter("flow_table_created_total", "Flows created in the flow table.");
    this.#evicted = f.counter(
      "flow_table_evicted_total",
      "Flows the flow table's LRU pushed out to make room (created minus entries).",
    );
    this.#insertFailed = f.counter(
      "flow_table_insert_failed_total",
      "Flows that could not be inserted into the flow table.",
    );
  }

  write(s: Snapshot): void {
    const t = s.flowTable;
    this.#entries.set([], t.entries);
    this.#capacity.set([], t.capacity);
    this.#fullness.set([], t.capacity > 0 ? t.entries / t.capacity : 0);
    this.#created.set([], t.created);
    this.#evicted.set([], t.evicted);
    this.#insertFailed.set([], t.insertFailed);
  }
}

const PORT_LABELS: string[] = [];
function portLabel(port: number): string {
  if (port >= 0 && port < 65536 && Number.isInteger(port)) {
    return PORT_LABELS[port] ??= String(port);
  }
  return String(port);
}

/** The top flows by bytes on accepted interfaces, one series each (a bounded label set). */
export class TopFlowMetrics implements SnapshotCollector {
  readonly #flows;
  readonly #exported;

  constructor(f: Families) {
    this.#flows = f.counters(
      ["interface", "direction", "protocol", "src", "dst", "sport", "dport"],
      [
        "flow_bytes_total",
        "Bytes of one of the top flows by bytes (sport/dport: ICMP type/code for ICMP).",
      ],
      [
        "flow_packets_total",
        "Packets of one of the top flows by bytes (sport/dport: ICMP type/code for ICMP).",
      ],
    );
    this.#exported = f.gauge(
      "flows_exported",
      "Flows exported in x0tta6bl4_flow_*_total (the top N).",
    );
  }

  write(s: Snapshot, scrape: Scrape): void {
    const flow = ["", "", "", "", "", "", ""];
    for (const x of s.flows.query(scrape.flows, "bytes", scrape.topFlows).flows) {
      flow[0] = x.interface;
      flow[1] = x.direction;
      flow[2] = protocolLabel(x.proto);
      flow[3] = x.saddr;
      flow[4] = x.daddr;
      flow[5] = portLabel(x.sport);
      flow[6] = portLabel(x.dport);
      // Added up: two flows with the same labels (one flow seen by two hooks) make one series.
      const slot = this.#flows.slot(flow);
      this.#flows.addAt(0, slot, x.bytes);
      this.#flows.addAt(1, slot, x.packets);
    }
    this.#exported.set([], this.#flows.size);
  }
}

/** New-flow events through the ring buffer, by outcome. */
export class RingBufferMetrics implements SnapshotCollector {
  readonly #events;

  constructor(f: Families) {
    this.#events = f.counter(
      "ringbuf_events_total",
      "New-flow events by outcome: sent to the ring buffer, suppressed by the rate limit, lost " +
        "in the kernel (ring full), lost in user space (consumer queue full), consumed.",
      ["outcome"],
    );
  }

  write(s: Snapshot): void {
    const e = s.events;
    const outcomes: [string, number][] = [
      ["sent", e.sent],
      ["suppressed", e.suppressed],
      ["lost_kernel", e.lostKernel],
      ["lost_consumer", e.lostConsumer],
      ["consumed", e.consumed],
    ];
    for (const [outcome, n] of outcomes) this.#events.set([outcome], n);
  }
}

/** What our BPF programs cost (kernel.bpf_stats_enabled), per program. */
export class ProgramMetrics implements SnapshotCollector {
  readonly #programs;
  readonly #statsEnabled;

  constructor(f: Families) {
    this.#programs = f.counters(
      ["program"],
      [
        "bpf_program_run_seconds_total",
        "Time spent running a BPF program (counted only while kernel.bpf_stats_enabled=1).",
      ],
      [
        "bpf_program_runs_total",
        "Runs of a BPF program (counted only while kernel.bpf_stats_enabled=1).",
      ],
    );
    this.#statsEnabled = f.gauge("bpf_stats_enabled", "Whether kernel.bpf_stats_enabled is 1.");
  }

  write(s: Snapshot): void {
    for (const p of s.programs) this.#programs.add([p.name], p.runTimeNs / 1e9, p.runCount);
    this.#statsEnabled.set([], s.bpfStatsEnabled ? 1 : 0);
  }
}
