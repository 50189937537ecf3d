/**
 * The flow: its key as the kernel writes it (bpf/x0tta6bl4.h, struct x0_flow_key), its codec,
 * the direction a hook sees, and the flow objects readers get. Pure: it reads bytes laid out as
 * ffi/layout.ts says (a table of offsets, no FFI).
 */
import {
  EVENT_NEW_FLOW,
  FLOW_EVENT,
  FLOW_KEY,
  Hook,
  HOOK_NAMES,
  type HookName,
} from "../../ffi/layout.ts";
import { formatAddress, parseAddress } from "../net/address.ts";

export type Direction = "rx" | "tx";

/** The direction of the traffic a hook sees: TC egress sends, XDP and TC ingress receive. */
export function directionOf(hook: HookName): Direction {
  return hook === "tcEgress" ? "tx" : "rx";
}

/** The same rule on the raw hook number of a key (enum x0_hook). */
export function isEgressHook(hook: number): boolean {
  return hook === Hook.tcEgress;
}

export interface FlowKey {
  ifindex: number;
  hook: HookName;
  family: 4 | 6;
  proto: number;
  saddr: string;
  daddr: string;
  /** Host byte order. For ICMP: sport is the type, dport the code. */
  sport: number;
  dport: number;
}

export interface Flow extends FlowKey {
  packets: number;
  bytes: number;
  firstSeenNs: number;
  lastSeenNs: number;
  tcpFlags: number;
  fragment: boolean;
}

/** A flow as readers get it: with its interface's name and its direction. */
export interface FlowSnapshot extends Flow {
  /** Name of the interface the flow was seen on. */
  interface: string;
  direction: Direction;
}

export interface FlowEvent {
  type: "new_flow";
  tsNs: number;
  flow: FlowKey;
  packetBytes: number;
  tcpFlags: number;
}

/** A little-endian u64 as a number (exact below 2^53), without allocating a BigInt. */
export function u64(v: DataView, o: number): number {
  return v.getUint32(o, true) + v.getUint32(o + 4, true) * 0x1_0000_0000;
}

const K = FLOW_KEY.members;

export function decodeFlowKey(b: Uint8Array, at = 0): FlowKey {
  const v = new DataView(b.buffer, b.byteOffset + at, FLOW_KEY.size);
  const family = v.getUint8(K.family[0]) === 6 ? 6 : 4;
  const base = b.byteOffset + at;
  return {
    ifindex: v.getUint32(K.ifindex[0], true),
    hook: HOOK_NAMES[v.getUint8(K.hook[0])] ?? "xdp",
    family,
    proto: v.getUint8(K.proto[0]),
    saddr: formatAddress(new Uint8Array(b.buffer, base + K.saddr[0], 16), family),
    daddr: formatAddress(new Uint8Array(b.buffer, base + K.daddr[0], 16), family),
    sport: v.getUint16(K.sport[0], false),
    dport: v.getUint16(K.dport[0], false),
  };
}

/** A flow key's bytes (FLOW_KEY.size), as the kernel would write them, into `out` at `at`. */
export function encodeFlowKey(k: FlowKey, out = new Uint8Array(FLOW_KEY.size), at = 0): Uint8Array {
  const key = out.subarray(at, at + FLOW_KEY.size);
  key.fill(0);
  const v = new DataView(key.buffer, key.byteOffset, FLOW_KEY.size);
  key.set(parseAddress(k.saddr).bytes, K.saddr[0]);
  key.set(parseAddress(k.daddr).bytes, K.daddr[0]);
  v.setUint16(K.sport[0], k.sport, false);
  v.setUint16(K.dport[0], k.dport, false);
  v.setUint32(K.ifindex[0], k.ifindex, true);
  key[K.proto[0]] = k.proto;
  key[K.family[0]] = k.family;
  key[K.hook[0]] = Hook[k.hook];
  return out;
}

/** A flow's identity across snapshots: interface, hook and 5-tuple. */
export function flowId(f: Flow): string {
  return `${f.ifindex}/${f.hook}/${f.proto}/${f.saddr}/${f.sport}/${f.daddr}/${f.dport}`;
}

/** Decodes one ring buffer record; throws on a record of the wrong size or type. */
export function decodeEvent(b: Uint8Array): FlowEvent {
  if (b.length < FLOW_EVENT.size) {
    throw new Error(`flow event of ${b.length} bytes, expected ${FLOW_EVENT.size}`);
  }
  const v = new DataView(b.buffer, b.byteOffset, FLOW_EVENT.size);
  const E = FLOW_EVENT.members;
  const type = v.getUint8(E.type[0]);
  if (type !== EVENT_NEW_FLOW) throw new Error(`unknown flow event type ${type}`);
  return {
    type: "new_flow",
    tsNs: u64(v, E.ts_ns[0]),
    flow: decodeFlowKey(b, E.key[0]),
    packetBytes: v.getUint32(E.pkt_len[0], true),
    tcpFlags: v.getUint8(E.tcp_flags[0]),
  };
}
