/**
 * The /metrics page as remote-write samples: each sample line of the text exposition format
 * (0.0.4, as src/metrics/writer.ts writes it) becomes one sample of one series, stored as a
 * Prometheus scrape would store it: the metric name as `__name__`, a histogram's `_bucket`,
 * `_sum` and `_count` lines as plain series, labels with an empty value left out, the external
 * labels added where the series lacks them, and a stale marker for every series of the previous
 * page that is not on this one (so a flow that left the top N ends at once, as after a scrape).
 *
 * A series' labels are parsed once and reused while it stays on the page: a page is looked up
 * by each line's series text in the previous page's series, so a steady page costs a slice and
 * a Map lookup per line.
 */
import { type Label, STALE_NAN_BITS } from "./remote_write_wire.ts";

/** One series: its labels, sorted by name; samples of the same object belong to one series. */
export interface Series {
  readonly labels: readonly Label[];
}

/** The samples of one page: series[i] has values[i], all at `timestamp`. */
export interface Page {
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly series: readonly Series[];
  /** Stale markers are written as bits: read them as bits too (valueBits). */
  readonly values: Float64Array;
  /** How many of them are stale markers. */
  readonly stale: number;
  /** Lines that are not a sample as the format has them, skipped. */
  readonly errors: number;
  /** What was wrong with the first of them. */
  readonly firstError?: string;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;
const NUMBER = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;
const MAX_ERROR_TEXT = 120;
/** Lines read between two yields of PageSampler.sample. */
export const STEP_LINES = 1024;

/** A sample's value as the format writes it: a number, `NaN`, `+Inf` or `-Inf`. */
export function parseValue(s: string): number | undefined {
  if (NUMBER.test(s)) return Number(s);
  if (s === "NaN") return NaN;
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  return undefined;
}

/**
 * The labels of a series' text, `name` or `name{a="x",b="y"}` (values escaped with `\\`, `\"`
 * and `\n`), with `__name__` first; a string says what is wrong.
 */
export function parseSeries(text: string): Label[] | string {
  const name = NAME.exec(text)?.[0];
  if (name === undefined) return "no metric name";
  const labels: Label[] = [{ name: "__name__", value: name }];
  if (name.length === text.length) return labels;
  if (text[name.length] !== "{" || text[text.length - 1] !== "}") return "bad label set";
  let p = name.length + 1;
  const end = text.length - 1;
  while (p < end) {
    LABEL_NAME.lastIndex = p;
    const l = LABEL_NAME.exec(text)?.[0];
    if (l === undefined) return `bad label name at ${p}`;
    if (l.startsWith("__")) return `reserved label name ${l}`;
    if (labels.some((x) => x.name === l)) return `label ${l} twice`;
    p += l.length;
    if (text[p] !== "=" || text[p + 1] !== '"') return `no ="…" after label ${l}`;
    p += 2;
    let value = "";
    for (;;) {
      if (p >= end) return `unterminated value of label ${l}`;
      const c = text[p++];
      if (c === '"') break;
      if (c !== "\\") {
        value += c;
        continue;
      }
      const e = text[p++];
      if (e === "n") value += "\n";
      else if (e === "\\" || e === '"') value += e;
      else return `bad escape in the value of label ${l}`;
    }
    labels.push({ name: l, value });
    if (text[p] === ",") p++;
    else if (p !== end) return `no comma after label ${l}`;
  }
  return labels;
}

/** Name order, as the protocol wants labels (byte order; names are ASCII). */
function byName(a: Label, b: Label): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Turns successive /metrics pages into samples; keep one per destination. */
export class PageSampler {
  readonly #external: readonly Label[];
  /** The previous page's series by their text. */
  #previous = new Map<string, Series>();

  /** `external`: labels added to every series that does not have them (one with "" is none). */
  constructor(external: readonly Label[]) {
    this.#external = external;
  }

  /**
   * The samples of `text` at `timestamp`, and a stale marker for each series gone since. A
   * generator: it yields every STEP_LINES lines so that its caller can give the event loop a
   * turn on a large page; the page is its return value.
   */
  *sample(text: string, timestamp: number): Generator<undefined, Page> {
    const previous = this.#previous;
    const current = new Map<string, Series>();
    let values = new Float64Array(Math.max(1024, previous.size + 64));
    const series: Series[] = [];
    let errors = 0, firstError: string | undefined;
    const fail = (line: string, what: string) => {
      if (errors++ === 0) {
        const shown = line.length > MAX_ERROR_TEXT ? `${line.slice(0, MAX_ERROR_TEXT)}…` : line;
        firstError = `${what}: ${JSON.stringify(shown)}`;
      }
    };
    // Stale markers are written after the last growth: a copy never has to keep their bits.
    const room = (n: number) => {
      if (n <= values.length) return;
      const bigger = new Float64Array(Math.max(n, values.length * 2));
      bigger.set(values);
      values = bigger;
    };
    for (let start = 0, lines = 0; start < text.length; lines++) {
      if (lines % STEP_LINES === STEP_LINES - 1) yield;
      const nl = text.indexOf("\n", start);
      const end = nl < 0 ? text.length : nl;
      const line = text.slice(start, end);
      start = end + 1;
      if (line === "" || line[0] === "#") continue;
      // The value is the last field: the format written here has no timestamps, and a space
      // inside a label value comes before it.
      const space = line.lastIndexOf(" ");
      const value = space > 0 ? parseValue(line.slice(space + 1)) : undefined;
      if (value === undefined) {
        fail(line, "no value");
        continue;
      }
      const key = line.slice(0, space);
      if (current.has(key)) {
        fail(line, "series twice on one page");
        continue;
      }
      let s = previous.get(key);
      if (s === undefined) {
        const labels = parseSeries(key);
        if (typeof labels === "string") {
          fail(line, labels);
          continue;
        }
        s = { labels: this.#withExternal(labels) };
      }
      current.set(key, s);
      room(series.length + 1);
      values[series.length] = value;
      series.push(s);
    }
    let stale = 0;
    room(series.length + previous.size);
    // Bits, not a number: see STALE_NAN_BITS.
    const bits = new BigUint64Array(values.buffer);
    for (const [key, s] of previous) {
      if (current.has(key)) continue;
      bits[series.length] = STALE_NAN_BITS;
      series.push(s);
      stale++;
    }
    this.#previous = current;
    return { timestamp, series, values: values.slice(0, series.length), stale, errors, firstError };
  }

  #withExternal(labels: Label[]): Label[] {
    const out = labels.filter((l) => l.value !== "");
    for (const x of this.#external) {
      if (!labels.some((l) => l.name === x.name) && x.value !== "") out.push(x);
    }
    return out.sort(byName);
  }
}
