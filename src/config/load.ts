/**
 * Loading the configuration of `x0tta6bl4 serve`: defaults < YAML file < environment < flags,
 * every layer checked against SCHEMA, every problem of every layer reported at once as
 * `WHERE: key.path: what is wrong (expected …, got …)`, where WHERE is `FILE:LINE:COL`,
 * `env X0TTA6BL4_…` or `flag --…`.
 */
import { explain, getAt, type Issue, keyText, type Layer, type Path, show } from "./messages.ts";
import {
  type Config,
  CONFIG_SCHEMA,
  defaultConfig,
  type Field,
  type KeyInfo,
  KEYS,
  lookup,
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

/** The YAML file's layer; the parser is loaded at the first file (see yaml.ts). */
async function fileLayer(text: string, source: string): Promise<Layer> {
  return (await import("./yaml.ts")).fileLayer(text, source);
}

/** Parses and checks a YAML configuration; `source` names it in messages. Empty: defaults. */
export async function parseConfigText(text: string, source: string): Promise<Config> {
  return combine([await fileLayer(text, source)]);
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

/**
 * The configuration from defaults < file < environment < flags; rejects with ConfigError.
 * Asynchronous because the YAML parser is loaded only when there is a file.
 */
export async function loadConfig(opts: LoadOptions = {}): Promise<Config> {
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
    if (text !== undefined) layers.push(await fileLayer(text, opts.file));
  }
  layers.push(envLayer(opts.env ?? {}));
  layers.push(flagLayer(opts.flags ?? {}));
  return combine(layers);
}
