/**
 * What leaves the box for the engines a fleet already runs: every exporter (IPFIX to a flow
 * collector, Prometheus remote-write to a central receiver) takes each snapshot as it is made,
 * queues what it will send, and sends in the background: it never blocks the snapshot loop,
 * bounds its queue, and counts what it could not send. The Appliance shows each destination's
 * status as the health component `export:NAME`, and its counters on /metrics (metrics.ts).
 */
import type { ExportSnapshot, HealthState, Snapshot } from "../state/snapshot.ts";

export interface ExportStatus extends ExportSnapshot {
  state: HealthState;
  /** One line: what was sent, what failed, and the last error. */
  reason: string;
  /** Records or samples dropped, for every reason. */
  dropped: number;
  lastError?: string;
}

export interface Exporter {
  /** The destination, e.g. `ipfix 127.0.0.1:9995` or `remote_write`. */
  readonly name: string;
  /**
   * Called right after every snapshot; `metrics` renders the /metrics page (the same series,
   * with the same bounds, as a scrape gets). Queues and returns: never waits on the network.
   */
  offer(s: Snapshot, metrics: () => string): void;
  status(): ExportStatus;
  /** Sends what it can within a short grace period, then stops. */
  stop(): Promise<void>;
}
