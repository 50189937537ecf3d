/**
 * A small Prometheus text-exposition writer (format 0.0.4) for families with many series.
 *
 * Every render is one cycle: the caller sets the value of each series it wants to expose, then
 * renders; only the series set since the previous render appear, so a series that is not set
 * again (a flow that left the top N, an interface that went away) disappears from the next
 * scrape. A series' escaped label string, `{a="x",b="y"} `, is built once, cached by its label
 * values and reused across scrapes, so a steady series costs a hash of its label values, one
 * Map lookup and a few concatenations per scrape. A cached series not set for `retainCycles`
 * renders in a row is forgotten, which bounds the cache by the series of the last few cycles.
 *
 * Usage: `const f = new MetricFamily("x_bytes_total", "counter", "Bytes.", ["if"]);` then per
 * scrape `f.set(["eth0"], 123)` for each series and `f.render()`. A MetricGroup does the same
 * for families that share their labels (one lookup for all), a MetricHistogram for a histogram
 * (its buckets, sum and count per series), and a MetricSet renders several.
 */

export type MetricType = "counter" | "gauge";

export interface MetricFamilyOptions {
  /**
   * A series' cached text is forgotten at the retainCycles-th render in a row without the series
   * (default 3, at least 1: 1 forgets it at the first render without it).
   */
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

/** The name, type and HELP text of one family. */
export interface FamilySpec {
  name: string;
  type: MetricType;
  help: string;
}

interface Series {
  /**
   * `{a="x",b="y"} `: the escaped label string and the space before the value, shared by the
   * families of a group; also what tells apart label sets whose hashes collide (labelsMatch).
   */
  readonly labels: string;
  /** The cycle the series was last set in. */
  cycle: number;
  /** Its index in that cycle's lists. */
  slot: number;
  /** The next series with the same hash. */
  next: Series | undefined;
}

/** FNV-1a over the label values' UTF-16 code units, each value closed by its length. */
export function hashValues(values: readonly string[]): number {
  let h = 0x811c9dc5 | 0;
  for (let j = 0; j < values.length; j++) {
    const v = values[j];
    for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ v.length ^ 0x5bd1e995, 0x01000193);
  }
  return h;
}

/**
 * Whether `labels` is the label string of `values` for label `names`, as formatLabels writes
 * it. Comparing against the escaped text is exact (escaping is one-to-one and an unescaped `"`
 * can only close a value), and spares keeping the values themselves.
 */
function labelsMatch(labels: string, names: readonly string[], values: readonly string[]): boolean {
  let p = 0;
  for (let i = 0; i < names.length; i++) {
    p += names[i].length + 3; // `{` or `,`, the name, `="`
    const v = values[i];
    for (let j = 0; j < v.length; j++) {
      const c = v.charCodeAt(j);
      if (c === 0x5c || c === 0x22) { // backslash, double quote
        if (labels.charCodeAt(p) !== 0x5c || labels.charCodeAt(p + 1) !== c) return false;
        p += 2;
      } else if (c === 0x0a) { // line feed
        if (labels.charCodeAt(p) !== 0x5c || labels.charCodeAt(p + 1) !== 0x6e) return false;
        p += 2;
      } else {
        if (labels.charCodeAt(p) !== c) return false;
        p++;
      }
    }
    if (labels.charCodeAt(p) !== 0x22) return false;
    p++;
  }
  return true;
}

function checkName(name: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
}

function checkFamily(f: FamilySpec): void {
  const { name, type } = f;
  checkName(name);
  if (type !== "counter" && type !== "gauge") throw new Error(`${name}: unknown type ${type}`);
  if (type === "counter" && !name.endsWith("_total")) {
    throw new Error(`counter ${name} must end in _total`);
  }
  if (type === "gauge" && name.endsWith("_total")) {
    throw new Error(`gauge ${name} must not end in _total`);
  }
}

