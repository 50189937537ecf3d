/** Bytes exchanged with each mesh peer, from the flows the datapath saw on watched interfaces. */
import type { FlowTable } from "../flows/table.ts";
import { parseAddress } from "../net/address.ts";

/**
 * For each peer IP (→ peer id): bytes of flows received from it (source = peer, seen
 * inbound) and sent to it (destination = peer, seen outbound). The mesh protocol's own
 * datagrams (UDP from or to `meshPorts`) are left out: they are counted as probe bytes.
 */
export function peerTraffic(
  flows: FlowTable,
  peers: Map<string, string>,
  meshPorts: Set<number>,
): Map<string, { sent: number; received: number }> {
  const out = new Map<string, { sent: number; received: number }>();
  const addrs = [...peers].flatMap(([ip, id]) => {
    out.set(id, { sent: 0, received: 0 });
    try {
      return [{ id, ...parseAddress(ip) }];
    } catch {
      return []; // not a plain address (a zone suffix, a name): no flows can match it
    }
  });
  if (addrs.length === 0) return out;
  for (let i = 0; i < flows.size; i++) {
    if (
      flows.proto(i) === 17 &&
      (meshPorts.has(flows.port(i, "sport")) || meshPorts.has(flows.port(i, "dport")))
    ) continue;
    for (const a of addrs) {
      const side = flows.addressSide(i, a.family, a.bytes);
      if (side === undefined) continue;
      const t = out.get(a.id)!;
      const f = flows.get(i);
      if (side === "source" && f.direction === "rx") t.received += f.bytes;
      if (side === "destination" && f.direction === "tx") t.sent += f.bytes;
    }
  }
  return out;
}
