/**
 * IP addresses: one parser and one formatter for the whole appliance (flows, the allow-list,
 * the configuration, Cilium's identities, the API's filters). Pure: no FFI, no I/O.
 *
 * The text form is the one RFC 5952 gives (IPv4 dotted decimal; IPv6 lower-case hex with the
 * longest run of two or more zero groups compressed), which is also Go's `net.IP.String()` and
 * the URL standard's: two spellings of one address compare equal as strings once normalized.
 */

export type Family = 4 | 6;

/** An address as its family and its bytes (4 for IPv4, 16 for IPv6). */
export interface Address {
  family: Family;
  bytes: Uint8Array;
}

/** Octets of a dotted IPv4 address, or undefined. Leading zeros are refused, as Go and
 * node:net do: "010" could mean octal to some readers. */
function ipv4Octets(s: string): number[] | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** The eight 16-bit groups of an IPv6 address (with :: and an optional trailing IPv4 part). */
function ipv6Groups(s: string): number[] | undefined {
  let body = s;
  const tailV4: number[] = [];
  const lastColon = body.lastIndexOf(":");
  if (lastColon < 0) return undefined;
  if (body.slice(lastColon + 1).includes(".")) {
    const o = ipv4Octets(body.slice(lastColon + 1));
    if (!o) return undefined;
    tailV4.push((o[0] << 8) | o[1], (o[2] << 8) | o[3]);
    body = body.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::", "64:ff9b::1.2.3.4" leaves "64:ff9b::", "1:2:3:4:5:6:1.2.3.4"
    // leaves "1:2:3:4:5:6:" whose last colon only separated the IPv4 part.
    if (!body.endsWith("::")) body = body.slice(0, -1);
  }
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !tail) return undefined;
  const known = head.length + tail.length + tailV4.length;
  if (halves.length === 1) return known === 8 ? [...head, ...tailV4] : undefined;
  // "::" stands for one zero group or more (RFC 4291): never for none.
  if (known > 7) return undefined;
  return [...head, ...new Array<number>(8 - known).fill(0), ...tail, ...tailV4];
}

/** The 4 bytes of a dotted IPv4 address; throws naming the text. */
export function ipv4Bytes(s: string): Uint8Array {
  const o = ipv4Octets(s);
  if (!o) throw new TypeError(`not an IPv4 address: ${s}`);
  return Uint8Array.from(o);
}

/** The 16 bytes of an IPv6 address in text form (with :: and optional embedded IPv4). */
export function ipv6Bytes(s: string): Uint8Array {
  const groups = ipv6Groups(s);
  if (!groups) throw new TypeError(`not an IPv6 address: ${s}`);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** An address in text form as its family and bytes; throws on a malformed one (a zone such
 * as `%eth0` included: an address with a zone names a link, not a host). */
export function parseAddress(s: string): Address {
  return s.includes(":") ? { family: 6, bytes: ipv6Bytes(s) } : { family: 4, bytes: ipv4Bytes(s) };
}

/** Whether `s` is an IPv4 or IPv6 address in text form (no zone). */
export function isAddress(s: string): boolean {
  return s.includes(":") ? ipv6Groups(s) !== undefined : ipv4Octets(s) !== undefined;
}

/** An IPv4 (first 4 bytes) or IPv6 address as text; IPv6 compressed as RFC 5952 says. */
export function formatAddress(bytes: Uint8Array, family: Family): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  // RFC 5952 section 4.2: the longest run (at least two) of zero groups, the first on ties.
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

/** An IPv4 address held as an unsigned 32-bit number (most significant octet first) as text. */
export function formatIPv4Number(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * The canonical form of an IPv4 or IPv6 address, or undefined when `text` is not one: spaces
 * around it and a zone are dropped, and an IPv4-mapped IPv6 address (::ffff:a.b.c.d) names the
 * IPv4 host, as Go prints it.
 */
export function normalizeAddress(text: string): string | undefined {
  let s = text.trim();
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (!isAddress(s)) return undefined;
  const a = parseAddress(s);
  const b = a.bytes;
  if (
    a.family === 6 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff
  ) {
    return formatAddress(b.subarray(12), 4);
  }
  return formatAddress(b, a.family);
}
