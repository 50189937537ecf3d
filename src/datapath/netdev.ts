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
