/**
 * A small packet builder for BPF_PROG_TEST_RUN: each layer wraps the bytes of the one above it
 * and fills in its own length fields, so a frame is correct unless a test overrides a field on
 * purpose. The IPv4 header checksum is computed; L4 checksums stay 0 (the datapath checks none).
 *
 *   eth(ETH_P.ipv4, ipv4(IPPROTO.udp, udp(1000, 53, payload(20))), { tags: [dot1q(10)] })
 */

export type Bytes = Uint8Array<ArrayBuffer>;

export const ETH_P = {
  ipv4: 0x0800,
  arp: 0x0806,
  vlan: 0x8100,
  qinq: 0x88a8,
  ipv6: 0x86dd,
} as const;

export const IPPROTO = {
  hop: 0,
  icmp: 1,
  tcp: 6,
  udp: 17,
  routing: 43,
  frag: 44,
  gre: 47,
  ah: 51,
  icmp6: 58,
  none: 59,
  dest: 60,
} as const;

export const TCP_FLAGS = { fin: 0x01, syn: 0x02, rst: 0x04, psh: 0x08, ack: 0x10 } as const;

export const V4 = { a: "192.0.2.1", b: "198.51.100.2" } as const;
export const V6 = { a: "2001:db8::1", b: "2001:db8::2" } as const;

export function concat(...parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** `n` bytes of a recognisable pattern. */
export function payload(n: number): Bytes {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff);
}

/** The first `n` bytes of a frame: everything after is lost, length fields keep their values. */
export function cut(frame: Uint8Array, n: number): Bytes {
  if (n > frame.length) throw new RangeError(`cannot cut a ${frame.length}-byte frame at ${n}`);
  return frame.slice(0, n);
}

/** Big-endian fields of the given byte widths. */
function be(...fields: [value: number, width: 1 | 2 | 4][]): Bytes {
  const out = new Uint8Array(fields.reduce((n, [, w]) => n + w, 0));
  const v = new DataView(out.buffer);
  let at = 0;
  for (const [value, width] of fields) {
    if (width === 1) v.setUint8(at, value);
    else if (width === 2) v.setUint16(at, value);
    else v.setUint32(at, value);
    at += width;
  }
  return out;
}

export function addr4(s: string): Bytes {
  const parts = s.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) {
    throw new Error(`bad IPv4 address ${s}`);
  }
  return Uint8Array.from(parts);
}

export function addr6(s: string): Bytes {
  const groups = (t: string) => (t === "" ? [] : t.split(":").map((g) => parseInt(g, 16)));
  const [head, tail] = s.split("::");
  const h = groups(head), t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  if (all.length !== 8 || all.some((g) => !(g >= 0 && g <= 0xffff))) {
    throw new Error(`bad IPv6 address ${s}`);
  }
  return be(...all.map((g): [number, 2] => [g, 2]));
}

// ---- L2 ---------------------------------------------------------------------------------------

export interface Tag {
  tpid: number;
  vid: number;
}
export const dot1q = (vid: number): Tag => ({ tpid: ETH_P.vlan, vid });
export const dot1ad = (vid: number): Tag => ({ tpid: ETH_P.qinq, vid });

/** Ethernet II, with the tags (outermost first) between the source address and the type. */
export function eth(type: number, body: Uint8Array, o: { tags?: Tag[] } = {}): Bytes {
  const dst = [0x02, 0, 0, 0, 0, 0x02], src = [0x02, 0, 0, 0, 0, 0x01];
  const tags = (o.tags ?? []).map((t) => be([t.tpid, 2], [t.vid & 0xfff, 2]));
  return concat(Uint8Array.from([...dst, ...src]), ...tags, be([type, 2]), body);
}

/** An ARP request body (EtherType 0x0806). */
export function arp(): Bytes {
  const mac = [0x02, 0, 0, 0, 0, 0x01];
  return concat(
    be([1, 2], [ETH_P.ipv4, 2], [6, 1], [4, 1], [1, 2]),
    Uint8Array.from(mac),
    addr4(V4.a),
    new Uint8Array(6),
    addr4(V4.b),
  );
}

// ---- L3 ---------------------------------------------------------------------------------------

export interface Ipv4Options {
  src?: string;
  dst?: string;
  /** Option bytes, padded to a multiple of 4. */
  options?: Uint8Array;
  /** Header length in 4-byte words, default 5 plus the options. */
  ihl?: number;
  /** Default: header plus body. */
  totalLength?: number;
  version?: number;
  df?: boolean;
  /** More fragments. */
  mf?: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset?: number;
  id?: number;
  ttl?: number;
}

