/**
 * Loading the configuration of `x0tta6bl4 serve`: defaults < YAML file < environment < flags,
 * every layer checked against SCHEMA, every problem of every layer reported at once as
 * `WHERE: key.path: what is wrong (expected …, got …)`, where WHERE is `FILE:LINE:COL`,
 * `env X0TTA6BL4_…` or `flag --…`.
 */
import { isAlias, isMap, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { z } from "zod";
import {
  type Config,
  CONFIG_SCHEMA,
  defaultConfig,
  type Field,
  type KeyInfo,
  KEYS,
  lookup,
  PARTIAL_SCHEMA,
  splitList,
} from "./schema.ts";

export { type Config, DEFAULT_CONFIG, tokenFilePath } from "./schema.ts";

/** Invalid configuration; `message` has one line per problem, `problems` the same lines. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

/** One layer's valid values by dotted key, where each came from, and its problems. */
interface Layer {
  values: Map<string, unknown>;
  where: Map<string, string>;
  problems: string[];
}

// ---------------------------------------------------------------------------------------------
// Messages.

function keyText(path: Path): string {
  if (path.length === 0) return "(document)";
  return path.map((s, i) => (typeof s === "number" ? `[${s}]` : i ? `.${String(s)}` : String(s)))
    .join("");
}

function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length ? "a list" : "an empty list";
  if (typeof v === "object") return "a map";
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}

function getAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

/** What is wrong and what was expected, for every issue but unknown keys. */
function explain(issue: Issue, value: unknown): { what: string; expected: string; got?: string } {
  const found = lookup(issue.path);
  const params = issue.code === "custom" ? issue.params : undefined;
  if (!found || "section" in found) {
    const section = keyText(issue.path);
    const expected = issue.path.length ? `a map of ${section}.* settings` : "a map of settings";
    return { what: issue.code === "invalid_type" ? "wrong type" : issue.message, expected };
  }
  const f = found.field;
  const expected = found.rest.length && f.itemExpected ? f.itemExpected : f.expected;
  switch (issue.code) {
    case "invalid_type":
      if (f.kind === "integer" && typeof value === "number") {
        return { what: "not an integer", expected };
      }
      return { what: "wrong type", expected };
    case "too_small":
      return { what: "too small", expected: `an integer ≥ ${f.min}` };
    case "too_big":
      return { what: "too large", expected: `an integer ≤ ${f.max}` };
    case "invalid_value":
      return { what: "not an allowed value", expected };
    case "custom":
      return {
        what: issue.message,
        expected: typeof params?.expected === "string" ? params.expected : expected,
        got: typeof params?.got === "string" ? params.got : undefined,
      };
    default:
      return { what: issue.message, expected };
  }
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/** "unknown key (expected …)" for `key` inside the section at `parent`. */
function unknownKey(parent: Path, key: string): string {
  const dotted = [...parent.map(String), key].join(".");
  if (KEYS.some((k) => k.key === dotted || k.key.startsWith(dotted + ".")) && key.includes(".")) {
    const [head, ...tail] = key.split(".");
    return `unknown key (expected ${dotted} written as nested maps: "${head}:" with ` +
      `"${tail.join(".")}:" indented below it)`;
  }
  const found = lookup(parent);
  const names = found && "section" in found
    ? [
      ...new Set(
        KEYS.filter((k) => parent.every((s, i) => k.path[i] === s))
          .map((k) => k.path[parent.length]),
      ),
    ]
    : [];
  const norm = (s: string) => s.toLowerCase().replaceAll("-", "_");
  const near = names.find((n) => norm(n) === norm(key)) ??
    names.find((n) => key.length >= 4 && editDistance(n, key) <= 2);
  return `unknown key (expected one of: ${names.join(", ")}${
    near ? `; did you mean ${near}?` : ""
  })`;
}

// ---------------------------------------------------------------------------------------------
// The file.

/** Reads a YAML text into a layer; line and column of each problem point at its value. */
function fileLayer(text: string, source: string): Layer {
  const layer: Layer = { values: new Map(), where: new Map(), problems: [] };
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lc.linePos(Math.max(0, offset));
    return `${source}:${line}:${col}`;
  };
  const located: { offset: number; line: string }[] = [];
  const problem = (offset: number, line: string) => located.push({ offset, line });

  for (const e of [...doc.errors, ...doc.warnings]) {
    problem(e.pos[0], `${at(e.pos[0])}: YAML syntax error: ${e.message.replace(/\s+/g, " ")}`);
  }
  if (located.length === 0) {
    // Offsets of every key and value, by path.
    const keyPos = new Map<string, number>();
    const valuePos = new Map<string, number>();
    const id = (p: Path) => p.map(String).join("\0");
    const visit = (node: Node | null, path: PropertyKey[]) => {
      if (isAlias(node) && !node.resolve(doc)) {
        const off = node.range?.[0] ?? 0;
        problem(off, `${at(off)}: ${keyText(path)}: unknown alias *${node.source}`);
      } else if (isMap(node)) {
        for (const pair of node.items) {
          const k = pair.key as Node | null;
          const name = k && "value" in k ? String(k.value) : String(k);
          const p = [...path, name];
          const kOff = k?.range?.[0] ?? node.range?.[0] ?? 0;
          keyPos.set(id(p), kOff);
          const v = pair.value as Node | null;
          valuePos.set(id(p), v?.range?.[0] ?? kOff);
          visit(v, p);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => {
          const p = [...path, i];
          const off = (item as Node | null)?.range?.[0] ?? node.range?.[0] ?? 0;
          keyPos.set(id(p), off);
          valuePos.set(id(p), off);
          visit(item as Node | null, p);
        });
      }
    };
    const root = doc.contents as Node | null;
    valuePos.set(id([]), root?.range?.[0] ?? 0);
    visit(root, []);
    const posOf = (path: Path, map = valuePos) => {
      for (let n = path.length; n >= 0; n--) {
        const off = map.get(id(path.slice(0, n)));
        if (off !== undefined) return off;
      }
      return 0;
    };

    let data: unknown;
    if (located.length === 0) {
      try {
        data = doc.toJS({ maxAliasCount: 100 });
      } catch (e) {
        problem(0, `${at(0)}: YAML error: ${(e as Error).message}`);
      }
    }
    if (located.length === 0) {
      const r = PARTIAL_SCHEMA.safeParse(data);
      const seen = new Set<string>();
      for (const issue of r.success ? [] : r.error.issues) {
        if (issue.code === "unrecognized_keys") {
          for (const k of issue.keys) {
            const p = [...issue.path, k];
            problem(
              posOf(p, keyPos),
              `${at(posOf(p, keyPos))}: ${keyText(p)}: ${unknownKey(issue.path, k)}`,
            );
          }
          continue;
        }
        if (seen.has(id(issue.path))) continue;
        seen.add(id(issue.path));
        const value = getAt(data, issue.path);
        const { what, expected, got } = explain(issue, value);
        const off = posOf(issue.path);
        problem(
          off,
          `${at(off)}: ${keyText(issue.path)}: ${what} (expected ${expected}, got ${
            got ?? show(value)
          })`,
        );
      }
      if (r.success) {
        for (const k of KEYS) {
          const v = getAt(r.data, k.path);
          if (v === undefined) continue;
          layer.values.set(k.key, v);
          layer.where.set(k.key, at(posOf(k.path)));
        }
      }
    }
  }
  located.sort((a, b) => a.offset - b.offset);
  layer.problems = located.map((p) => p.line);
  return layer;
}

