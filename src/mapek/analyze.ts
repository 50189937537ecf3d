/**
 * Analyze: detectors that compare each observation with what this box learned is normal
 * (robust baselines), above fixed floors. Each symptom carries its evidence: the metric, the
 * value, the baseline it was compared with, the threshold and the window.
 */
import { Baseline, type BaselineStats, type ThresholdRule } from "./baseline.ts";
import type { Observation } from "./monitor.ts";

export const SYMPTOM_KINDS = [
  "source_flood",
  "syn_flood",
  "port_scan",
  "drop_rise",
  "mesh_degraded",
  "flow_table_pressure",
  "ringbuf_loss",
] as const;
export type SymptomKind = typeof SYMPTOM_KINDS[number];

export interface Evidence {
  metric: string;
  value: number;
  unit: string;
  threshold: number;
  /** The learned baseline, or null when the threshold is not learned (a fixed threshold, or
   * the floor while the baseline is still `learning`). */
  baseline: BaselineStats | null;
  /** True when a baseline is being learned and the floor stands in for it meanwhile. */
  learning?: boolean;
  window: string;
}

export interface Symptom {
  kind: SymptomKind;
  /** What it is about: a source address, a destination, a drop reason, a peer, "flow table". */
  subject: string;
  /** The address an action on it would target, when there is one. */
  source?: string;
  /**
   * With a source: whether it completed a TCP conversation with this box (its address is
   * real); false: it may be spoofed, and actions on such sources have a budget (plan.ts).
   */
  verified?: boolean;
  summary: string;
  evidence: Evidence[];
}

export interface AnalyzerOptions {
  floodPps: number;
  halfOpenPerS: number;
  scanPorts: number;
  scanWindowS: number;
  dropsPerS: number;
  meshLoss: number;
  flowTableFill: number;
}

/** Baselines learn from this many intervals before they raise thresholds above the floors. */
const MIN_SAMPLES = 30;
/** A value is abnormal above median + 8 robust standard deviations and 4 × median. */
const DEVIATIONS = 8;
const RATIO = 4;
/** Below this share of replies (packets back per packet in), a source's traffic is one-way. */
const REPLY_SHARE = 0.1;
/** Sources whose own baseline is kept (the busiest; the rest share the box-wide one). */
const MAX_SOURCE_BASELINES = 256;
const CAPACITY = 300;

const fmt = (n: number) => n >= 100 ? String(Math.round(n)) : n.toFixed(n >= 10 ? 1 : 2);

export class Analyzer {
  readonly baselines = new Map<string, Baseline>();
  #sourceBaselines = 0;

  constructor(public o: AnalyzerOptions, saved: Record<string, number[]> = {}) {
    for (const [k, v] of Object.entries(saved)) {
      this.baselines.set(k, new Baseline(CAPACITY, v));
      if (k.startsWith("source_pps:")) this.#sourceBaselines++;
    }
  }