/** A family's `# HELP` and `# TYPE` lines. */
function header(name: string, type: string, help: string): string {
  return `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
}

/**
 * The series of a group or a histogram: each one's label string, cached by a hash of its label
 * values across cycles (see MetricGroup), and this cycle's series in the order they were first
 * set, each one's slot its index there.
 */
class SeriesIndex {
  readonly labelNames: readonly string[];
  /** The family named in errors. */
  readonly #owner: string;
  readonly #retain: number;
  /** Series by hash of their label values (colliding ones chained), across cycles. */
  readonly #cache = new Map<number, Series>();
  #cached = 0;
  /** This cycle's series in the order they were first set. */
  active: Series[] = [];
  #cycle = 0;

  /** Throws on an invalid label name or one given twice. */
  constructor(owner: string, labelNames: readonly string[], options: MetricFamilyOptions) {
    const seen = new Set<string>();
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith("__")) {
        throw new Error(`${owner}: invalid label name "${l}"`);
      }
      if (seen.has(l)) throw new Error(`${owner}: label ${l} given twice`);
      seen.add(l);
    }
    this.#owner = owner;
    this.labelNames = [...labelNames];
    this.#retain = Math.max(1, Math.floor(options.retainCycles ?? 3));
  }

  /** The series' slot in this cycle; a series not set yet in this cycle takes the next one. */
  slot(labelValues: readonly string[]): number {
    const s = this.#series(labelValues);
    if (s.cycle === this.#cycle) return s.slot;
    s.cycle = this.#cycle;
    s.slot = this.active.length;
    this.active.push(s);
    return s.slot;
  }

  /** Whether the series was set in this cycle. */
  has(labelValues: readonly string[]): boolean {
    if (labelValues.length !== this.labelNames.length) return false;
    for (let s = this.#cache.get(hashValues(labelValues)); s; s = s.next) {
      if (this.#matches(s, labelValues)) return s.cycle === this.#cycle;
    }
    return false;
  }

  /** Series whose text is cached (this cycle's and recent ones). */
  get cached(): number {
    return this.#cached;
  }

  /** Starts the next cycle, forgetting series not set for retainCycles cycles. */
  endCycle(): void {
    const cycle = this.#cycle;
    if (this.#cached > this.active.length) {
      // Something cached was not set in this cycle: forget what is too old.
      const retain = this.#retain;
      for (const [hash, first] of this.#cache) {
        let head: Series | undefined, tail: Series | undefined;
        for (let s: Series | undefined = first; s; s = s.next) {
          if (cycle - s.cycle >= retain) {
            this.#cached--;
            continue;
          }
          if (tail) tail.next = s;
          else head = s;
          tail = s;
        }
        if (tail) tail.next = undefined;
        if (head === undefined) this.#cache.delete(hash);
        else if (head !== first) this.#cache.set(hash, head);
      }
    }
    this.#cycle = cycle + 1;
    this.active = [];
  }

  #matches(s: Series, labelValues: readonly string[]): boolean {
    return labelsMatch(s.labels, this.labelNames, labelValues);
  }

  #series(labelValues: readonly string[]): Series {
    if (labelValues.length !== this.labelNames.length) {
      throw new Error(
        `${this.#owner}: ${labelValues.length} label values for ` +
          `${this.labelNames.length} labels`,
      );
    }
    const hash = hashValues(labelValues);
    const first = this.#cache.get(hash);
    for (let s = first; s; s = s.next) if (this.#matches(s, labelValues)) return s;
    const labels = formatLabels(this.labelNames, labelValues);
    const s: Series = {
      // Joined, not concatenated: join makes a flat string, where `${a}${b}` makes a rope that
      // every render and encoding would walk again (together they took about twice as long).
      labels: [labels, " "].join(""),
      cycle: -1,
      slot: 0,
      next: first,
    };
    this.#cache.set(hash, s);
    this.#cached++;
    return s;
  }
}

/**
 * Families that share their label names and their series, such as the bytes and the packets of
 * one flow: each series is looked up once per cycle for all of them. Each family is rendered on
 * its own (HELP, TYPE, its lines); a family's value for a series set in a cycle starts at 0.
 *
 * The cache is keyed by a 32-bit hash of the label values computed in JavaScript: a Map lookup
 * with a fresh string key (say, the values joined) has V8 hash the string in its runtime, which
 * cost several times more. Colliding label sets are told apart by comparing the values with the
 * cached label string; the values are not kept, so callers may reuse one array for every call.
 * One label string per series for all the families of a group, rather than one `name{…} ` per
 * family, took about 40% less memory at no cost in speed (about 440 bytes per flow, bytes and
 * packets, at 100k flows).
 */
export class MetricGroup {
  readonly families: readonly Readonly<FamilySpec>[];
  readonly labelNames: readonly string[];
  readonly #headers: readonly string[];
  readonly #series: SeriesIndex;
  /** Per family, the values of this cycle's series by slot. */
  #columns: number[][];

