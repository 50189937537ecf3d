/** Networks written as CIDRs (`ADDR/BITS`), and whether they hold an address. Pure. */
import { type Family, parseAddress } from "./address.ts";

export interface Cidr {
  text: string;
  family: Family;
  bytes: Uint8Array;
  bits: number;
}

/** What is wrong with `ADDR/BITS` or a bare address, or undefined when it is a CIDR. */
export function cidrProblem(s: string): string | undefined {
  try {
    parseCidr(s);
    return undefined;
  } catch (e) {
    return (e as CidrError).problem;
  }
}

class CidrError extends TypeError {
  constructor(readonly problem: string, text: string) {
    super(`not a CIDR (${problem}): ${text}`);
  }
}

/** Parses `ADDR/BITS` or a bare address (a host route); throws a TypeError naming the problem. */
export function parseCidr(s: string): Cidr {
  const [addr, bits, extra] = s.split("/");
  if (extra !== undefined) throw new CidrError("more than one /", s);
  let a: { family: Family; bytes: Uint8Array };
  try {
    a = parseAddress(addr);
  } catch {
    throw new CidrError("not an IPv4 or IPv6 address", s);
  }
  const max = a.family === 4 ? 32 : 128;
  if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > max)) {
    throw new CidrError(`prefix length not 0..${max}`, s);
  }
  return {
    text: s,
    family: a.family,
    bytes: a.bytes,
    bits: bits === undefined ? max : Number(bits),
  };
}

export function cidrContains(c: Cidr, family: Family, bytes: Uint8Array): boolean {
  if (c.family !== family) return false;
  let bits = c.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.bytes[i] & mask) !== (bytes[i] & mask)) return false;
  }
  return true;
}