// ---------------------------------------------------------------------------------------------
// Environment and flags: strings converted per the schema.

/** Converts and checks one key given as strings; `label` names the variable or flag. */
function fromStrings(layer: Layer, info: KeyInfo, label: string, raw: string | string[]): void {
  const f = info.field;
  const bad = (path: Path, what: string, expected: string, got: string) =>
    layer.problems.push(
      `${label}: ${keyText([...info.path, ...path])}: ${what} ` +
        `(expected ${expected}, got ${got})`,
    );
  let value: unknown;
  if (Array.isArray(raw)) {
    value = raw.flatMap(splitList);
  } else {
    const r = f.fromString(raw);
    if ("problem" in r) {
      bad([], r.problem.what, r.problem.expected ?? f.expected, JSON.stringify(raw));
      return;
    }
    value = r.value;
  }
  const r = f.schema.safeParse(value);
  if (!r.success) {
    const seen = new Set<string>();
    for (const issue of r.error.issues) {
      const key = issue.path.map(String).join("\0");
      if (seen.has(key)) continue;
      seen.add(key);
      const item = getAt(value, issue.path);
      const full = { ...issue, path: [...info.path, ...issue.path] } as Issue;
      const { what, expected, got } = explain(full, item);
      bad(issue.path, what, expected, got ?? JSON.stringify(issue.path.length ? item : raw));
    }
    return;
  }
  layer.values.set(info.key, r.data);
  layer.where.set(info.key, label);
}

function envLayer(env: Record<string, string>): Layer {
  const layer: Layer = { values: new Map(), where: new Map(), problems: [] };
  for (const info of KEYS) {
    const raw = env[info.env];
    if (raw !== undefined) fromStrings(layer, info, `env ${info.env}`, raw);
  }
  return layer;
}

/** A command-line flag of the configuration. */
export interface FlagSpec {
  /** Name without the leading dashes, as node:util parseArgs takes it: `datapath.hook`. */
  name: string;
  /** Dotted configuration key it sets. */
  key: string;
  description: string;
  /** Repeatable (lists); each value may also hold comma-separated items. */
  multiple: boolean;
  /** Placeholder of the value in `--help`: N, PATH, ADDR:PORT, tc|xdp. */
  value: string;
  /** Default, as written in YAML. */
  default: string;
  /** Environment variable of the same key. */
  env: string;
}

