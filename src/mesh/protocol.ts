/**
 * The mesh wire protocol (docs/PROTOCOL.md): one UDP datagram = header, payload, HMAC-SHA-256
 * over both with the shared mesh key. Decoding never throws on bad input: it returns the reason
 * the datagram was dropped, and the caller counts it.
 */
import { hmacSha256, macEqual } from "./hmac.ts";

export const MAGIC = 0x5830; // "X0"
export const VERSION = 1;
export const HEADER_BYTES = 40;
export const MAC_BYTES = 32;
/** Fits the IPv6 minimum MTU (1280) with IP and UDP headers to spare. */
export const MAX_DATAGRAM = 1200;
export const MAX_PAYLOAD = MAX_DATAGRAM - HEADER_BYTES - MAC_BYTES;
export const NODE_ID_BYTES = 16;

export const MsgType = {
  hello: 1,
  probe: 2,
  ack: 3,
  probeRequest: 4,
  gossip: 5,
  leave: 6,
  update: 7,
  sync: 8,
} as const;
export type MsgTypeName = keyof typeof MsgType;
const TYPE_NAMES = Object.fromEntries(Object.entries(MsgType).map(([k, v]) => [v, k])) as Record<
  number,
  MsgTypeName
>;

export type DropReason =
  | "truncated"
  | "oversized"
  | "bad_magic"
  | "unknown_version"
  | "unknown_type"
  | "bad_length"
  | "bad_mac"
  | "replay"
  | "own"
  | "bad_payload";

export interface Header {
  type: MsgTypeName;
  /** Sender's node id, 32 hex characters. */
  sender: string;
  /** Per-sender sequence number: strictly increasing, also across restarts. */
  seq: bigint;
  /** Sender's wall clock when it sent, ns since the epoch. */
  timestampNs: bigint;
}

export interface Datagram extends Header {
  payload: Uint8Array;
}

const HEX_CODES = new TextEncoder().encode("0123456789abcdef");
/** An id's characters, turned into one flat string (a map key hashed without flattening). */
const ID_CHARS: number[] = [];

export function nodeIdHex(b: Uint8Array): string {
  ID_CHARS.length = 2 * b.length;
  for (let i = 0; i < b.length; i++) {
    ID_CHARS[2 * i] = HEX_CODES[b[i] >> 4];
    ID_CHARS[2 * i + 1] = HEX_CODES[b[i] & 15];
  }
  return String.fromCharCode.apply(null, ID_CHARS);
}

/** Ids converted lately (a node sends its own and its members' ids over and over). */
const idCache = new Map<string, Uint8Array>();

export function nodeIdBytes(hex: string): Uint8Array {
  return idBytes(hex).slice();
}

