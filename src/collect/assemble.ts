/**
 * A snapshot assembled from what the readers read: interface counters from the datapath's
 * per-hook records (or the kernel's own counters in fallback mode), the programs' run time,
 * and the datapath's own counters.
 */
import type { IfaceStats } from "./decode.ts";
import type { InterfaceAttachment } from "../datapath/flow.ts";
import type { Program } from "../datapath/object.ts";
import { directionOf } from "../flows/key.ts";
import type {
  Family,
  InterfaceSnapshot,
  ProgramStats,
  Protocol,
  TrafficCounter,
} from "../state/snapshot.ts";

const CLASS_LABELS: Record<string, [Family, Protocol]> = {
  ipv4_tcp: ["ipv4", "tcp"],
  ipv4_udp: ["ipv4", "udp"],
  ipv4_icmp: ["ipv4", "icmp"],
  ipv4_other: ["ipv4", "other"],
  ipv6_tcp: ["ipv6", "tcp"],
  ipv6_udp: ["ipv6", "udp"],
  ipv6_icmp: ["ipv6", "icmp"],
  ipv6_other: ["ipv6", "other"],
  non_ip: ["other", "none"],
  malformed: ["malformed", "none"],
};

/** The datapath's own counters, summed over every hook record (watched interfaces or not). */
export interface DatapathTotals {
  flowsCreated: number;
  flowInsertFailed: number;
  eventsSent: number;
  eventsSuppressed: number;
  eventsLost: number;
}

/**
 * The watched interfaces' snapshots from the per-hook records (`names`: ifindex → name of
 * the watched ones; the others only count towards the totals).
 */
export function interfaceSnapshots(
  stats: readonly IfaceStats[],
  names: ReadonlyMap<number, string>,
  attachments: readonly InterfaceAttachment[],
): { interfaces: InterfaceSnapshot[]; totals: DatapathTotals } {
  const byIf = new Map<number, InterfaceSnapshot>();
  const totals: DatapathTotals = {
    flowsCreated: 0,
    flowInsertFailed: 0,
    eventsSent: 0,
    eventsSuppressed: 0,
    eventsLost: 0,
  };
  for (const s of stats) {
    for (const k of Object.keys(totals) as (keyof DatapathTotals)[]) totals[k] += s[k];
    const name = names.get(s.ifindex);
    if (name === undefined) continue;
    let snap = byIf.get(s.ifindex);
    if (!snap) {
      const a = attachments.find((x) => x.ifindex === s.ifindex);
      snap = {
        ifindex: s.ifindex,
        name,
        source: "ebpf",
        hooks: a?.hooks ?? [],
        xdpMode: a?.xdpMode,
        traffic: [],
        malformed: {},
        fragments: 0,
        vlanTagged: 0,
      };
      byIf.set(s.ifindex, snap);
    }
    const direction = directionOf(s.hook);
    for (const [cls, c] of Object.entries(s.classes)) {
      const [family, protocol] = CLASS_LABELS[cls];
      snap.traffic.push({ direction, family, protocol, packets: c.packets, bytes: c.bytes });
    }
    for (const [reason, n] of Object.entries(s.malformed)) {
      snap.malformed[reason] = (snap.malformed[reason] ?? 0) + n;
    }
    snap.fragments += s.fragments;
    snap.vlanTagged += s.vlanTagged;
  }
  // An interface whose counters live in two hooks (XDP and TC ingress never both) is merged.
  for (const snap of byIf.values()) snap.traffic = mergeTraffic(snap.traffic);
  return { interfaces: [...byIf.values()], totals };
}

function mergeTraffic(t: TrafficCounter[]): TrafficCounter[] {
  const m = new Map<string, TrafficCounter>();
  for (const c of t) {
    const k = `${c.direction}/${c.family}/${c.protocol}`;
    const prev = m.get(k);
    if (prev) {
      prev.packets += c.packets;
      prev.bytes += c.bytes;
    } else m.set(k, { ...c });
  }
  return [...m.values()];
}

/** Run time and count of each program (counted while kernel.bpf_stats_enabled is 1). */
export function programStats(programs: readonly Program[]): ProgramStats[] {
  return programs.map((p) => {
    const i = p.info();
    return { name: p.name, runTimeNs: i.runTimeNs, runCount: i.runCount };
  });
}

export function bpfStatsEnabled(): boolean {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/bpf_stats_enabled").trim() === "1";
  } catch {
    return false;
  }
}