/** Every configuration flag: the canonical `--dotted.key-name` of each key, then its aliases. */
export function flagSpecs(): FlagSpec[] {
  return KEYS.flatMap((k) =>
    [k.flag, ...k.field.aliases.filter((a) => a !== k.flag)].map((name) => ({
      name,
      key: k.key,
      description: k.field.description,
      multiple: k.field.kind === "list",
      value: k.field.value,
      default: k.field.defaultText,
      env: k.env,
    }))
  );
}

function flagLayer(flags: Record<string, string | string[] | boolean>): Layer {
  const layer: Layer = { values: new Map(), where: new Map(), problems: [] };
  const byName = new Map(flagSpecs().map((s) => [s.name, s]));
  const given = new Map<string, { names: string[]; values: (string | boolean)[] }>();
  for (const [rawName, v] of Object.entries(flags)) {
    const spec = byName.get(rawName.replace(/^--?/, ""));
    if (!spec || v === undefined) continue; // not a configuration flag: the CLI's own
    const g = given.get(spec.key) ?? { names: [], values: [] };
    g.names.push(spec.name);
    g.values.push(...(Array.isArray(v) ? v : [v]));
    given.set(spec.key, g);
  }
  for (const info of KEYS) {
    const g = given.get(info.key);
    if (!g) continue;
    const label = g.names.map((n) => `flag --${n}`).join(" and ");
    const f: Field<unknown> = info.field;
    const bad = (what: string, expected: string, got: string) =>
      layer.problems.push(`${label}: ${info.key}: ${what} (expected ${expected}, got ${got})`);
    if (g.values.some((v) => typeof v === "boolean")) {
      if (f.kind === "boolean" && g.values.length === 1) {
        layer.values.set(info.key, g.values[0]);
        layer.where.set(info.key, label);
      } else {
        bad("missing value", `${f.value}`, "no value");
      }
      continue;
    }
    const strings = g.values as string[];
    if (f.kind === "list") {
      fromStrings(layer, info, label, strings);
    } else if (strings.length !== 1) {
      bad(
        "given more than once",
        "a single value",
        strings.map((s) => JSON.stringify(s)).join(", "),
      );
    } else {
      fromStrings(layer, info, label, strings[0]);
    }
  }
  return layer;
}

// ---------------------------------------------------------------------------------------------
// Layers together.

function combine(layers: Layer[]): Config {
  const problems = layers.flatMap((l) => l.problems);
  if (problems.length) throw new ConfigError(problems);
  const config = defaultConfig();
  const where = new Map<string, string>();
  for (const layer of layers) {
    for (const [key, value] of layer.values) {
      const info = KEYS.find((k) => k.key === key)!;
      let section = config as unknown as Record<string, unknown>;
      for (const seg of info.path.slice(0, -1)) section = section[seg] as Record<string, unknown>;
      section[info.path.at(-1)!] = structuredClone(value);
      where.set(key, layer.where.get(key) ?? "default");
    }
  }
  // Checks across keys; each problem is placed where its key was set.
  const r = CONFIG_SCHEMA.safeParse(config);
  if (!r.success) {
    throw new ConfigError(r.error.issues.map((issue) => {
      const found = lookup(issue.path);
      const label = found && "key" in found ? where.get(found.key) ?? "default" : "default";
      const value = getAt(config, issue.path);
      const { what, expected, got } = explain(issue, value);
      return `${label}: ${keyText(issue.path)}: ${what} (expected ${expected}, got ${
        got ?? show(value)
      })`;
    }));
  }
  return config;
}

/** Parses and checks a YAML configuration; `source` names it in messages. Empty: defaults. */
export function parseConfigText(text: string, source: string): Config {
  return combine([fileLayer(text, source)]);
}

export interface LoadOptions {
  /** YAML file; when given it must exist. Without it: no file. */
  file?: string;
  /** Environment, e.g. Deno.env.toObject(); only X0TTA6BL4_<KEY> variables of keys are read. */
  env?: Record<string, string>;
  /**
   * Flag values by name (with or without leading dashes), as node:util parseArgs returns them;
   * names that are not in flagSpecs() are ignored (they belong to the CLI).
   */
  flags?: Record<string, string | string[] | boolean>;
}

/** The configuration from defaults < file < environment < flags; throws ConfigError. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const layers: Layer[] = [];
  if (opts.file !== undefined) {
    let text: string | undefined;
    try {
      text = Deno.readTextFileSync(opts.file);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "no such file"
        : e instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : (e as Error).message;
      layers.push({
        values: new Map(),
        where: new Map(),
        problems: [`${opts.file}: cannot read the configuration file: ${why}`],
      });
    }
    if (text !== undefined) layers.push(fileLayer(text, opts.file));
  }
  layers.push(envLayer(opts.env ?? {}));
  layers.push(flagLayer(opts.flags ?? {}));
  return combine(layers);
}
