/**
 * The V8 flags the appliance runs with (scripts/v8-flags, also read by scripts/run): a small
 * young generation and --optimize-for-size keep its memory down (docs/BENCHMARKS.md, footprint).
 */
export const V8_FLAGS = `--v8-flags=${
  Deno.readTextFileSync(new URL("v8-flags", import.meta.url)).trim()
}`;