  #baseline(key: string): Baseline {
    let b = this.baselines.get(key);
    if (!b) {
      b = new Baseline(CAPACITY);
      this.baselines.set(key, b);
      // Per-source baselines are bounded: the one updated longest ago goes.
      if (key.startsWith("source_pps:") && ++this.#sourceBaselines > MAX_SOURCE_BASELINES) {
        for (const k of this.baselines.keys()) {
          if (!k.startsWith("source_pps:")) continue;
          this.baselines.delete(k);
          this.#sourceBaselines--;
          break;
        }
      }
    } else {
      // Map order is recency order.
      this.baselines.delete(key);
      this.baselines.set(key, b);
    }
    return b;
  }

  /**
   * Compares `value` with the baseline `key` (and `fallbackKey`'s while the key's own is still
   * learning); learns it when it is normal. Returns the evidence when it is abnormal.
   */
  #check(
    key: string,
    value: number,
    floor: number,
    metric: string,
    unit: string,
    window: string,
    fallbackKey?: string,
  ): Evidence | undefined {
    const rule: ThresholdRule = {
      floor,
      deviations: DEVIATIONS,
      ratio: RATIO,
      minSamples: MIN_SAMPLES,
    };
    let t = this.#baseline(key).threshold(rule);
    if (!t.learned && fallbackKey) t = this.#baseline(fallbackKey).threshold(rule);
    if (value <= t.threshold) {
      this.#baseline(key).add(value);
      return undefined;
    }
    // Two decimals are all an operator reads (and the API and knowledge store keep).
    const r = (n: number) => Math.round(n * 100) / 100;
    const b = t.stats;
    return {
      metric,
      value: r(value),
      unit,
      threshold: r(t.threshold),
      baseline: t.learned ? { samples: b.samples, median: r(b.median), mad: r(b.mad) } : null,
      ...(t.learned ? {} : { learning: true }),
      window,
    };
  }

  #learnBelow(key: string, value: number, floor: number): void {
    if (value <= floor) this.#baseline(key).add(value);
  }

  analyze(obs: Observation): Symptom[] {
    const out: Symptom[] = [];
    const o = this.o;
    const win = `${fmt(obs.intervalS)} s`;
    let maxPorts = 0;
    for (const s of obs.sources.values()) {
      maxPorts = Math.max(maxPorts, s.scanPorts);
      // A flood is one-way: a download this box (or a host behind it) asked for gets ACKs or
      // replies back, at least one packet in ten; only what the box does not answer counts.
      const oneWay = s.repliesPps < REPLY_SHARE * s.pps;
      const flood = oneWay && s.pps > o.floodPps &&
        this.#check(
          `source_pps:${s.address}`,
          s.pps,
          o.floodPps,
          "ingress packets per second from the source",
          "packets/s",
          win,
          "busiest_source_pps",
        );
      if (flood) {
        out.push({
          kind: "source_flood",
          subject: s.address,
          source: s.address,
          verified: s.verified,
          summary: `${s.address} sends ${fmt(s.pps)} packets/s${
            s.topDestination ? ` (mostly to ${s.topDestination})` : ""
          } and gets ${fmt(s.repliesPps)} back, above its threshold of ${fmt(flood.threshold)}`,
          evidence: [flood, {
            metric: "packets per second this box sent back to the source",
            value: Math.round(s.repliesPps * 100) / 100,
            unit: "packets/s",
            threshold: Math.round(REPLY_SHARE * s.pps * 100) / 100,
            baseline: null,
            window: win,
          }],
        });
      } else if (oneWay && s.pps <= o.floodPps) {
        this.#baseline(`source_pps:${s.address}`).add(s.pps);
      }
      if (s.scanPorts > o.scanPorts) {
        const scan = this.#check(
          "scan_ports",
          s.scanPorts,
          o.scanPorts,
          "distinct destination ports opened without an answer",
          "ports",
          `${o.scanWindowS} s`,
        );
        if (scan) {
          out.push({
            kind: "port_scan",
            subject: s.address,
            source: s.address,
            verified: s.verified,
            summary: `${s.address} opened ${s.scanPorts} distinct ports in ${o.scanWindowS} s ` +
              `without completing a connection (threshold ${fmt(scan.threshold)})`,
            evidence: [scan],
          });
        }
      }
    }
    // Box-wide baselines learn normal intervals only: one above its floor is not normal.
    this.#learnBelow("busiest_source_pps", obs.busiestPps, o.floodPps);
    this.#learnBelow("scan_ports", maxPorts, o.scanPorts);

    let halfOpenMax = 0;
    for (const [dst, h] of obs.halfOpenByDestination) {
      halfOpenMax = Math.max(halfOpenMax, h.perS);
      if (h.perS <= o.halfOpenPerS) continue;
      const ev = this.#check(
        `half_open:${dst}`,
        h.perS,
        o.halfOpenPerS,
        "TCP connections started that never got past SYN, per second",
        "connections/s",
        win,
        "half_open_busiest",
      );
      if (!ev) continue;
      // The sources that sent most of them: those an action can target.
      const ranked = [...h.sources].sort((a, b) => b[1] - a[1]);
      const [top, topCount] = ranked[0];
      const share = topCount / ([...h.sources.values()].reduce((a, b) => a + b, 0) || 1);
      out.push({
        kind: "syn_flood",
        subject: dst,
        source: share >= 0.5 ? top : undefined,
        verified: share >= 0.5 ? obs.sources.get(top)?.verified ?? false : undefined,
        summary: `${fmt(h.perS)} half-open TCP connections/s to ${dst} from ${h.sources.size} ` +
          `source(s)${share >= 0.5 ? `, ${Math.round(share * 100)}% from ${top}` : ""}`,
        evidence: [ev, {
          metric: "share of the half-open connections from the top source",
          value: share,
          unit: "ratio",
          threshold: 0.5,
          baseline: null,
          window: win,
        }],
      });
    }
    this.#learnBelow("half_open_busiest", halfOpenMax, o.halfOpenPerS);

    for (const [reason, perS] of obs.dropsPerS) {
      if (perS <= o.dropsPerS) {
        this.#baseline(`drops:${reason}`).add(perS);
        continue;
      }
      const ev = this.#check(
        `drops:${reason}`,
        perS,
        o.dropsPerS,
        `kernel drops per second, reason ${reason}`,
        "drops/s",
        win,
      );
      if (ev) {
        out.push({
          kind: "drop_rise",
          subject: reason,
          summary: `the kernel drops ${fmt(perS)} packets/s for ${reason} (threshold ${
            fmt(ev.threshold)
          })`,
          evidence: [ev],
        });
      }
    }

    for (const p of obs.mesh) {
      const loss = p.loss.ratio ?? 0;
      const down = p.state === "suspect" || p.state === "dead";
      if (!down && loss <= o.meshLoss) {
        if (p.rtt.ewmaSeconds !== null) this.#baseline(`mesh_rtt:${p.name}`).add(p.rtt.ewmaSeconds);
        continue;
      }
      if (p.state === "left") continue;
      out.push({
        kind: "mesh_degraded",
        subject: p.name,
        summary: down
          ? `mesh peer ${p.name} is ${p.state}`
          : `mesh link to ${p.name} loses ${Math.round(loss * 100)}% of probes`,
        evidence: [{
          metric: down ? "peer state (1 suspect or dead)" : "probe loss ratio",
          value: down ? 1 : loss,
          unit: down ? "state" : "ratio",
          threshold: down ? 0 : o.meshLoss,
          baseline: null,
          window: `${p.loss.window} probes`,
        }],
      });
    }

    const ft = obs.flowTable;
    if (ft.capacity && (ft.fill >= o.flowTableFill || ft.evictedPerS > 0)) {
      out.push({
        kind: "flow_table_pressure",
        subject: "flow table",
        summary: ft.evictedPerS > 0
          ? `the flow table evicts ${fmt(ft.evictedPerS)} flows/s (${ft.entries} of ${ft.capacity})`
          : `the flow table is ${
            Math.round(ft.fill * 100)
          }% full (${ft.entries} of ${ft.capacity})`,
        evidence: [
          {
            metric: "flow table fill",
            value: ft.fill,
            unit: "ratio",
            threshold: o.flowTableFill,
            baseline: null,
            window: "now",
          },
          {
            metric: "evictions per second",
            value: ft.evictedPerS,
            unit: "flows/s",
            threshold: 0,
            baseline: null,
            window: win,
          },
        ],
      });
    }
    const lost = obs.ringLoss.kernel + obs.ringLoss.consumer;
    if (lost > 0) {
      out.push({
        kind: "ringbuf_loss",
        subject: "events",
        summary: `${lost} events lost in the interval (${obs.ringLoss.kernel} ring full, ` +
          `${obs.ringLoss.consumer} slow clients)`,
        evidence: [{
          metric: "events lost",
          value: lost,
          unit: "events",
          threshold: 0,
          baseline: null,
          window: win,
        }],
      });
    }
    return out;
  }

  /** Every baseline's values, for the knowledge store. */
  saved(): Record<string, number[]> {
    return Object.fromEntries([...this.baselines].map(([k, b]) => [k, b.values()]));
  }
}
