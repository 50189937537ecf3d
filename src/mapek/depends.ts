/**
 * What this box depends on, as the kernel and the resolver say now: the next hops of its routing
 * tables (IPv4 and IPv6, link-local routers included) and its nameservers. The MAPE-K loop never
 * acts on them: a spoofed scan "from the gateway" must not cut the box off.
 */
import { formatAddress } from "../net/address.ts";
import { parseCidr } from "../net/cidr.ts";
import type { AllowEntry } from "./allow.ts";

/** Where the appliance reads them; tests point these at files of their own. */
export interface DependencySources {
  /** /proc/net of the namespace the appliance runs in. */
  procNet: string;
  /** resolv.conf files: the system's, and systemd-resolved's list of upstream servers. */
  resolvConf: string[];
}

export const DEPENDENCY_SOURCES: DependencySources = {
  procNet: "/proc/net",
  resolvConf: ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"],
};

function lines(file: string): string[] {
  try {
    return Deno.readTextFileSync(file).split("\n");
  } catch {
    return []; // no such table or file: nothing to spare from it
  }
}

const hexBytes = (hex: string) => Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));

/** One allow-list entry per next hop of the routing tables, with the route it serves. */
export function gatewayEntries(procNet: string): AllowEntry[] {
  const out = new Map<string, AllowEntry>();
  const add = (address: string, why: string) => {
    if (!out.has(address)) out.set(address, { cidr: parseCidr(address), why });
  };
  // Iface Destination Gateway Flags RefCnt Use Metric Mask …, addresses in host byte order.
  for (const line of lines(`${procNet}/route`).slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^[0-9A-F]{8}$/i.test(f[2]) || /^0{8}$/.test(f[2])) continue;
    const gw = formatAddress(hexBytes(f[2]).reverse(), 4);
    const dest = formatAddress(hexBytes(f[1]).reverse(), 4);
    const bits = countBits(parseInt(f[7], 16));
    add(
      gw,
      dest === "0.0.0.0" && bits === 0
        ? `default gateway (${f[0]})`
        : `next hop for ${dest}/${bits} (${f[0]})`,
    );
  }
  // Destination DstLen Source SrcLen NextHop Metric RefCnt Use Flags Iface, network order.
  for (const line of lines(`${procNet}/ipv6_route`)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^[0-9a-f]{32}$/i.test(f[4]) || /^0{32}$/.test(f[4])) continue;
    const dest = formatAddress(hexBytes(f[0]), 6);
    const bits = parseInt(f[1], 16);
    add(
      formatAddress(hexBytes(f[4]), 6),
      bits === 0 ? `default gateway (${f[9]})` : `next hop for ${dest}/${bits} (${f[9]})`,
    );
  }
  return [...out.values()];
}

function countBits(n: number): number {
  let c = 0;
  for (let x = n >>> 0; x; x &= x - 1) c++;
  return c;
}

/** One allow-list entry per nameserver of the resolv.conf files (zones dropped). */
export function nameserverEntries(files: readonly string[]): AllowEntry[] {
  const out = new Map<string, AllowEntry>();
  for (const file of files) {
    for (const line of lines(file)) {
      const m = line.match(/^\s*nameserver\s+(\S+)/);
      if (!m) continue;
      const address = m[1].replace(/%.*$/, "");
      try {
        if (!out.has(address)) {
          out.set(address, { cidr: parseCidr(address), why: `nameserver (${file})` });
        }
      } catch { /* not an address: the resolver ignores it too */ }
    }
  }
  return [...out.values()];
}

/** Everything this box depends on, from `sources`. */
export function dependencyEntries(sources: DependencySources = DEPENDENCY_SOURCES): AllowEntry[] {
  return [...gatewayEntries(sources.procNet), ...nameserverEntries(sources.resolvConf)];
}
