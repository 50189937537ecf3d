/**
 * The current snapshot and the one before it (for rates), the health board and the event log:
 * what every reader (API, /metrics, status page) shares.
 */
import { FlowTable } from "../flows/table.ts";
import { EventLog } from "./events.ts";
import { HealthBoard } from "./health.ts";
import type { Direction } from "../flows/key.ts";
import type { InterfaceSnapshot, Snapshot } from "./snapshot.ts";

export interface Rates {
  bitsPerSecond: number;
  packetsPerSecond: number;
}

export class StateStore {
  current?: Snapshot;
  previous?: Snapshot;
  readonly health = new HealthBoard();
  readonly events: EventLog;

  /** `firstEventId`: where this run's event ids start (see EventLog). */
  constructor(firstEventId = 1) {
    this.events = new EventLog(10_000, firstEventId);
    this.health.onChange = (c, prev) =>
      this.events.append("health", { ...c, previous: prev?.state });
  }

  /** The previous snapshot keeps no flows: only interface rates are computed from it. */
  put(s: Snapshot): void {
    this.previous = this.current && { ...this.current, flows: new FlowTable(0) };
    this.current = s;
  }

  /** Per-direction rates of an interface between the last two snapshots. */
  rates(iface: InterfaceSnapshot): Record<Direction, Rates> {
    const out: Record<Direction, Rates> = {
      rx: { bitsPerSecond: 0, packetsPerSecond: 0 },
      tx: { bitsPerSecond: 0, packetsPerSecond: 0 },
    };
    const prev = this.previous?.interfaces.find((i) =>
      i.name === iface.name && i.source === iface.source
    );
    const secs = this.current && this.previous
      ? (this.current.takenAt - this.previous.takenAt) / 1000
      : 0;
    if (!prev || secs <= 0) return out;
    for (const dir of ["rx", "tx"] as const) {
      const sum = (i: InterfaceSnapshot) =>
        i.traffic.filter((t) => t.direction === dir).reduce(
          (a, t) => ({ packets: a.packets + t.packets, bytes: a.bytes + t.bytes }),
          { packets: 0, bytes: 0 },
        );
      const [a, b] = [sum(prev), sum(iface)];
      out[dir] = {
        bitsPerSecond: Math.max(0, ((b.bytes - a.bytes) * 8) / secs),
        packetsPerSecond: Math.max(0, (b.packets - a.packets) / secs),
      };
    }
    return out;
  }
}