/** The id's bytes, shared: callers copy them and never change them. */
function idBytes(hex: string): Uint8Array {
  const cached = idCache.get(hex);
  if (cached) return cached;
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new Error(`not a node id: ${hex}`);
  const out = new Uint8Array(NODE_ID_BYTES);
  for (let i = 0; i < NODE_ID_BYTES; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  if (idCache.size >= 8192) idCache.clear(); // bounded, whatever ids come by
  idCache.set(hex, out);
  return out;
}

/** 64-bit fields go through these 8 bytes (no DataView per datagram). */
const WORD = new Uint8Array(8);
const WORD_VIEW = new DataView(WORD.buffer);

function putU64(b: Uint8Array, at: number, x: bigint): void {
  WORD_VIEW.setBigUint64(0, x);
  for (let i = 0; i < 8; i++) b[at + i] = WORD[i];
}

function getU64(b: Uint8Array, at: number): bigint {
  for (let i = 0; i < 8; i++) WORD[i] = b[at + i];
  return WORD_VIEW.getBigUint64(0);
}

/** Builds an authenticated datagram. */
export function encode(key: Uint8Array, h: Header, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_PAYLOAD) {
    throw new RangeError(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`);
  }
  const out = new Uint8Array(HEADER_BYTES + payload.length + MAC_BYTES);
  out[0] = MAGIC >> 8;
  out[1] = MAGIC & 0xff;
  out[2] = VERSION;
  out[3] = MsgType[h.type];
  out[6] = payload.length >> 8;
  out[7] = payload.length & 0xff;
  out.set(idBytes(h.sender), 8);
  putU64(out, 24, h.seq);
  putU64(out, 32, h.timestampNs);
  out.set(payload, HEADER_BYTES);
  hmacSha256(
    key,
    out.subarray(0, HEADER_BYTES + payload.length),
    out,
    HEADER_BYTES + payload.length,
  );
  return out;
}

/** The MAC a received datagram should carry (computed, compared, forgotten). */
const MAC = new Uint8Array(MAC_BYTES);

/** Checks and splits a datagram; authenticity is checked before anything is trusted. */
export function decode(key: Uint8Array, b: Uint8Array): Datagram | DropReason {
  if (b.length > MAX_DATAGRAM) return "oversized";
  if (b.length < HEADER_BYTES + MAC_BYTES) return "truncated";
  if (((b[0] << 8) | b[1]) !== MAGIC) return "bad_magic";
  if (b[2] !== VERSION) return "unknown_version";
  const len = (b[6] << 8) | b[7];
  if (HEADER_BYTES + len + MAC_BYTES !== b.length) return "bad_length";
  const body = b.subarray(0, HEADER_BYTES + len);
  if (!macEqual(hmacSha256(key, body, MAC), b.subarray(HEADER_BYTES + len))) return "bad_mac";
  const type = TYPE_NAMES[b[3]];
  if (!type) return "unknown_type";
  return {
    type,
    sender: nodeIdHex(b.subarray(8, 8 + NODE_ID_BYTES)),
    seq: getU64(b, 24),
    timestampNs: getU64(b, 32),
    payload: b.slice(HEADER_BYTES, HEADER_BYTES + len),
  };
}

/**
 * Replay protection per sender: the highest sequence number seen and a 64-number window
 * below it (as IPsec's anti-replay window). Older or repeated numbers are refused.
 */
export class ReplayWindow {
  #highest = -1n;
  /** Bit i: highest - i was seen; bits 0-31 in `#lo`, 32-63 in `#hi` (numbers: no BigInt work). */
  #lo = 0;
  #hi = 0;

  /** True (and remembered) when `seq` is new; false for a replay or something too old. */
  accept(seq: bigint): boolean {
    if (seq > this.#highest) {
      const shift = seq - this.#highest >= 64n ? 64 : Number(seq - this.#highest);
      if (shift >= 64) this.#hi = this.#lo = 0;
      else if (shift >= 32) {
        this.#hi = shift === 32 ? this.#lo : this.#lo << (shift - 32);
        this.#lo = 0;
      } else {
        this.#hi = (this.#hi << shift) | (this.#lo >>> (32 - shift));
        this.#lo <<= shift;
      }
      this.#lo |= 1;
      this.#highest = seq;
      return true;
    }
    if (this.#highest - seq >= 64n) return false;
    const age = Number(this.#highest - seq);
    const bit = 1 << (age & 31);
    if (age < 32) {
      if (this.#lo & bit) return false;
      this.#lo |= bit;
    } else {
      if (this.#hi & bit) return false;
      this.#hi |= bit;
    }
    return true;
  }
}

// ---- payloads -------------------------------------------------------------------------------

/** A member as gossip carries it. */
export interface MemberInfo {
  id: string;
  name: string;
  /** Mesh address "host:port" (as the sender reaches it) and metrics address for discovery. */
  mesh: string;
  metrics: string;
  /** Bumped by the member itself to refute suspicion; higher wins. */
  incarnation: number;
  state: "alive" | "suspect" | "dead" | "left";
}

const STATES: MemberInfo["state"][] = ["alive", "suspect", "dead", "left"];

const UTF8 = new TextEncoder();
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true });
const ascii = (s: string) => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
};

/**
 * Where every payload is written before `done()` copies it out: one buffer for all (encoding is
 * synchronous and never nested), so that a datagram costs no scratch allocation.
 */
const SCRATCH = new Uint8Array(MAX_PAYLOAD);
const SCRATCH_VIEW = new DataView(SCRATCH.buffer);

class Writer {
  #b = SCRATCH;
  #v = SCRATCH_VIEW;
  #capacity: number;
  n = 0;
  /** `capacity`: the most bytes this payload can need (at most MAX_PAYLOAD). */
  constructor(capacity = MAX_PAYLOAD) {
    this.#capacity = Math.min(capacity, MAX_PAYLOAD);
  }
  u8(x: number) {
    this.#need(1);
    this.#v.setUint8(this.n++, x);
  }
  u32(x: number) {
    this.#need(4);
    this.#v.setUint32(this.n, x);
    this.n += 4;
  }
  u64(x: bigint) {
    this.#need(8);
    this.#v.setBigUint64(this.n, x);
    this.n += 8;
  }
  bytes(x: Uint8Array) {
    this.#need(x.length);
    this.#b.set(x, this.n);
    this.n += x.length;
  }
  str(s: string) {
    if (s.length <= 255 && ascii(s)) { // the common case, without a call into the runtime
      this.u8(s.length);
      this.#need(s.length);
      for (let i = 0; i < s.length; i++) this.#b[this.n++] = s.charCodeAt(i);
      return;
    }
    const b = UTF8.encode(s);
    if (b.length > 255) throw new RangeError(`string of ${b.length} bytes in a payload`);
    this.u8(b.length);
    this.bytes(b);
  }
  #need(k: number) {
    if (this.n + k > this.#capacity) throw new RangeError("payload too large");
  }
  done(): Uint8Array {
    return this.#b.slice(0, this.n);
  }
}

class Reader {
  n = 0;
  constructor(readonly b: Uint8Array) {}
  #need(k: number) {
    if (this.n + k > this.b.length) throw new RangeError("payload cut short");
  }
  u8(): number {
    this.#need(1);
    return this.b[this.n++];
  }
  u32(): number {
    this.#need(4);
    const b = this.b, n = this.n;
    this.n += 4;
    return ((b[n] << 24) | (b[n + 1] << 16) | (b[n + 2] << 8) | b[n + 3]) >>> 0;
  }
  u64(): bigint {
    this.#need(8);
    this.n += 8;
    return getU64(this.b, this.n - 8);
  }
  bytes(k: number): Uint8Array {
    this.#need(k);
    return this.b.subarray(this.n, this.n += k);
  }
  str(): string {
    const b = this.bytes(this.u8());
    let ascii = true;
    for (let i = 0; i < b.length && ascii; i++) ascii = b[i] < 0x80;
    if (!ascii) return UTF8_STRICT.decode(b);
    let s = "";
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return s;
  }
  end() {
    if (this.n !== this.b.length) throw new RangeError("trailing bytes in payload");
  }
}

/** hello: who I am. */
export function encodeHello(m: Pick<MemberInfo, "name" | "metrics" | "incarnation">): Uint8Array {
  const w = new Writer(2 * 256 + 4);
  w.str(m.name);
  w.str(m.metrics);
  w.u32(m.incarnation);
  return w.done();
}

export function decodeHello(p: Uint8Array): Pick<MemberInfo, "name" | "metrics" | "incarnation"> {
  const r = new Reader(p);
  const out = { name: r.str(), metrics: r.str(), incarnation: r.u32() };
  r.end();
  return out;
}

/** probe and ack: the probe's own sequence number and send time, echoed by the ack. */
export interface ProbeBody {
  probeSeq: bigint;
  sentNs: bigint;
  /** ack only: the node the ack speaks for (an indirect probe's target), else the sender. */
  about?: string;
  incarnation?: number;
}

export function encodeProbe(b: ProbeBody): Uint8Array {
  const w = new Writer(36);
  w.u64(b.probeSeq);
  w.u64(b.sentNs);
  if (b.about !== undefined) {
    w.bytes(idBytes(b.about));
    w.u32(b.incarnation ?? 0);
  }
  return w.done();
}

export function decodeProbe(p: Uint8Array): ProbeBody {
  const r = new Reader(p);
  const out: ProbeBody = { probeSeq: r.u64(), sentNs: r.u64() };
  if (r.n < p.length) {
    out.about = nodeIdHex(r.bytes(NODE_ID_BYTES));
    out.incarnation = r.u32();
  }
  r.end();
  return out;
}

/** probe-request: "probe `target` at `address` for me, and send me its ack". */
export interface ProbeRequestBody {
  target: string;
  address: string;
  probeSeq: bigint;
  sentNs: bigint;
}

export function encodeProbeRequest(b: ProbeRequestBody): Uint8Array {
  const w = new Writer(16 + 256 + 16);
  w.bytes(idBytes(b.target));
  w.str(b.address);
  w.u64(b.probeSeq);
  w.u64(b.sentNs);
  return w.done();
}

export function decodeProbeRequest(p: Uint8Array): ProbeRequestBody {
  const r = new Reader(p);
  const out = {
    target: nodeIdHex(r.bytes(NODE_ID_BYTES)),
    address: r.str(),
    probeSeq: r.u64(),
    sentNs: r.u64(),
  };
  r.end();
  return out;
}

/**
 * gossip, update and sync: members as the sender knows them (as many as fit). gossip answers a
 * hello or a sync, update carries the membership changes being disseminated, sync asks for a
 * gossip back (push-pull).
 */
export function encodeGossip(members: MemberInfo[]): { payload: Uint8Array; count: number } {
  const w = new Writer();
  w.u8(0);
  let count = 0;
  for (const m of members) {
    const at = w.n;
    // An entry of ASCII strings needs exactly this much: stop before it does not fit.
    const size = 16 + 3 + m.name.length + m.mesh.length + m.metrics.length + 4 + 1;
    if (ascii(m.name) && ascii(m.mesh) && ascii(m.metrics) && at + size > MAX_PAYLOAD) break;
    try {
      w.bytes(idBytes(m.id));
      w.str(m.name);
      w.str(m.mesh);
      w.str(m.metrics);
      w.u32(m.incarnation);
      w.u8(STATES.indexOf(m.state));
      count++;
    } catch (e) {
      w.n = at;
      if (e instanceof RangeError && /payload too large/.test(e.message)) break; // next round
      // A member that cannot be written (a string over 255 bytes): skipped, the rest go on.
    }
    if (count === 255) break;
  }
  const payload = w.done();
  payload[0] = count;
  return { payload, count };
}

export function decodeGossip(p: Uint8Array): MemberInfo[] {
  const r = new Reader(p);
  const out: MemberInfo[] = [];
  for (let n = r.u8(); n > 0; n--) {
    const id = nodeIdHex(r.bytes(NODE_ID_BYTES));
    const name = r.str(), mesh = r.str(), metrics = r.str(), incarnation = r.u32();
    const state = STATES[r.u8()];
    if (!state) throw new RangeError("unknown member state");
    out.push({ id, name, mesh, metrics, incarnation, state });
  }
  r.end();
  return out;
}
