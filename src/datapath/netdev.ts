/** Network interface names and indexes, in the calling thread's network namespace. */
import { cstr, loadLibc } from "../../ffi/libbpf.ts";
import { KernelError } from "./errors.ts";

/** The ifindex of `name`; throws ENODEV with the fix when there is no such interface. */
export function ifindexOf(name: string): number {
  if (!/^[^\s/]{1,15}$/.test(name)) {
    throw new KernelError(`find interface ${JSON.stringify(name)}`, 22, "not a valid name");
  }
  const idx = loadLibc().if_nametoindex(cstr(name));
  if (idx === 0) throw new KernelError(`find interface ${name}`, 19);
  return idx;
}

/** The name of interface `ifindex`, or undefined when it is gone. */
export function ifnameOf(ifindex: number): string | undefined {
  const buf = new Uint8Array(16);
  const p = loadLibc().if_indextoname(ifindex, buf);
  if (p === null) return undefined;
  return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
}

/** The interface of the default IPv4 route (or IPv6 when there is none), from /proc. */
export function defaultRouteInterface(): string | undefined {
  try {
    for (const line of Deno.readTextFileSync("/proc/net/route").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 7 && f[1] === "00000000" && f[7] === "00000000") return f[0];
    }
  } catch { /* no IPv4 routing table: try IPv6 */ }
  try {
    for (const line of Deno.readTextFileSync("/proc/net/ipv6_route").split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 10 && f[0] === "0".repeat(32) && f[1] === "00" && f[9] !== "lo") {
        return f[9];
      }
    }
  } catch { /* no IPv6 either */ }
  return undefined;
}

/** An IPv4 (first 4 bytes) or IPv6 address as text; IPv6 compressed as RFC 5952 says. */
export function formatAddress(bytes: Uint8Array, family: 4 | 6): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  // RFC 5952: compress the longest run (at least two) of zero groups, the first one on ties.
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** The 4 bytes of a dotted IPv4 address. */
export function ipv4Bytes(s: string): Uint8Array {
  const parts = s.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new Error(`not an IPv4 address: ${s}`);
  }
  return Uint8Array.from(parts.map(Number));
}

/** The 16 bytes of an IPv6 address in text form (with :: and optional embedded IPv4). */
export function ipv6Bytes(s: string): Uint8Array {
  const out = new Uint8Array(16);
  let text = s;
  const v4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const [a, b, c, d] = v4[1].split(".").map(Number);
    text = text.slice(0, -v4[1].length) +
      `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  if (text.split("::").length > 2) throw new Error(`not an IPv6 address: ${s}`);
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  // "::" stands for one zero group or more (RFC 4291): never for none, never for fewer.
  if (tail !== undefined && h.length + t.length > 7) throw new Error(`not an IPv6 address: ${s}`);
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) {
    throw new Error(`not an IPv6 address: ${s}`);
  }
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/** An address in text form as its family and bytes (4 or 16); throws on a malformed one. */
export function parseAddress(s: string): { family: 4 | 6; bytes: Uint8Array } {
  return s.includes(":") ? { family: 6, bytes: ipv6Bytes(s) } : { family: 4, bytes: ipv4Bytes(s) };
}