  /**
   * Counter names must end in `_total`, and gauge names must not. Throws on an invalid metric
   * or label name, a label name given twice, or no family.
   */
  constructor(
    families: readonly FamilySpec[],
    labelNames: readonly string[] = [],
    options: MetricFamilyOptions = {},
  ) {
    if (families.length === 0) throw new Error("a metric group needs a family");
    families.forEach(checkFamily);
    const names = new Set(families.map((f) => f.name));
    if (names.size !== families.length) throw new Error("a family twice in one group");
    this.#series = new SeriesIndex(families[0].name, labelNames, options);
    this.families = families.map(({ name, type, help }) => ({ name, type, help }));
    this.labelNames = this.#series.labelNames;
    this.#headers = families.map(({ name, type, help }) => header(name, type, help));
    this.#columns = families.map(() => []);
  }

  /**
   * The series' slot in this cycle, for setAt and addAt: a series not set yet in this cycle is
   * added to it, at 0 in every family.
   */
  slot(labelValues: readonly string[]): number {
    const slot = this.#series.slot(labelValues);
    if (slot === this.#columns[0].length) { for (const c of this.#columns) c.push(0); }
    return slot;
  }

  /** Sets the value of family `family` (its index) for the series in `slot`. */
  setAt(family: number, slot: number, value: number): void {
    this.#columns[family][slot] = value;
  }

  /** Adds to the value of family `family` for the series in `slot`. */
  addAt(family: number, slot: number, value: number): void {
    this.#columns[family][slot] += value;
  }

  /** Sets a series' values for this cycle, one per family in order (fewer: the rest kept). */
  set(labelValues: readonly string[], ...values: number[]): void {
    this.#checkCount(values.length);
    const slot = this.slot(labelValues);
    for (let i = 0; i < values.length; i++) this.#columns[i][slot] = values[i];
  }

  /** Adds to a series' values for this cycle: merges samples of duplicate label sets. */
  add(labelValues: readonly string[], ...values: number[]): void {
    this.#checkCount(values.length);
    const slot = this.slot(labelValues);
    for (let i = 0; i < values.length; i++) this.#columns[i][slot] += values[i];
  }

  /** Whether the series was set in this cycle. */
  has(labelValues: readonly string[]): boolean {
    return this.#series.has(labelValues);
  }

  /** Series set in this cycle. */
  get size(): number {
    return this.#series.active.length;
  }

  /** Series whose text is cached (this cycle's and recent ones). */
  get cached(): number {
    return this.#series.cached;
  }

  /**
   * Per family: HELP, TYPE and one line per series set in this cycle, in the order they were
   * first set. Ends the cycle.
   */
  render(): string {
    let out = "";
    const active = this.#series.active;
    for (let f = 0; f < this.#headers.length; f++) {
      out += this.#headers[f];
      const values = this.#columns[f];
      const name = this.families[f].name;
      for (let i = 0; i < active.length; i++) {
        const v = values[i];
        // Inline fast path for finite values (nearly all of them).
        out += v - v === 0
          ? `${name}${active[i].labels}${v}\n`
          : `${name}${active[i].labels}${formatValue(v)}\n`;
      }
    }
    this.#endCycle();
    return out;
  }

  /** Ends the cycle without rendering: everything set since the last render is dropped. */
  discard(): void {
    this.#endCycle();
  }

  #endCycle(): void {
    this.#series.endCycle();
    this.#columns = this.#columns.map(() => []);
  }

  #checkCount(n: number): void {
    if (n > this.families.length) {
      throw new Error(`${this.families[0].name}: ${n} values for ${this.families.length} families`);
    }
  }
}

/** One metric family: a group of one; `set(labelValues, value)`, `add(labelValues, value)`. */
export class MetricFamily extends MetricGroup {
  constructor(
    name: string,
    type: MetricType,
    help: string,
    labelNames: readonly string[] = [],
    options: MetricFamilyOptions = {},
  ) {
    super([{ name, type, help }], labelNames, options);
  }

  get name(): string {
    return this.families[0].name;
  }

  get type(): MetricType {
    return this.families[0].type;
  }

  get help(): string {
    return this.families[0].help;
  }
}

/**
 * A histogram family: per series, a cumulative `_bucket` line for each upper bound and for `+Inf`,
 * then `_sum` and `_count`, under one HELP and TYPE; label sets are cached as in MetricGroup.
 * Without a series in a cycle it renders nothing, not even HELP and TYPE.
 */
export class MetricHistogram {
  /** The family, for MetricSet. */
  readonly families: readonly Readonly<{ name: string; type: "histogram"; help: string }>[];
  /** The buckets' upper bounds, increasing (`+Inf` is implied). */
  readonly bounds: readonly number[];
  readonly #series: SeriesIndex;
  readonly #header: string;
  /** Per bound and `+Inf`: the end of a `_bucket` line's labels, `,le="0.5"} `. */
  readonly #le: readonly string[];
  /** Per slot: the cumulative counts per bound, then the count (`+Inf`) and the sum. */
  #rows: number[][] = [];

