/**
 * /api/v1/flows: the top flows of the current snapshot by bytes, packets or recency, filtered
 * by the flow table's own query, with their kernel signals and Cilium identities.
 */
import { Hono } from "hono";
import * as z from "zod";
import { enrichFlow } from "../../cilium/cilium.ts";
import { flowSignals } from "../../flows/signals.ts";
import { type Address, parseAddress } from "../../net/address.ts";
import { protocolNumber } from "../../net/protocol.ts";
import type { ApiDeps } from "../deps.ts";
import { parseQuery } from "../../http/middleware.ts";
import { problem } from "../../http/problem.ts";

const FlowQuery = z.object({
  sort: z.enum(["bytes", "packets", "recent"]).default("bytes"),
  limit: z.coerce.number().int().min(1).max(10000).default(100),
  interface: z.string().min(1).max(15).optional(),
  // The names are PROTOCOL_NAMES in the order this message has always given them (a unit
  // test holds the two together).
  protocol: z.string().transform(protocolNumber).refine((p) => p !== undefined, {
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
    const s = d.store.current;
    if (!s) return c.json({ total: 0, sort: q.sort, flows: [] });
    let address: Address | undefined;
    if (q.address !== undefined) {
      try {
        address = parseAddress(q.address);
      } catch (e) {
        return problem(c, 400, "bad query", `address: ${(e as Error).message}`);
      }
    }
    const ifindexes = q.interface === undefined
      ? undefined
      : new Set(s.interfaces.filter((i) => i.name === q.interface).map((i) => i.ifindex));
    const { total, flows } = s.flows.query(
      { ifindexes, proto: q.protocol, address, port: q.port },
      q.sort === "recent" ? "lastSeenNs" : q.sort,
      q.limit,
    );
    // Kernel signals of the flow (drops, TCP retransmits, RTT), where there are some,
    // and the Cilium endpoint identities of its addresses, when an agent answers.
    const sig = s.signals?.flows;
    return c.json({
      total,
      sort: q.sort,
      flows: flows.map((f) => ({
        ...f,
        ...flowSignals(sig, f),
        cilium: d.cilium && enrichFlow(f, d.cilium),
      })),
    });
  });
  return r;
}
