/**
 * Is a Cilium agent on this box? Looks at its API socket and its pinned maps in bpffs; opens
 * nothing, changes nothing. Cilium pins its tc-era maps as `<bpffs>/tc/globals/cilium_*`
 * (cilium_ct4_global, cilium_lxc, cilium_ipcache, cilium_call_policy, …).
 */
import { DEFAULT_SOCKET } from "./client.ts";

export const DEFAULT_BPFFS_ROOT = "/sys/fs/bpf";
/** At most this many pin names are listed (the count is always complete). */
export const DEFAULT_MAX_PINS = 16;

export interface CiliumPresence {
  /** A socket at the API path, or at least one cilium_* pin. */
  found: boolean;
  /** The API socket path, when it exists and is a socket. */
  socket?: string;
  /** Names of cilium_* pins under <bpffsRoot>/tc/globals, sorted, at most `maxPins`. */
  pins: string[];
  /** How many cilium_* pins there are in all. */
  pinCount: number;
  /** One line for the health board. */
  summary: string;
}

export interface DetectOptions {
  socketPath?: string;
  bpffsRoot?: string;
  maxPins?: number;
}

export function detectCilium(o: DetectOptions = {}): CiliumPresence {
  const socketPath = o.socketPath ?? DEFAULT_SOCKET;
  const root = (o.bpffsRoot ?? DEFAULT_BPFFS_ROOT).replace(/\/+$/, "");
  const maxPins = o.maxPins ?? DEFAULT_MAX_PINS;
  const notes: string[] = [];

  let socket: string | undefined;
  try {
    const st = Deno.statSync(socketPath);
    if (st.isSocket) socket = socketPath;
    else notes.push(`${socketPath} exists but is not a socket`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      notes.push(`cannot look at ${socketPath}: ${(e as Error).message}`);
    }
  }

  const globals = `${root}/tc/globals`;
  let all: string[] = [];
  try {
    for (const entry of Deno.readDirSync(globals)) {
      if (entry.name.startsWith("cilium_")) all.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      notes.push(`cannot read ${globals}: permission denied (bpffs is root-only)`);
    } else if (!(e instanceof Deno.errors.NotFound)) {
      notes.push(`cannot read ${globals}: ${(e as Error).message}`);
    }
    all = [];
  }
  all.sort();
  const pins = all.slice(0, Math.max(0, maxPins));
  const found = socket !== undefined || all.length > 0;

  const parts: string[] = [];
  if (socket) parts.push(`API socket ${socket}`);
  if (all.length) {
    const more = all.length > pins.length ? `, +${all.length - pins.length} more` : "";
    parts.push(`${all.length} cilium_* maps pinned in ${globals} (${pins.join(", ")}${more})`);
  }
  let summary = found
    ? `Cilium agent found: ${parts.join("; ")}`
    : `no Cilium agent on this box (no socket at ${socketPath}, no cilium_* pins in ${globals})`;
  if (found && !socket) summary += `; no API socket at ${socketPath}, so flows are not enriched`;
  if (notes.length) summary += `; ${notes.join("; ")}`;
  return { found, ...(socket ? { socket } : {}), pins, pinCount: all.length, summary };
}
