/**
 * Learned baselines: a window of recent values of one metric and its robust statistics
 * (median and median absolute deviation), which an outlier or two cannot drag.
 */

export interface BaselineStats {
  samples: number;
  median: number;
  /** Median absolute deviation, scaled by 1.4826 to estimate a standard deviation. */
  mad: number;
}

/** How a threshold comes from a baseline: a floor, and how far above normal is abnormal. */
export interface ThresholdRule {
  /** Never below this, learned or not (also the threshold while learning). */
  floor: number;
  /** Robust standard deviations above the median. */
  deviations: number;
  /** Times the median. */
  ratio: number;
  /** Samples before the baseline counts. */
  minSamples: number;
}

function median(sorted: number[]): number {
  const n = sorted.length;
  if (n === 0) return 0;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

export class Baseline {
  #values: number[];
  #next = 0;

  constructor(readonly capacity = 300, values: number[] = []) {
    this.#values = values.slice(-capacity);
    this.#next = this.#values.length % capacity;
  }

  add(v: number): void {
    if (!Number.isFinite(v)) return;
    if (this.#values.length < this.capacity) this.#values.push(v);
    else this.#values[this.#next] = v;
    this.#next = (this.#next + 1) % this.capacity;
  }

  stats(): BaselineStats {
    const sorted = [...this.#values].sort((a, b) => a - b);
    const m = median(sorted);
    const dev = sorted.map((v) => Math.abs(v - m)).sort((a, b) => a - b);
    return { samples: sorted.length, median: m, mad: 1.4826 * median(dev) };
  }

  /** The value above which a new one is abnormal, and the statistics it came from. */
  threshold(rule: ThresholdRule): { threshold: number; stats: BaselineStats; learned: boolean } {
    const stats = this.stats();
    const learned = stats.samples >= rule.minSamples;
    const t = learned
      ? Math.max(rule.floor, stats.median + rule.deviations * stats.mad, rule.ratio * stats.median)
      : rule.floor;
    return { threshold: t, stats, learned };
  }

  /** The values, oldest first (what the knowledge store keeps). */
  values(): number[] {
    if (this.#values.length < this.capacity) return [...this.#values];
    return [...this.#values.slice(this.#next), ...this.#values.slice(0, this.#next)];
  }
}
