/** Build facts: scripts/build stamps build_info.json in the tree it compiles; a development
 * run shows commit "dev". */
import build from "./build_info.json" with { type: "json" };

export const VERSION = "0.1.0";
/** The release key and address are stamped by scripts/build; empty in a development tree. */
export const BUILD: { commit: string; date: string; publicKey: string; baseUrl: string } = build;
