/** Bytes exchanged with each mesh peer, from the flows the datapath saw on watched interfaces. */
import { isEgressHook } from "../flows/key.ts";
import { addressIdOf, type FlowTable } from "../flows/table.ts";
import { parseAddress } from "../net/address.ts";

/**
 * For each peer IP (→ peer id): bytes of flows received from it (source = peer, seen
 * inbound) and sent to it (destination = peer, seen outbound). The mesh protocol's own
 * datagrams (UDP from or to `meshPorts`) are left out: they are counted as probe bytes. One
 * lookup per flow, whatever the number of peers (a fleet has a thousand).
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
      const { family, bytes } = parseAddress(ip);
      ids.set(addressIdOf(family, bytes), id);
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
    // Received: the peer is the source; sent: the peer is the destination.
    if (isEgressHook(flows.hook(i))) {
      const to = ids.get(flows.addressId(i, "daddr"));
      if (to !== undefined) out.get(to)!.sent += flows.bytes(i);
    } else {
      const from = ids.get(flows.addressId(i, "saddr"));
      if (from !== undefined) out.get(from)!.received += flows.bytes(i);
    }
  }
  return out;
}
