/** Traffic per mesh peer from the flow table: one lookup per flow, IPv4 and IPv6 alike. */
import assert from "node:assert/strict";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { FlowTable } from "../../src/flows/table.ts";
import { peerTraffic } from "../../src/mesh/traffic.ts";
import { flowOf } from "../helpers/snapshot.ts";

const flow = (over: Partial<FlowSnapshot>) =>
  flowOf({ proto: 6, saddr: "198.18.0.2", daddr: "198.18.0.1", dport: 443, bytes: 100, ...over });

Deno.test("peerTraffic: received from a peer, sent to it, mesh datagrams and strangers left out", () => {
  const flows = FlowTable.from([
    flow({ bytes: 100 }), // from peer a, inbound
    flow({
      saddr: "198.18.0.1",
      daddr: "198.18.0.2",
      bytes: 30,
      hook: "tcEgress",
      direction: "tx",
    }), // to a
    flow({ proto: 17, sport: 5000, dport: 5000, bytes: 999 }), // mesh protocol: not traffic
    flow({ saddr: "198.18.0.9", bytes: 7 }), // a stranger
    flow({ family: 6, saddr: "2001:db8::b", daddr: "2001:db8::1", bytes: 11 }), // from b
    flow({
      family: 6,
      saddr: "2001:db8::1",
      daddr: "2001:db8::b",
      bytes: 5,
      hook: "tcEgress",
      direction: "tx",
    }),
    flow({ saddr: "198.18.0.1", daddr: "198.18.0.2", bytes: 8, direction: "rx" }), // odd: not ours
  ]);
  const peers = new Map([["198.18.0.2", "a"], ["2001:0db8:0::b", "b"], ["198.18.0.3", "c"]]);
  const t = peerTraffic(flows, peers, new Set([5000]));
  assert.deepEqual(Object.fromEntries(t), {
    a: { sent: 30, received: 100 },
    b: { sent: 5, received: 11 },
    c: { sent: 0, received: 0 },
  });
});

Deno.test("peerTraffic: a box that forwards between two peers credits the flow's direction", () => {
  // Sent out towards a, from c (forwarded): a's sent; received from c on its way to a: c's received.
  const flows = FlowTable.from([
    flow({ saddr: "198.18.0.3", daddr: "198.18.0.2", bytes: 4, hook: "tcEgress", direction: "tx" }),
    flow({ saddr: "198.18.0.3", daddr: "198.18.0.2", bytes: 6 }),
  ]);
  const t = peerTraffic(flows, new Map([["198.18.0.2", "a"], ["198.18.0.3", "c"]]), new Set());
  assert.deepEqual(Object.fromEntries(t), {
    a: { sent: 4, received: 0 },
    c: { sent: 0, received: 6 },
  });
});
