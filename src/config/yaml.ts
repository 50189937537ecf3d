/**
 * The YAML file's layer of the configuration, with line and column of every problem. Its own
 * module, imported only when a file is given: the YAML parser costs about 11 MB of resident
 * memory, which a box started without a file never pays.
 */
import { isAlias, isMap, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { explain, getAt, keyText, type Layer, type Path, show, unknownKey } from "./messages.ts";
import { KEYS, PARTIAL_SCHEMA } from "./schema.ts";

/** Reads a YAML text into a layer; line and column of each problem point at its value. */
export function fileLayer(text: string, source: string): Layer {
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
