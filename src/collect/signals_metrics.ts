/**
 * The kernel signals' families on /metrics (the probe's drops, TCP retransmits and smoothed
 * RTT, read by the collector), on accepted interfaces.
 */
import { RTT_BUCKET_COUNT } from "../../ffi/layout.ts";
import type { Families, Scrape, SnapshotCollector } from "../metrics/collector.ts";
import type { Snapshot } from "../state/snapshot.ts";

/** Packets the kernel dropped and TCP segments retransmitted, per interface. */
export class SignalMetrics implements SnapshotCollector {
  readonly #drops;
  readonly #retransmits;

  constructor(f: Families) {
    this.#drops = f.counter(
      "drops_total",
      "Packets the kernel dropped, by interface and reason (enum skb_drop_reason of this kernel).",
      ["interface", "reason"],
    );
    this.#retransmits = f.counter(
      "tcp_retransmits_total",
      "TCP segments retransmitted, by interface (flows still in the signal table).",
      ["interface"],
    );
  }

  write(s: Snapshot, scrape: Scrape): void {
    if (!s.signals) return;
    for (const d of s.signals.drops) {
      if (scrape.accepts(d.interface)) this.#drops.add([d.interface, d.reason], d.count);
    }
    for (const [iface, n] of Object.entries(s.signals.retransmitsByInterface)) {
      if (scrape.accepts(iface)) this.#retransmits.set([iface], n);
    }
  }
}

/** TCP smoothed RTT per interface as a histogram; bucket b holds 2^b ≤ µs < 2^(b+1). */
export class TcpRttMetrics implements SnapshotCollector {
  readonly #rtt;

  constructor(f: Families) {
    this.#rtt = f.histogram(
      "tcp_rtt_seconds",
      "Smoothed RTT of TCP sockets at each received segment, by interface.",
      Array.from({ length: RTT_BUCKET_COUNT }, (_, b) => 2 ** (b + 1) / 1e6),
      ["interface"],
    );
  }

  write(s: Snapshot, scrape: Scrape): void {
    for (const r of s.signals?.rtt ?? []) {
      if (!scrape.accepts(r.interface)) continue;
      // The sum is estimated from the buckets' midpoints (the kernel keeps counts only).
      const sum = r.buckets.reduce((a, n, b) => a + n * 1.5 * 2 ** b, 0) / 1e6;
      this.#rtt.set([r.interface], r.buckets, sum);
    }
  }
}
