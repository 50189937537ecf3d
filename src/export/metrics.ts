/**
 * The exporters' families on /metrics: per destination (labels `kind`, ipfix or remote_write,
 * and `destination`, the collector's HOST:PORT or the receiver's URL), what was delivered, the
 * failed sends, what was dropped and why, the queue, and the last successful send.
 */
import type { Families, SnapshotCollector } from "../metrics/collector.ts";
import type { Snapshot } from "../state/snapshot.ts";

export class ExportMetrics implements SnapshotCollector {
  readonly #records;
  readonly #samples;
  readonly #failures;
  readonly #dropped;
  readonly #queue;
  readonly #lastSuccess;

  constructor(f: Families) {
    const dest = ["kind", "destination"];
    this.#records = f.counter(
      "export_records_total",
      "IPFIX data records an exporter delivered to its collector.",
      dest,
    );
    this.#samples = f.counter(
      "export_samples_total",
      "Samples remote-write delivered to its receiver (answered 2xx).",
      dest,
    );
    this.#failures = f.counter(
      "export_failures_total",
      "Sends that failed: retried later, or given up (remote-write: refused with 4xx).",
      dest,
    );
    this.#dropped = f.counter(
      "export_dropped_total",
      "Records or samples never delivered, by reason: queue_full (the oldest went), rejected " +
        "(4xx), stopped (left at stop, and not kept for the next start).",
      [...dest, "reason"],
    );
    this.#queue = f.gauge("export_queue", "Records or samples waiting to be sent.", dest);
    this.#lastSuccess = f.gauge(
      "export_last_success_timestamp_seconds",
      "When a send last succeeded, in seconds since the epoch (absent: never).",
      dest,
    );
  }

  write(s: Snapshot): void {
    const labels = ["", ""], withReason = ["", "", ""];
    for (const e of s.exports ?? []) {
      labels[0] = withReason[0] = e.kind;
      labels[1] = withReason[1] = e.destination;
      (e.kind === "ipfix" ? this.#records : this.#samples).set(labels, e.sent);
      this.#failures.set(labels, e.failed);
      for (const [reason, n] of Object.entries(e.droppedBy)) {
        withReason[2] = reason;
        this.#dropped.set(withReason, n);
      }
      this.#queue.set(labels, e.queued);
      if (e.lastSuccessAt !== undefined) this.#lastSuccess.set(labels, e.lastSuccessAt / 1000);
    }
  }
}
