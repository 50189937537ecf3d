/**
 * The knowledge every reader shares: one snapshot of what the appliance sees, taken at a fixed
 * interval by the collector (eBPF or fallback) and read by the API, /metrics and the CLI.
 */
import type { Direction } from "../flows/key.ts";
import type { FlowTable } from "../flows/table.ts";
import type { MeshSnapshot } from "../mesh/node.ts";
import type { FlowSignal } from "../flows/signals.ts";

/** "ipv4" | "ipv6" | "other" (non-IP) | "malformed", or "all" where only totals are known. */
export type Family = "ipv4" | "ipv6" | "other" | "malformed" | "all";
/** "tcp" | "udp" | "icmp" | "other" | "none" (non-IP, malformed), or "all" for totals. */
export type Protocol = "tcp" | "udp" | "icmp" | "other" | "none" | "all";

export interface TrafficCounter {
  direction: Direction;
  family: Family;
  protocol: Protocol;
  packets: number;
  bytes: number;
}

export interface InterfaceSnapshot {
  ifindex: number;
  name: string;
  /** Where the numbers come from: our programs, or the kernel's own counters (fallback). */
  source: "ebpf" | "fallback";
  /** Attached hooks (eBPF only), e.g. ["tcIngress", "tcEgress"], and the XDP mode. */
  hooks: string[];
  xdpMode?: string;
  traffic: TrafficCounter[];
  /** eBPF only: malformed frames by reason, fragments and VLAN-tagged frames (rx + tx). */
  malformed: Record<string, number>;
  fragments: number;
  vlanTagged: number;
}

export type HealthState = "healthy" | "degraded" | "unhealthy";

export interface ComponentHealth {
  component: string;
  state: HealthState;
  reason: string;
  /** When the component entered this state (ms since the epoch). */
  since: number;
}

export interface ProgramStats {
  name: string;
  /** Cumulative run time and runs while kernel.bpf_stats_enabled=1 (0 otherwise). */
  runTimeNs: number;
  runCount: number;
}

export interface Snapshot {
  /** ms since the epoch. */
  takenAt: number;
  mode: "ebpf" | "fallback";
  interfaces: InterfaceSnapshot[];
  /** Every flow, as columns; FlowSnapshot objects come from its top() and get(). */
  flows: FlowTable;
  flowTable: {
    entries: number;
    capacity: number;
    created: number;
    /** created − entries: what the LRU pushed out. */
    evicted: number;
    insertFailed: number;
  };
  events: {
    /** Written to the ring buffer by the kernel. */
    sent: number;
    /** Not sent: over the per-CPU rate limit. */
    suppressed: number;
    /** Lost in the kernel: the ring buffer was full. */
    lostKernel: number;
    /** Lost in user space: records the consumer could not turn into events. */
    lostConsumer: number;
    /** Read from the ring buffer by user space. */
    consumed: number;
  };
  /** Clients of the live event stream: connected now, events they lost (each only its own),
   * and clients let go for falling a whole queue behind. */
  eventClients?: { connected: number; lost: number; letGo: number };
  programs: ProgramStats[];
  /** kernel.bpf_stats_enabled: run time and count are only counted while it is 1. */
  bpfStatsEnabled: boolean;
  /** The mesh's peers and counters, when the mesh is enabled. */
  mesh?: MeshSnapshot;
  /** Kernel signals (drops, TCP retransmits and RTT), when the probe runs. */
  signals?: SignalsSnapshot;
  /** The MAPE-K loop's counters, when it runs. */
  mapek?: MapekSnapshot;
  /** Each export destination's counters (export.*), when any is configured. */
  exports?: ExportSnapshot[];
}

/** What one exporter has done since start, as it counts it. */
export interface ExportSnapshot {
  kind: "ipfix" | "remote_write";
  /** The collector's HOST:PORT, or the receiver's URL without credentials or query. */
  destination: string;
  /** Records (IPFIX) or samples (remote-write) delivered. */
  sent: number;
  /** Sends that failed (each retried or given up, as the exporter's policy says). */
  failed: number;
  /** Records or samples dropped, by reason: queue_full, rejected (4xx), stopped. */
  droppedBy: Record<string, number>;
  /** Records or samples waiting to be sent now. */
  queued: number;
  /** When a send last succeeded, in ms since the epoch; undefined: never. */
  lastSuccessAt?: number;
}

export interface MapekSnapshot {
  mode: "observe" | "enforce";
  /** Symptoms found since start, by kind. */
  symptoms: Record<string, number>;
  /** Decisions since start, by symptom kind and outcome. */
  decisions: { symptom: string; outcome: string; count: number }[];
  /** Live actions by kind and state (active: in force; observed: planned in observe mode). */
  actions: { kind: string; state: string; count: number }[];
  /** What blocks and rate limits dropped and let through since start. */
  enforced: { droppedPackets: number; droppedBytes: number; passedPackets: number };
  /** Mesh peers whose link a live action marks degraded. */
  degradedPeers: string[];
}

export interface SignalsSnapshot {
  drops: { interface: string; reason: string; count: number }[];
  /** By flowSignalKey(): family/proto/saddr/sport/daddr/dport. */
  flows: Map<string, FlowSignal>;
  /** Per interface: samples per log2(µs) bucket of the smoothed RTT. */
  rtt: { interface: string; buckets: number[] }[];
  retransmitsByInterface: Record<string, number>;
  unavailable: Record<string, string>;
}
