/**
 * Writes docs/CONFIG.md from the configuration schema (tests/unit/config_test.ts checks that the
 * file is current).
 *
 *   deno run -A scripts/config-doc.ts
 */
import { renderConfigDoc } from "../src/config/doc.ts";

const target = new URL("../docs/CONFIG.md", import.meta.url);
Deno.writeTextFileSync(target, await renderConfigDoc());
console.log(`wrote ${target.pathname}`);
