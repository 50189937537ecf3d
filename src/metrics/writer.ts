/**
 * A small Prometheus text-exposition writer (format 0.0.4) for families with many series.
 *
 * Every render is one cycle: the caller sets the value of each series it wants to expose, then
 * renders; only the series set since the previous render appear, so a series that is not set
 * again (a flow that left the top N, an interface that went away) disappears from the next
 * scrape. What a series costs to format — its name and escaped label string, `name{a="x"} ` — is
 * built once and cached by its label values, so steady series cost one Map lookup and one string
 * concatenation per scrape. A cached series that is not set for `retainCycles` renders is
 * forgotten, which bounds the cache by the series of the last few cycles.
 */

export type MetricType = "counter" | "gauge";

export interface MetricFamilyOptions {
  /** Renders a series' cached text survives without being set (default 3, at least 1). */
  retainCycles?: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const LABEL_SPECIAL = /[\\"\n]/;
const HELP_SPECIAL = /[\\\n]/;

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  if (!LABEL_SPECIAL.test(value)) return value;
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  if (!HELP_SPECIAL.test(text)) return text;
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** A sample value as the exposition format writes it: NaN, +Inf and -Inf spelled out. */
export function formatValue(v: number): string {
  if (v - v === 0) return `${v}`; // finite
  return v !== v ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

/** The `{a="x",b="y"}` part of a series, values escaped; "" without labels. */
export function formatLabels(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return "";
  let s = "{";
  for (let i = 0; i < names.length; i++) {
    s += `${i ? "," : ""}${names[i]}="${escapeLabelValue(values[i])}"`;
  }
  return `${s}}`;
}

interface Series {
  /** `name{labels} `: everything on the line before the value. */
  readonly head: string;
  /** The cycle the series was last set in. */
  cycle: number;
  /** Its index in that cycle's lists. */
  slot: number;
}

/** One metric family: its HELP and TYPE, and the series set in the current cycle. */
export class MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly #header: string;
  readonly #retain: number;
  /** Label string per label values (see #key), across cycles. */
  readonly #cache = new Map<string, Series>();
  /** This cycle's series and their values, in the order they were first set. */
  #active: Series[] = [];
  #values: number[] = [];
  #cycle = 0;

  /**
   * Counter names must end in `_total`, and gauge names must not. Throws on an invalid metric
   * or label name, or a label name given twice.
   */
  constructor(
    name: string,
    type: MetricType,
    help: string,
    labelNames: readonly string[] = [],
    options: MetricFamilyOptions = {},
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
    if (type === "counter" && !name.endsWith("_total")) {
      throw new Error(`counter ${name} must end in _total`);
    }
    if (type === "gauge" && name.endsWith("_total")) {
      throw new Error(`gauge ${name} must not end in _total`);
    }
    const seen = new Set<string>();
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith("__")) {
        throw new Error(`${name}: invalid label name "${l}"`);
      }
      if (seen.has(l)) throw new Error(`${name}: label ${l} given twice`);
      seen.add(l);
    }
    this.name = name;
    this.type = type;
    this.help = help;
    this.labelNames = [...labelNames];
    this.#header = `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
    this.#retain = Math.max(1, Math.floor(options.retainCycles ?? 3));
  }

  /** Sets a series' value for this cycle (replacing one set before in the same cycle). */
  set(labelValues: readonly string[], value: number): void {
    const s = this.#series(labelValues);
    if (s.cycle === this.#cycle) {
      this.#values[s.slot] = value;
    } else {
      this.#activate(s, value);
    }
  }

  /** Adds to a series' value for this cycle (starting from 0): merges duplicate label sets. */
  add(labelValues: readonly string[], value: number): void {
    const s = this.#series(labelValues);
    if (s.cycle === this.#cycle) {
      this.#values[s.slot] += value;
    } else {
      this.#activate(s, value);
    }
  }

  /** Whether the series was set in this cycle. */
  has(labelValues: readonly string[]): boolean {
    return this.#cache.get(this.#key(labelValues))?.cycle === this.#cycle;
  }

