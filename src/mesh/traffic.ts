/** Bytes exchanged with each mesh peer, from the flows the datapath saw on watched interfaces. */
import type { FlowTable } from "../flows/table.ts";
import { formatAddress, parseAddress } from "../net/address.ts";

/**
 * For each peer IP (→ peer id): bytes of flows received from it (source = peer, seen
 * inbound) and sent to it (destination = peer, seen outbound). The mesh protocol's own
 * datagrams (UDP from or to `meshPorts`) are left out: they are counted as probe bytes. One
 * lookup per flow and side, whatever the number of peers (a fleet has a thousand).
 */
export function peerTraffic(
  flows: FlowTable,
  peers: Map<string, string>,
  meshPorts: Set<number>,
): Map<string, { sent: number; received: number }> {
  const out = new Map<string, { sent: number; received: number }>();
  /** Peer ids by the flow table's address identity (FlowTable.addressId). */
  const ids = new Map<number | string, string>();
  for (const [ip, id] of peers) {
    out.set(id, { sent: 0, received: 0 });
    try {
      const { family, bytes: b } = parseAddress(ip);
      const key = family === 4
        ? ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0
        : formatAddress(b, 6);
      ids.set(key, id);
    } catch {
      // not a plain address (a zone suffix, a name): no flows can match it
    }
  }
  if (ids.size === 0) return out;
  for (let i = 0; i < flows.size; i++) {
    if (
      flows.proto(i) === 17 &&
      (meshPorts.has(flows.port(i, "sport")) || meshPorts.has(flows.port(i, "dport")))
    ) continue;
    const from = ids.get(flows.addressId(i, "saddr"));
    const to = from === undefined ? ids.get(flows.addressId(i, "daddr")) : undefined;
    if (from === undefined && to === undefined) continue;
    const f = flows.get(i);
    if (from !== undefined && f.direction === "rx") out.get(from)!.received += f.bytes;
    if (to !== undefined && f.direction === "tx") out.get(to)!.sent += f.bytes;
  }
  return out;
}
