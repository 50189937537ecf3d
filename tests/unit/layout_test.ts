import assert from "node:assert/strict";
import { btfFromElf } from "../../src/datapath/btf.ts";
import {
  CLASSES,
  ENFORCE_KIND,
  EVENT_NEW_FLOW,
  Hook,
  IFINDEX_UNKNOWN,
  LAYOUTS,
  MALFORMED_REASONS,
  RTT_BUCKET_COUNT,
  SIGNAL_LAYOUTS,
  type StructLayout,
} from "../../ffi/layout.ts";

const objectBtf = async (name: string) =>
  btfFromElf(await Deno.readFile(new URL(`../../bpf/build/${name}`, import.meta.url)));
const OBJECTS: [string, readonly StructLayout[]][] = [
  ["flow.bpf.o", LAYOUTS],
  ["signals.bpf.o", SIGNAL_LAYOUTS],
];
const header = new TextDecoder().decode(
  await Deno.readFile(new URL("../../bpf/x0tta6bl4.h", import.meta.url)),
);

/** The enumerators of `enum name` in the header text, with their values, in order. */
function headerEnum(name: string): Map<string, number> {
  const text = header.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const body = new RegExp(`enum\\s+${name}\\s*\\{([^}]*)\\}`).exec(text)?.[1];
  assert.ok(body !== undefined, `enum ${name} not found in bpf/x0tta6bl4.h`);
  const values = new Map<string, number>();
  let next = 0;
  for (const entry of body.split(",").map((e) => e.trim()).filter((e) => e !== "")) {
    const m = /^(\w+)\s*(?:=\s*(\w+))?$/.exec(entry);
    assert.ok(m, `cannot parse enumerator "${entry}" of enum ${name}`);
    const value = m[2] === undefined ? next : Number(m[2]);
    assert.ok(Number.isInteger(value), `enumerator ${m[1]} has a non-literal value`);
    values.set(m[1], value);
    next = value + 1;
  }
  return values;
}

/** Header enum as { lowercased suffix: value }, without the prefix and the _COUNT sentinel. */
function suffixes(name: string, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of headerEnum(name)) {
    assert.ok(k.startsWith(prefix), `${k} in enum ${name} lacks the prefix ${prefix}`);
    if (k !== `${prefix}COUNT`) out[k.slice(prefix.length).toLowerCase()] = v;
  }
  return out;
}

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const indexed = (names: readonly string[]) => Object.fromEntries(names.map((n, i) => [n, i]));

for (const [object, layouts] of OBJECTS) {
  const btf = await objectBtf(object);
  for (const layout of layouts) {
    Deno.test(`layout: struct ${layout.name} matches the BTF of ${object}`, () => {
      const s = btf.struct(layout.name);
      assert.ok(s, `struct ${layout.name} is not in the BTF of ${object}`);
      assert.equal(layout.size, s.size, `sizeof(struct ${layout.name})`);
      const fromBtf = Object.fromEntries(s.members.map((m) => [m.name, [m.offset, m.size]]));
      for (const [member, [offset, size]] of Object.entries(layout.members)) {
        assert.ok(member in fromBtf, `${layout.name}.${member} is not in the BTF`);
        assert.deepEqual(
          [offset, size],
          fromBtf[member],
          `${layout.name}.${member} [offset, size]`,
        );
      }
      const missing = s.members.map((m) => m.name).filter((n) => !(n in layout.members));
      assert.deepEqual(missing, [], `members of ${layout.name} missing from ffi/layout.ts`);
    });
  }
}

Deno.test("layout: RTT_BUCKET_COUNT matches X0_RTT_BUCKETS", () => {
  assert.match(header, new RegExp(`#define X0_RTT_BUCKETS ${RTT_BUCKET_COUNT}\\b`));
});

Deno.test("layout: IFINDEX_UNKNOWN matches X0_IFINDEX_UNKNOWN", () => {
  assert.match(header, new RegExp(`#define X0_IFINDEX_UNKNOWN ${IFINDEX_UNKNOWN}\\b`));
});

Deno.test("layout: CLASSES matches enum x0_class", () => {
  assert.deepEqual(indexed(CLASSES), suffixes("x0_class", "X0_CLASS_"));
  assert.equal(headerEnum("x0_class").get("X0_CLASS_COUNT"), CLASSES.length);
});

Deno.test("layout: MALFORMED_REASONS matches enum x0_malformed", () => {
  assert.deepEqual(indexed(MALFORMED_REASONS), suffixes("x0_malformed", "X0_MAL_"));
  assert.equal(headerEnum("x0_malformed").get("X0_MAL_COUNT"), MALFORMED_REASONS.length);
});

Deno.test("layout: Hook matches enum x0_hook", () => {
  const fromHeader = Object.fromEntries(
    Object.entries(suffixes("x0_hook", "X0_HOOK_")).map(([k, v]) => [camel(k), v]),
  );
  assert.deepEqual({ ...Hook }, fromHeader);
});

Deno.test("layout: EVENT_NEW_FLOW matches enum x0_event_type", () => {
  assert.equal(EVENT_NEW_FLOW, headerEnum("x0_event_type").get("X0_EVENT_NEW_FLOW"));
});

Deno.test("layout: ENFORCE_KIND matches enum x0_enforce_kind", () => {
  const fromHeader = Object.fromEntries(
    Object.entries(suffixes("x0_enforce_kind", "X0_ENFORCE_")).map(([k, v]) => [camel(k), v]),
  );
  assert.deepEqual({ ...ENFORCE_KIND }, fromHeader);
});
