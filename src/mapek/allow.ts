/**
 * The allow-list: addresses the loop never acts on. Always the box's own addresses and the
 * loopback; by default also the mesh peers and the management network (the subnet of the
 * address the API listens on); plus any CIDR the configuration lists.
 */
import { parseAddress } from "../datapath/netdev.ts";

export interface Cidr {
  text: string;
  family: 4 | 6;
  bytes: Uint8Array;
  bits: number;
}

/** Parses `ADDR/BITS` or a bare address (a host route); throws a TypeError naming the problem. */
export function parseCidr(s: string): Cidr {
  const [addr, bits, extra] = s.split("/");
  if (extra !== undefined) throw new TypeError(`not a CIDR: ${s}`);
  let a: { family: 4 | 6; bytes: Uint8Array };
  try {
    a = parseAddress(addr);
  } catch {
    throw new TypeError(`not an IPv4 or IPv6 address: ${addr}`);
  }
  const max = a.family === 4 ? 32 : 128;
  if (bits !== undefined && !/^\d{1,3}$/.test(bits)) throw new TypeError(`bad prefix length: ${s}`);
  const n = bits === undefined ? max : Number(bits);
  if (n > max) throw new TypeError(`prefix length above ${max}: ${s}`);
  return { text: s, family: a.family, bytes: a.bytes, bits: n };
}

export function cidrContains(c: Cidr, family: 4 | 6, bytes: Uint8Array): boolean {
  if (c.family !== family) return false;
  let bits = c.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.bytes[i] & mask) !== (bytes[i] & mask)) return false;
  }
  return true;
}

export interface AllowEntry {
  cidr: Cidr;
  /** Why it is allowed: "configured", "mesh peer …", "management network", "this box", "loopback". */
  why: string;
}

export class AllowList {
  #entries: AllowEntry[] = [];

  set(entries: AllowEntry[]): void {
    this.#entries = entries;
  }

  entries(): AllowEntry[] {
    return [...this.#entries];
  }

  /** Why `address` is allowed, or undefined when it is not. */
  match(address: string): string | undefined {
    let a: { family: 4 | 6; bytes: Uint8Array };
    try {
      a = parseAddress(address);
    } catch {
      return undefined;
    }
    return this.#entries.find((e) => cidrContains(e.cidr, a.family, a.bytes))?.why;
  }
}

/** The box's own addresses and the subnet of `listenHost` (when it is one of them). */
export function localEntries(listenHost: string, management: boolean): AllowEntry[] {
  const out: AllowEntry[] = [
    { cidr: parseCidr("127.0.0.0/8"), why: "loopback" },
    { cidr: parseCidr("::1/128"), why: "loopback" },
  ];
  for (const i of Deno.networkInterfaces()) {
    const addr = i.address.replace(/%.*$/, "");
    out.push({ cidr: parseCidr(addr), why: `this box (${i.name})` });
    if (management && addr === listenHost && i.cidr) {
      out.push({
        cidr: parseCidr(i.cidr.replace(/%[^/]*/, "")),
        why: `management network (${i.name}, where the API listens)`,
      });
    }
  }
  return out;
}
