/**
 * Readers of the datapath's maps: per-interface counters and the flow table, with per-CPU
 * values summed. Everything here reads bytes laid out as in bpf/x0tta6bl4.h; the flow key and
 * event codecs are in src/flows/key.ts.
 */
import {
  CLASSES,
  type ClassName,
  FLOW_CACHE,
  FLOW_KEY,
  FLOW_VALUE,
  HOOK_NAMES,
  type HookName,
  IFACE_STATS,
  MALFORMED_REASONS,
  type MalformedReason,
} from "../../ffi/layout.ts";
import type { FlowDatapath } from "../datapath/flow.ts";
import { type FlowSnapshot, u64 } from "../flows/key.ts";
import { type FlowCounters, FlowTable } from "../flows/table.ts";

export interface Counter {
  packets: number;
  bytes: number;
}

export interface IfaceStats {
  /** 0 for the counters of interfaces that have no slot of their own. */
  ifindex: number;
  hook: HookName;
  classes: Record<ClassName, Counter>;
  malformed: Record<MalformedReason, number>;
  fragments: number;
  vlanTagged: number;
  flowsCreated: number;
  flowInsertFailed: number;
  eventsSent: number;
  eventsSuppressed: number;
  eventsLost: number;
}

/** Sums a per-CPU flow value (`stride` bytes per CPU, at byte `at` of `v`) into `into`. */
function sumFlowValue(v: DataView, at: number, stride: number, cpus: number, into: FlowCounters) {
  into.packets =
    into.bytes =
    into.firstSeenNs =
    into.lastSeenNs =
    into.tcpFlags =
      0;
  into.fragment = 0;
  const V = FLOW_VALUE.members;
  for (let c = 0, o = at; c < cpus; c++, o += stride) {
    const p = u64(v, o + V.packets[0]);
    if (p === 0) continue;
    into.packets += p;
    into.bytes += u64(v, o + V.bytes[0]);
    const f = u64(v, o + V.first_seen_ns[0]);
    if (f && (!into.firstSeenNs || f < into.firstSeenNs)) into.firstSeenNs = f;
    into.lastSeenNs = Math.max(into.lastSeenNs, u64(v, o + V.last_seen_ns[0]));
    into.tcpFlags |= v.getUint8(o + V.tcp_flags[0]);
    into.fragment |= v.getUint8(o + V.fragment[0]);
  }
  return into;
}

const zeroCounters = (): FlowCounters => ({
  packets: 0,
  bytes: 0,
  firstSeenNs: 0,
  lastSeenNs: 0,
  tcpFlags: 0,
  fragment: 0,
});

/**
 * Every flow: the table's per-CPU values summed, plus what each CPU's flow cache still holds,
 * as columns (see FlowTable), written into `table` (emptied first, its storage reused).
 */
export function readFlowTable(dp: FlowDatapath, table: FlowTable = new FlowTable()): FlowTable {
  table.clear();
  const map = dp.flows;
  const cpus = map.percpu ? map.cpus : 1;
  const sum = zeroCounters();
  for (const { count, keys, values } of map.batches()) {
    const v = new DataView(values.buffer, values.byteOffset, values.byteLength);
    for (let i = 0; i < count; i++) {
      table.push(
        keys,
        i * map.keySize,
        sumFlowValue(v, i * map.valueBytes, map.valueStride, cpus, sum),
      );
    }
  }
  // The flow caches (one per CPU, interface and hook): added to their flow, or, for a flow
  // evicted from the table while a cache still held packets of it, a flow of their own.
  const C = FLOW_CACHE.members;
  const cache = dp.flowCache;
  const pendingKeys: Uint8Array[] = [], pending: FlowCounters[] = [];
  for (const { count, values } of cache.batches(256)) {
    const v = new DataView(values.buffer, values.byteOffset, values.byteLength);
    for (let i = 0; i < count; i++) {
      for (let c = 0; c < cache.cpus; c++) {
        const at = i * cache.valueBytes + c * cache.valueStride;
        const p = sumFlowValue(v, at + C.pending[0], FLOW_VALUE.size, 1, sum);
        if (p.packets === 0) continue;
        pendingKeys.push(values.slice(at + C.key[0], at + C.key[0] + FLOW_KEY.size));
        pending.push({ ...p });
      }
    }
  }
  const found = table.findAll(pendingKeys);
  // Pending packets of a flow the table no longer holds: a row of its own, once, even when
  // several CPUs' caches hold that flow.
  const added = new Map<string, number>();
  pendingKeys.forEach((key, j) => {
    if (found[j] >= 0) return table.add(found[j], pending[j]);
    const id = key.join(",");
    const row = added.get(id);
    if (row !== undefined) return table.add(row, pending[j]);
    added.set(id, table.size);
    table.push(key, 0, pending[j]);
  });
  return table;
}

/** Every flow as an object (for the CLI and tests; the daemon keeps the columns). */
export function readFlows(dp: FlowDatapath): FlowSnapshot[] {
  return readFlowTable(dp).toArray();
}

/** Per-interface, per-hook counters, per-CPU values summed; slots never used are left out. */
export function readIfaceStats(dp: FlowDatapath): IfaceStats[] {
  const map = dp.ifstats;
  const out: IfaceStats[] = [];
  const cpus = map.percpu ? map.cpus : 1;
  const S = IFACE_STATS.members;
  for (const { count, keys, values } of map.batches()) {
    const kv = new DataView(keys.buffer, keys.byteOffset);
    for (let i = 0; i < count; i++) {
      const index = kv.getUint32(i * map.keySize, true);
      const ifindex = dp.ifindexOfSlot(Math.floor(index / HOOK_NAMES.length));
      if (ifindex === undefined) continue;
      const sum = new Array<number>(IFACE_STATS.size / 8).fill(0);
      const v = new DataView(values.buffer, values.byteOffset + i * map.valueBytes);
      for (let c = 0; c < cpus; c++) {
        for (let w = 0; w < sum.length; w++) sum[w] += u64(v, c * map.valueStride + w * 8);
      }
      if (ifindex === 0 && sum.every((x) => x === 0)) continue;
      const at = (o: number) => sum[o / 8];
      const classes = {} as Record<ClassName, Counter>;
      CLASSES.forEach((name, j) => {
        classes[name] = { packets: at(j * 16), bytes: at(j * 16 + 8) };
      });
      const malformed = {} as Record<MalformedReason, number>;
      MALFORMED_REASONS.forEach((name, j) => {
        malformed[name] = at(S.malformed[0] + j * 8);
      });
      out.push({
        ifindex,
        hook: HOOK_NAMES[index % HOOK_NAMES.length],
        classes,
        malformed,
        fragments: at(S.fragments[0]),
        vlanTagged: at(S.vlan_tagged[0]),
        flowsCreated: at(S.flows_created[0]),
        flowInsertFailed: at(S.flow_insert_failed[0]),
        eventsSent: at(S.events_sent[0]),
        eventsSuppressed: at(S.events_suppressed[0]),
        eventsLost: at(S.events_lost[0]),
      });
    }
  }
  return out;
}

/** Totals over every class of one interface record. */
export function totals(s: IfaceStats): Counter {
  let packets = 0, bytes = 0;
  for (const c of Object.values(s.classes)) {
    packets += c.packets;
    bytes += c.bytes;
  }
  return { packets, bytes };
}
