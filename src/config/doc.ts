/**
 * The configuration reference (docs/CONFIG.md), rendered from SCHEMA so it cannot drift from
 * the code: scripts/config-doc.ts writes it, tests/unit/config_test.ts checks it is current.
 */
import { ConfigError, flagSpecs, loadConfig, parseConfigText } from "./load.ts";
import { ENV_PREFIX, Field, KEYS, SCHEMA, type Section } from "./schema.ts";

/** Markdown-safe text: `<placeholders>` and lone wildcards go in code spans. */
function md(s: string): string {
  return s.replace(/<[a-z_]+>(\/[\w.-]*[\w-])?/g, (m) => `\`${m}\``)
    .replace(/(^|[\s(])([*?])(?=[\s,;)])/g, (_, pre, c) => `${pre}\`${c}\``);
}

const WIDTH = 100;

/**
 * A paragraph wrapped the way `deno fmt` wraps Markdown (greedy, at 100 columns, code spans
 * kept whole), so the generated file is already formatted.
 */
function para(text: string, first = "", rest = " ".repeat(first.length)): string[] {
  const words = text.match(/(?:[^\s`]|`[^`]*`)+/g) ?? [];
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const w of words) {
    if (!empty && line.length + 1 + w.length > WIDTH) {
      lines.push(line);
      line = rest + w;
    } else {
      line += (empty ? "" : " ") + w;
    }
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** A complete configuration file with every key at its default, each described. */
export function exampleConfigYaml(): string {
  const lines: string[] = [];
  const emit = (section: Section, indent: string) => {
    for (const [name, node] of Object.entries(section)) {
      if (node instanceof Field) {
        lines.push(`${indent}# ${node.description}`);
        lines.push(`${indent}${name}: ${node.defaultText}`);
      } else {
        if (indent === "" && lines.length) lines.push("");
        lines.push(`${indent}${name}:`);
        emit(node, indent + "  ");
      }
    }
  };
  emit(SCHEMA as Section, "");
  return lines.join("\n") + "\n";
}

const BAD_FILE = `api:
  listen: 127.0.0.1:99999
datapath:
  hook: ebpf
  ring_buffer_bytes: 5000
  flow_table_sise: 131072
collect:
  interval_ms: [1000]
`;

async function problemsOf(f: () => Promise<unknown>): Promise<string[]> {
  try {
    await f();
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  throw new Error("the example configuration was accepted");
}

/** docs/CONFIG.md: every key with type, default, range, variable, flag and description. */
export async function renderConfigDoc(): Promise<string> {
  const out: string[] = [];
  const p = (...lines: string[]) => out.push(...lines);
  const aliases = flagSpecs().filter((s) => s.name !== KEYS.find((k) => k.key === s.key)?.flag);
  const fileErrors = await problemsOf(() => parseConfigText(BAD_FILE, "x0tta6bl4.yaml"));
  const stringErrors = await problemsOf(() =>
    loadConfig({
      env: { X0TTA6BL4_DATAPATH_INTERFACES: "eth0,wlan0/1" },
      flags: { "datapath.flow-table-size": "12", listen: "localhost" },
    })
  );

  p(
    "# Configuration reference",
    "",
    "<!-- Generated from src/config/schema.ts by `deno run -A scripts/config-doc.ts`; do not edit. -->",
    "",
    ...para("`x0tta6bl4 serve` takes each setting from the first of these that has it:"),
    "",
    ...para(
      "a flag: `--` and the dotted key with `_` written `-`, as in " +
        "`--datapath.flow-table-size 131072`;",
      "1. ",
    ),
    ...para(
      `an environment variable: \`${ENV_PREFIX}\` and the dotted key in upper case with \`.\` ` +
        "written `_`, as in `X0TTA6BL4_DATAPATH_FLOW_TABLE_SIZE=131072`;",
      "2. ",
    ),
    ...para("the YAML configuration file, where dotted names are nested maps;", "3. "),
    ...para("the default.", "4. "),
    "",
    ...para(
      "Lists are comma-separated in environment variables and flags (`--interface eth0,eth1`); " +
        "a list flag may also be repeated (`--interface eth0 --interface eth1`). A list from a " +
        "variable or flag replaces the file's list. Short flags: " +
        aliases.map((a) => `\`--${a.name}\` (\`${a.key}\`)`).join(", ") + ".",
    ),
    "",
    ...para(
      "Integers may be written in hexadecimal (`0x7830`). Booleans are `true` or `false` in the " +
        "file; variables and flags also take `1`/`0`, `yes`/`no` and `on`/`off`.",
    ),
    "",
    ...para(
      "An empty file means all defaults. Unknown keys, wrong types and values out of range are " +
        "errors, and all of them are reported at once, one line each, naming the file with line " +
        "and column of the offending value, or the variable or flag. This file:",
    ),
    "",
    "```yaml",
    ...BAD_FILE.trimEnd().split("\n"),
    "```",
    "",
    "gives:",
    "",
    "```text",
    ...fileErrors,
    "```",
    "",
    ...para(
      "and `X0TTA6BL4_DATAPATH_INTERFACES=eth0,wlan0/1` with `--datapath.flow-table-size 12` " +
        "and `--listen localhost`:",
    ),
    "",
    "```text",
    ...stringErrors,
    "```",
  );

  const sections = (section: Section, prefix: string[]) => {
    for (const [name, node] of Object.entries(section)) {
      const path = [...prefix, name];
      if (!(node instanceof Field)) {
        p("", `## \`${path.join(".")}\``);
        sections(node, path);
        continue;
      }
      const info = KEYS.find((k) => k.key === path.join("."))!;
      const flags = flagSpecs().filter((s) => s.key === info.key).map((s) =>
        `\`--${s.name} ${s.value}\``
      );
      p(
        "",
        `${prefix.length ? "###" : "##"} \`${info.key}\``,
        "",
        ...para(md(node.description)),
        "",
        `- Type: ${node.type}`,
        `- Default: \`${node.defaultText}\``,
        ...para(md(node.kind === "list" ? `items: ${node.allowed}` : node.allowed), "- Allowed: "),
        `- Environment: \`${info.env}\``,
        `- Flag: ${flags.join(", ")}${node.kind === "list" ? " (repeatable)" : ""}`,
      );
    }
  };
  sections(SCHEMA as Section, []);

  p(
    "",
    "## Example",
    "",
    "A complete file with every key at its default:",
    "",
    "```yaml",
    ...exampleConfigYaml().trimEnd().split("\n"),
    "```",
  );
  return out.join("\n") + "\n";
}
