/**
 * The allow-list: addresses the loop never acts on. Always the box's own addresses and the
 * loopback; by default also the mesh peers and the management network (the subnet of the
 * address the API listens on); plus any CIDR the configuration lists.
 */
import { parseAddress } from "../net/address.ts";
import { type Cidr, cidrContains, parseCidr } from "../net/cidr.ts";

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
