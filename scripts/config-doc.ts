/**
 * Writes docs/CONFIG.md from the configuration schema. With --check, writes nothing and exits 1
 * when the file is not current.
 *
 *   deno run -A scripts/config-doc.ts [--check]
 */
import { renderConfigDoc } from "../src/config/doc.ts";

const target = new URL("../docs/CONFIG.md", import.meta.url);
const doc = renderConfigDoc();

if (Deno.args.includes("--check")) {
  let current = "";
  try {
    current = Deno.readTextFileSync(target);
  } catch {
    // missing: not current
  }
  if (current !== doc) {
    console.error("docs/CONFIG.md is stale: run deno run -A scripts/config-doc.ts");
    Deno.exit(1);
  }
} else {
  Deno.writeTextFileSync(target, doc);
  console.log(`wrote ${target.pathname}`);
}
