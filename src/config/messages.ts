/**
 * The configuration's problems as messages: `WHERE: key.path: what is wrong (expected …, got
 * …)`, shared by the YAML file's layer (yaml.ts) and the environment's and flags' (load.ts).
 */
import type { z } from "zod";
import { KEYS, lookup } from "./schema.ts";

export type Issue = z.core.$ZodIssue;
export type Path = readonly PropertyKey[];

/** One layer's valid values by dotted key, where each came from, and its problems. */
export interface Layer {
  values: Map<string, unknown>;
  where: Map<string, string>;
  problems: string[];
}

// ---------------------------------------------------------------------------------------------
// Messages.

export function keyText(path: Path): string {
  if (path.length === 0) return "(document)";
  return path.map((s, i) => (typeof s === "number" ? `[${s}]` : i ? `.${String(s)}` : String(s)))
    .join("");
}

export function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length ? "a list" : "an empty list";
  if (typeof v === "object") return "a map";
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}

export function getAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

/** What is wrong and what was expected, for every issue but unknown keys. */
export function explain(
  issue: Issue,
  value: unknown,
): { what: string; expected: string; got?: string } {
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
export function unknownKey(parent: Path, key: string): string {
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
