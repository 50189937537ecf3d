/**
 * /api/v1/flows: the top flows of the current snapshot by bytes, packets or recency, filtered
 * by interface, protocol, address and port, with their kernel signals and Cilium identities.
 */
import { Hono } from "hono";
import * as z from "zod";
import { enrichFlow } from "../../cilium/cilium.ts";
import { flowSignals } from "../../datapath/signals.ts";
import { parseAddress } from "../../net/address.ts";
import type { ApiDeps } from "../deps.ts";
import { parseQuery } from "../middleware.ts";
import { problem } from "../problem.ts";

const PROTOCOLS = new Map([["tcp", 6], ["udp", 17], ["icmp", 1], ["icmpv6", 58]]);

const FlowQuery = z.object({
  sort: z.enum(["bytes", "packets", "recent"]).default("bytes"),
  limit: z.coerce.number().int().min(1).max(10000).default(100),
  interface: z.string().min(1).max(15).optional(),
  protocol: z.string().refine((p) => PROTOCOLS.has(p) || /^\d{1,3}$/.test(p) && Number(p) < 256, {
    message: "expected tcp, udp, icmp, icmpv6 or an IP protocol number 0-255",
  }).optional(),
  address: z.string().min(2).max(45).regex(/^[0-9a-fA-F.:]+$/, "expected an IPv4 or IPv6 address")
    .optional(),
  port: z.coerce.number().int().min(0).max(65535).optional(),
}).strict();

export function flowRoutes(d: Pick<ApiDeps, "store" | "cilium">): Hono {
  const r = new Hono();
  r.get("/api/v1/flows", (c) => {
    const q = parseQuery(c, FlowQuery);
    if (q instanceof Response) return q;
    const { sort, limit, interface: iface, protocol, address, port } = q;
    const proto = protocol === undefined ? undefined : PROTOCOLS.get(protocol) ?? Number(protocol);
    const table = d.store.current?.flows;
    if (!table) return c.json({ total: 0, sort, flows: [] });
    let addr: { family: number; bytes: Uint8Array } | undefined;
    if (address !== undefined) {
      try {
        addr = parseAddress(address);
      } catch (e) {
        return problem(c, 400, "bad query", `address: ${(e as Error).message}`);
      }
    }
    const ifindexes = iface === undefined ? undefined : new Set(
      (d.store.current?.interfaces ?? []).filter((i) => i.name === iface).map((i) => i.ifindex),
    );
    const match = (i: number) =>
      (ifindexes === undefined || ifindexes.has(table.ifindex(i))) &&
      (proto === undefined || table.proto(i) === proto) &&
      (addr === undefined || table.hasAddress(i, addr.family, addr.bytes)) &&
      (port === undefined || ((table.proto(i) === 6 || table.proto(i) === 17) &&
        (table.port(i, "sport") === port || table.port(i, "dport") === port)));
    const filtered = iface !== undefined || proto !== undefined || addr !== undefined ||
      port !== undefined;
    const { total, flows } = table.top(
      sort === "recent" ? "lastSeenNs" : sort,
      limit,
      filtered ? match : undefined,
    );
    // Kernel signals of the flow (drops, TCP retransmits, RTT), where there are some.
    const sig = d.store.current?.signals?.flows;
    // And the Cilium endpoint identities of its addresses, when an agent answers.
    const withSignals = flows.map((f) => ({
      ...f,
      ...flowSignals(sig, f),
      cilium: d.cilium && enrichFlow(f, d.cilium),
    }));
    return c.json({ total, sort, flows: withSignals });
  });
  return r;
}
