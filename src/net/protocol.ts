/** IP protocol numbers and the names the appliance shows and accepts for them. Pure. */

export const TCP = 6, UDP = 17, ICMP = 1, ICMPV6 = 58;

const NAMES: Record<number, string> = {
  [ICMP]: "icmp",
  [TCP]: "tcp",
  [UDP]: "udp",
  [ICMPV6]: "icmpv6",
};
const NUMBERS = new Map(Object.entries(NAMES).map(([n, name]) => [name, Number(n)]));

/** The names a filter accepts, for messages. */
export const PROTOCOL_NAMES: readonly string[] = [...NUMBERS.keys()];

const LABELS: string[] = [];
/** A protocol's name (tcp, udp, icmp, icmpv6) or else its number, as text; cached, since
 * /metrics asks for it once per exported flow. */
export function protocolLabel(proto: number): string {
  if (proto >= 0 && proto < 256 && Number.isInteger(proto)) {
    return LABELS[proto] ??= NAMES[proto] ?? String(proto);
  }
  return String(proto);
}

/** A protocol's name, or `ip-N` for one without a name (for people, in the terminal). */
export function protocolName(proto: number): string {
  return NAMES[proto] ?? `ip-${proto}`;
}

/** The number of a protocol given by name or number (0-255), or undefined. */
export function protocolNumber(s: string): number | undefined {
  const n = NUMBERS.get(s);
  if (n !== undefined) return n;
  return /^\d{1,3}$/.test(s) && Number(s) < 256 ? Number(s) : undefined;
}

/** Whether the protocol has ports (TCP, UDP). */
export function hasPorts(proto: number): boolean {
  return proto === TCP || proto === UDP;
}