function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ipv4(proto: number, body: Uint8Array, o: Ipv4Options = {}): Bytes {
  const opts = o.options ?? new Uint8Array(0);
  const padded = concat(opts, new Uint8Array((4 - (opts.length % 4)) % 4));
  const hlen = 20 + padded.length;
  const frag = (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff);
  const header = concat(
    be(
      [((o.version ?? 4) << 4) | ((o.ihl ?? hlen / 4) & 0xf), 1],
      [0, 1], // DSCP/ECN
      [o.totalLength ?? hlen + body.length, 2],
      [o.id ?? 0x1234, 2],
      [frag, 2],
      [o.ttl ?? 64, 1],
      [proto, 1],
      [0, 2], // checksum, below
    ),
    addr4(o.src ?? V4.a),
    addr4(o.dst ?? V4.b),
    padded,
  );
  new DataView(header.buffer).setUint16(10, checksum(header));
  return concat(header, body);
}

/**
 * IPv6 extension headers, in order. `bytes` is the header's size (hop, dest, routing: a
 * multiple of 8, default 8, routing 24; ah: a multiple of 4, default 24); `hdrLen` overrides
 * the length field so that it claims another size.
 */
export type Ext =
  | { type: "hop" | "dest" | "routing" | "ah"; bytes?: number; hdrLen?: number }
  | { type: "frag"; offset?: number; more?: boolean; id?: number };

const EXT_PROTO = {
  hop: IPPROTO.hop,
  dest: IPPROTO.dest,
  routing: IPPROTO.routing,
  frag: IPPROTO.frag,
  ah: IPPROTO.ah,
} as const;

function extHeader(e: Ext, next: number): Bytes {
  if (e.type === "frag") {
    return be([next, 1], [0, 1], [((e.offset ?? 0) << 3) | (e.more ? 1 : 0), 2], [e.id ?? 7, 4]);
  }
  if (e.type === "ah") {
    const n = e.bytes ?? 24; // next, length, reserved, SPI, sequence, 12 bytes of ICV
    return concat(
      be([next, 1], [e.hdrLen ?? n / 4 - 2, 1], [0, 2], [0x100, 4], [1, 4]),
      payload(n - 12),
    );
  }
  const n = e.bytes ?? (e.type === "routing" ? 24 : 8);
  const len = e.hdrLen ?? n / 8 - 1;
  // Routing: type 2, one segment left. Options: one PadN filling the rest.
  const second = e.type === "routing" ? be([2, 1], [1, 1]) : be([1, 1], [n - 4, 1]);
  return concat(be([next, 1], [len, 1]), second, new Uint8Array(n - 4));
}

export interface Ipv6Options {
  src?: string;
  dst?: string;
  ext?: Ext[];
  /** Default: extension headers plus body. */
  payloadLength?: number;
  version?: number;
  hopLimit?: number;
}

/** IPv6 with `next` as the protocol after the extension headers. */
export function ipv6(next: number, body: Uint8Array, o: Ipv6Options = {}): Bytes {
  const ext = o.ext ?? [];
  const chain: Bytes[] = ext.map((e, i) =>
    extHeader(e, i + 1 < ext.length ? EXT_PROTO[ext[i + 1].type] : next)
  );
  const rest = concat(...chain, body);
  return concat(
    be(
      [((o.version ?? 6) << 28) >>> 0, 4], // version, traffic class 0, flow label 0
      [o.payloadLength ?? rest.length, 2],
      [ext.length ? EXT_PROTO[ext[0].type] : next, 1],
      [o.hopLimit ?? 64, 1],
    ),
    addr6(o.src ?? V6.a),
    addr6(o.dst ?? V6.b),
    rest,
  );
}

// ---- L4 ---------------------------------------------------------------------------------------

export function tcp(
  sport: number,
  dport: number,
  flags: number,
  body: Uint8Array = payload(0),
): Bytes {
  return concat(
    be([sport, 2], [dport, 2], [1000, 4], [0, 4], [5 << 4, 1], [flags, 1], [65535, 2], [0, 4]),
    body,
  );
}

export function udp(sport: number, dport: number, body: Uint8Array = payload(0)): Bytes {
  return concat(be([sport, 2], [dport, 2], [8 + body.length, 2], [0, 2]), body);
}

/** ICMP and ICMPv6 share the layout: type, code, checksum, 4 bytes of the rest of the header. */
export function icmp(type: number, code: number, body: Uint8Array = payload(0)): Bytes {
  return concat(be([type, 1], [code, 1], [0, 2], [0x00010001, 4]), body);
}
export const icmp6 = icmp;

/**
 * A TCP or UDP segment with its checksum filled in (over the IPv4 or IPv6 pseudo-header), for
 * frames that the kernel's stack must accept, not only the datapath.
 */
export function withL4Checksum(proto: number, src: string, dst: string, segment: Bytes): Bytes {
  const v6 = src.includes(":");
  const pseudo = v6
    ? concat(addr6(src), addr6(dst), be([segment.length, 4], [0, 2], [0, 1], [proto, 1]))
    : concat(addr4(src), addr4(dst), be([0, 1], [proto, 1], [segment.length, 2]));
  const out = segment.slice();
  const at = proto === IPPROTO.tcp ? 16 : 6;
  out[at] = out[at + 1] = 0;
  new DataView(out.buffer).setUint16(at, checksum(concat(pseudo, out)));
  return out;
}
