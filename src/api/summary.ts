/**
 * What the status page needs of one snapshot, small enough to send every interval over SSE:
 * health, per-interface rates, the top 50 flows with their rates, and the mesh's peers.
 */
import { flowId } from "../flows/key.ts";
import { flowSignals } from "../flows/signals.ts";
import type { StateStore } from "../state/store.ts";

const TOP = 50;

export class SummaryBuilder {
  /** Bytes of the flows in the previous summary, and when, for per-flow rates. */
  #prev = new Map<string, number>();
  #prevAt = 0;
  #last?: unknown;

  constructor(private readonly store: StateStore) {}

  /** The summary of the current snapshot, built once per snapshot. */
  build(mode: string, fallbackReason: string): unknown {
    const s = this.store.current;
    if (!s) return undefined;
    const mesh = s.mesh;
    if (s.takenAt === this.#prevAt) return this.#last;
    const secs = this.#prevAt ? (s.takenAt - this.#prevAt) / 1000 : 0;
    const next = new Map<string, number>();
    const flows = s.flows.top("bytes", TOP).flows.map((f) => {
      const k = flowId(f);
      next.set(k, f.bytes);
      const before = this.#prev.get(k);
      return {
        interface: f.interface,
        direction: f.direction,
        proto: f.proto,
        family: f.family,
        saddr: f.saddr,
        daddr: f.daddr,
        sport: f.sport,
        dport: f.dport,
        packets: f.packets,
        bytes: f.bytes,
        bitsPerSecond: secs > 0 && before !== undefined
          ? Math.max(0, (f.bytes - before) * 8 / secs)
          : 0,
        ...flowSignals(s.signals?.flows, f),
      };
    });
    this.#prev = next;
    this.#prevAt = s.takenAt;
    const h = this.store.health;
    this.#last = {
      takenAt: s.takenAt,
      mode,
      fallbackReason: fallbackReason || undefined,
      health: {
        status: h.overall(),
        components: h.list().map((c) => ({ ...c, since: new Date(c.since).toISOString() })),
      },
      interfaces: s.interfaces.map((i) => ({
        name: i.name,
        source: i.source,
        rates: this.store.rates(i),
      })),
      flows,
      drops: s.signals ? [...s.signals.drops].sort((a, b) => b.count - a.count).slice(0, 20) : null,
      mesh: mesh
        ? {
          peers: mesh.peers.map((p) => ({
            name: p.name,
            state: p.state,
            since: new Date(p.since).toISOString(),
            rtt: { ewmaSeconds: p.rtt.ewmaSeconds },
            loss: { ratio: p.loss.ratio },
            bytes: p.bytes,
          })),
        }
        : null,
    };
    return this.#last;
  }
}
