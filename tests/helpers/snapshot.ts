/** Snapshots for tests of pure logic: the flows given, as the collector would hold them. */
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { FlowTable } from "../../src/flows/table.ts";
import type { Snapshot } from "../../src/state/snapshot.ts";

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
