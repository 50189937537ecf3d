/** Snapshots for tests of pure logic: the flows given, as the collector would hold them. */
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { FlowTable } from "../../src/flows/table.ts";
import type { Snapshot } from "../../src/state/snapshot.ts";

/** A flow received on eth0 (UDP 198.51.100.7:40000 to 192.0.2.1:1, one packet); `o` replaces any field. */
export function flowOf(o: Partial<FlowSnapshot> = {}): FlowSnapshot {
  return {
    ifindex: 2,
    interface: "eth0",
    direction: "rx",
    hook: "tcIngress",
    family: 4,
    proto: 17,
    saddr: "198.51.100.7",
    daddr: "192.0.2.1",
    sport: 40000,
    dport: 1,
    packets: 1,
    bytes: 60,
    firstSeenNs: 0,
    lastSeenNs: 0,
    tcpFlags: 0,
    fragment: false,
    ...o,
  };
}

/** A flow table of capacity 1024 holding the `n` flows it created, nothing evicted. */
export function tableOf(n: number): Snapshot["flowTable"] {
  return { entries: n, capacity: 1024, created: n, evicted: 0, insertFailed: 0 };
}

/** A snapshot of these flows and nothing else counted; `over` replaces any field. */
export function snapshotOf(flows: FlowSnapshot[], over: Partial<Snapshot> = {}): Snapshot {
  return {
    takenAt: Date.now(),
    mode: "ebpf",
    interfaces: [],
    flows: FlowTable.from(flows),
    flowTable: { entries: flows.length, capacity: 1e6, created: 0, evicted: 0, insertFailed: 0 },
    events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
    programs: [],
    bpfStatsEnabled: false,
    ...over,
  };
}
