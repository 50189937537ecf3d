/**
 * One text form per IP address, so that Cilium's addresses and the appliance's flow addresses
 * compare equal as plain strings.
 *
 * The flow side comes from `formatAddress()` in src/datapath/netdev.ts: IPv4 dotted decimal,
 * IPv6 lower-case hex with the longest run of two or more zero groups compressed (RFC 5952).
 * The Cilium side comes from Go's `net.IP.String()`, which follows RFC 5952 as well, but any
 * other spelling (upper case, leading zeros, no compression, embedded IPv4, a zone) is accepted
 * and brought to that same form here.
 */

/** The canonical form of an IPv4 or IPv6 address, or undefined when `text` is not one. */
export function normalizeAddress(text: string): string | undefined {
  let s = text.trim();
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(":")) {
    const v4 = ipv4Octets(s);
    return v4 && v4.join(".");
  }
  const groups = ipv6Groups(s);
  if (!groups) return undefined;
  // An IPv4-mapped address (::ffff:a.b.c.d) names the IPv4 host: Go prints those as IPv4 too.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255].join(".");
  }
  return compressGroups(groups);
}

function ipv4Octets(s: string): number[] | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    // Leading zeros are refused, as Go's parser does: "010" could mean octal to some readers.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

function ipv6Groups(s: string): number[] | undefined {
  let body = s;
  const tailV4: number[] = [];
  const lastColon = body.lastIndexOf(":");
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
  // "::" stands for one or more zero groups.
  if (known > 7) return undefined;
  return [...head, ...new Array<number>(8 - known).fill(0), ...tail, ...tailV4];
}

/** RFC 5952 section 4.2: the longest run of at least two zero groups, the first on ties. */
function compressGroups(groups: number[]): string {
  let runStart = -1, runLen = 0;
  let curStart = -1;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && groups[i] === 0) {
      if (curStart < 0) curStart = i;
      continue;
    }
    if (curStart >= 0) {
      const len = i - curStart;
      if (len >= 2 && len > runLen) [runStart, runLen] = [curStart, len];
      curStart = -1;
    }
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (runStart < 0) return hex(groups);
  return `${hex(groups.slice(0, runStart))}::${hex(groups.slice(runStart + runLen))}`;
}