  /**
   * Throws on an invalid metric or label name, a label name given twice or named `le`, or
   * bounds that are not finite and increasing.
   */
  constructor(
    readonly name: string,
    readonly help: string,
    bounds: readonly number[],
    labelNames: readonly string[] = [],
    options: MetricFamilyOptions = {},
  ) {
    checkName(name);
    if (labelNames.includes("le")) throw new Error(`${name}: the label le is the histogram's`);
    if (!bounds.every((b, i) => Number.isFinite(b) && (i === 0 || bounds[i - 1] < b))) {
      throw new Error(`${name}: bucket bounds must be finite and increasing`);
    }
    this.#series = new SeriesIndex(name, labelNames, options);
    this.families = [{ name, type: "histogram", help }];
    this.bounds = [...bounds];
    this.#header = header(name, "histogram", help);
    const comma = labelNames.length ? "," : "";
    this.#le = [...bounds.map(formatValue), "+Inf"].map((le) => `${comma}le="${le}"} `);
  }

  /**
   * Sets a series for this cycle: `counts[i]` observations in bucket i (above bounds[i - 1], at
   * most bounds[i]), their `sum`, and `count` observations in all (by default the counts' total;
   * more when some were above the last bound).
   */
  set(
    labelValues: readonly string[],
    counts: readonly number[],
    sum: number,
    count?: number,
  ): void {
    if (counts.length !== this.bounds.length) {
      throw new Error(`${this.name}: ${counts.length} counts for ${this.bounds.length} buckets`);
    }
    const row: number[] = [];
    let acc = 0;
    for (const n of counts) row.push(acc += n);
    row.push(count ?? acc, sum);
    this.#rows[this.#series.slot(labelValues)] = row;
  }

  /** Series set in this cycle. */
  get size(): number {
    return this.#series.active.length;
  }

  /** Series whose text is cached (this cycle's and recent ones). */
  get cached(): number {
    return this.#series.cached;
  }

  /** HELP, TYPE and the lines of each series set in this cycle, if any. Ends the cycle. */
  render(): string {
    const active = this.#series.active;
    let out = active.length ? this.#header : "";
    const { name } = this;
    const n = this.bounds.length;
    const bare = this.#series.labelNames.length === 0;
    for (let i = 0; i < active.length; i++) {
      const labels = active[i].labels; // `{a="x"} `, or ` ` without labels
      const open = bare ? "{" : labels.slice(0, -2);
      const row = this.#rows[i];
      for (let b = 0; b <= n; b++) {
        out += `${name}_bucket${open}${this.#le[b]}${formatValue(row[b])}\n`;
      }
      out += `${name}_sum${labels}${formatValue(row[n + 1])}\n`;
      out += `${name}_count${labels}${formatValue(row[n])}\n`;
    }
    this.#series.endCycle();
    this.#rows = [];
    return out;
  }
}

/** Groups and families rendered together, in the order they were added; names must be unique. */
export class MetricSet {
  readonly #groups: (MetricGroup | MetricHistogram)[] = [];
  readonly #names = new Set<string>();

  add<T extends MetricGroup | MetricHistogram>(group: T): T {
    for (const { name } of group.families) {
      if (this.#names.has(name)) throw new Error(`metric family ${name} added twice`);
    }
    for (const { name } of group.families) this.#names.add(name);
    this.#groups.push(group);
    return group;
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

  group(
    families: readonly FamilySpec[],
    labelNames: readonly string[] = [],
    options?: MetricFamilyOptions,
  ): MetricGroup {
    return this.add(new MetricGroup(families, labelNames, options));
  }

  histogram(
    name: string,
    help: string,
    bounds: readonly number[],
    labelNames: readonly string[] = [],
    options?: MetricFamilyOptions,
  ): MetricHistogram {
    return this.add(new MetricHistogram(name, help, bounds, labelNames, options));
  }

  /** Family names, in render order. */
  get names(): string[] {
    return this.#groups.flatMap((g) => g.families.map((f) => f.name));
  }

  has(name: string): boolean {
    return this.#names.has(name);
  }

  /** Every group and histogram (see their render); ends the cycle of each. */
  render(): string {
    let out = "";
    for (const g of this.#groups) out += g.render();
    return out;
  }
}