  /** Series set in this cycle. */
  get size(): number {
    return this.#active.length;
  }

  /** Series whose text is cached (this cycle's and recent ones). */
  get cached(): number {
    return this.#cache.size;
  }

  /**
   * HELP, TYPE and one line per series set in this cycle, in the order they were first set;
   * ends the cycle.
   */
  render(): string {
    let out = this.#header;
    const active = this.#active, values = this.#values;
    for (let i = 0; i < active.length; i++) {
      const v = values[i];
      // Inline fast path for finite values (nearly all of them).
      out += v - v === 0 ? `${active[i].head}${v}\n` : `${active[i].head}${formatValue(v)}\n`;
    }
    this.#endCycle();
    return out;
  }

  /** Ends the cycle without rendering: everything set since the last render is dropped. */
  discard(): void {
    this.#endCycle();
  }

  #endCycle(): void {
    const cycle = this.#cycle;
    if (this.#cache.size > this.#active.length) {
      // Something cached was not set in this cycle: forget what is too old.
      for (const [key, s] of this.#cache) {
        if (cycle - s.cycle >= this.#retain) this.#cache.delete(key);
      }
    }
    this.#cycle = cycle + 1;
    this.#active = [];
    this.#values = [];
  }

  #activate(s: Series, value: number): void {
    s.cycle = this.#cycle;
    s.slot = this.#active.length;
    this.#active.push(s);
    this.#values.push(value);
  }

  #series(labelValues: readonly string[]): Series {
    if (labelValues.length !== this.labelNames.length) {
      throw new Error(
        `${this.name}: ${labelValues.length} label values for ${this.labelNames.length} labels`,
      );
    }
    const key = this.#key(labelValues);
    let s = this.#cache.get(key);
    if (s === undefined) {
      s = { head: `${this.name}${formatLabels(this.labelNames, labelValues)} `, cycle: -1, slot: 0 };
      this.#cache.set(key, s);
    }
    return s;
  }

  /**
   * The cache key of a label set: the values joined by NUL, prefixed "j"; or, when a value
   * itself holds a NUL (so joining could be ambiguous), their JSON, prefixed "s".
   */
  #key(labelValues: readonly string[]): string {
    const n = labelValues.length;
    if (n === 0) return "j";
    if (n === 1) return `j${labelValues[0]}`;
    const key = `j${labelValues.join("\0")}`;
    // Exactly n − 1 NULs unless a value brought its own.
    let nuls = 0;
    for (let i = key.indexOf("\0"); i >= 0; i = key.indexOf("\0", i + 1)) {
      if (++nuls === n) return `s${JSON.stringify(labelValues)}`;
    }
    return key;
  }
}

/** Families rendered together, in the order they were added; names must be unique. */
export class MetricSet {
  readonly #families: MetricFamily[] = [];
  readonly #names = new Set<string>();

  add(family: MetricFamily): MetricFamily {
    if (this.#names.has(family.name)) throw new Error(`metric family ${family.name} added twice`);
    this.#names.add(family.name);
    this.#families.push(family);
    return family;
  }

  counter(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    options?: MetricFamilyOptions,
  ): MetricFamily {
    return this.add(new MetricFamily(name, "counter", help, labelNames, options));
  }

  gauge(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    options?: MetricFamilyOptions,
  ): MetricFamily {
    return this.add(new MetricFamily(name, "gauge", help, labelNames, options));
  }

  /** Family names, in render order. */
  get names(): string[] {
    return this.#families.map((f) => f.name);
  }

  has(name: string): boolean {
    return this.#names.has(name);
  }

  /** Every family (see MetricFamily.render); ends the cycle of each. */
  render(): string {
    let out = "";
    for (const f of this.#families) out += f.render();
    return out;
  }

  /** Ends every family's cycle without rendering. */
  discard(): void {
    for (const f of this.#families) f.discard();
  }
}
