/**
 * The kernel signals (drops, TCP retransmits, RTT) as the snapshot carries them: starts the
 * optional probe (a failure degrades only its own health), reads it every snapshot, and
 * announces bursts of drops on the event stream.
 */
import { reasonOf } from "../datapath/errors.ts";
import type { Program } from "../datapath/object.ts";
import { signalInterface, type SignalName, SignalsProbe } from "../datapath/signals.ts";
import type { EventLog } from "../state/events.ts";
import type { HealthBoard } from "../state/health.ts";
import type { SignalsSnapshot } from "../state/snapshot.ts";

/** Drops of one reason on one interface within one interval that make a "drops" event. */
const DROP_BURST = 100;

export class SignalsReader {
  readonly #probe?: SignalsProbe;
  /** Drop counts of the previous read, to announce bursts. */
  readonly #lastDrops = new Map<string, number>();
  #primed = false;

  /** Starts the probe for the `wanted` signals; none wanted: nothing runs. */
  constructor(
    wanted: readonly SignalName[],
    health: HealthBoard,
    private readonly events: EventLog,
  ) {
    if (wanted.length === 0) {
      health.set("signals", "healthy", "switched off in the configuration");
      return;
    }
    try {
      this.#probe = new SignalsProbe([...wanted]);
    } catch (e) {
      health.set("signals", "unhealthy", `cannot load: ${reasonOf(e)}`);
      return;
    }
    const off = [...this.#probe.unavailable].filter(([n]) => wanted.includes(n));
    health.set(
      "signals",
      off.length ? "degraded" : "healthy",
      off.length
        ? off.map(([n, why]) => `${n} unavailable: ${why}`).join("; ")
        : `running: ${[...this.#probe.links.keys()].join(", ")}`,
    );
  }

  /** The programs the probe runs (for their bpf_stats). */
  programs(): Program[] {
    const p = this.#probe;
    return p ? [...p.links.values()].map((l) => p.collection.program(l.program)) : [];
  }

  /** The signals now, interfaces named by `ifname`; undefined when the probe does not run. */
  read(ifname: (ifindex: number) => string): SignalsSnapshot | undefined {
    const p = this.#probe;
    if (!p) return undefined;
    const name = (ifindex: number) => signalInterface(ifindex, ifname);
    const drops = p.drops().map((d) => ({
      interface: name(d.ifindex),
      reason: d.reason,
      count: d.count,
    }));
    // After the first read, a reason not seen before counts from 0.
    const primed = this.#primed;
    this.#primed = true;
    for (const d of drops) {
      const k = `${d.interface}/${d.reason}`;
      const before = this.#lastDrops.get(k) ?? (primed ? 0 : d.count);
      if (d.count - before >= DROP_BURST) {
        this.events.append("drops", { ...d, new: d.count - before });
      }
      this.#lastDrops.set(k, d.count);
    }
    const flows = p.flows();
    const retransmitsByInterface: Record<string, number> = {};
    for (const f of flows.values()) {
      if (f.retransmits) {
        const n = name(f.ifindex);
        retransmitsByInterface[n] = (retransmitsByInterface[n] ?? 0) + f.retransmits;
      }
    }
    return {
      drops,
      flows,
      rtt: [...p.rttHistogram()].map(([i, buckets]) => ({ interface: name(i), buckets })),
      retransmitsByInterface,
      unavailable: Object.fromEntries(p.unavailable),
    };
  }

  close(): void {
    this.#probe?.close();
  }
}
