/**
 * The scan detector's count of distinct ports a source opened, kept in a fixed-size set of
 * fingerprints rather than a string per flow: distinct (destination, protocol, port) only,
 * UDP flows this box answered left out, IPv4 and IPv6, and no carry-over between snapshots.
 */
import assert from "node:assert/strict";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { Monitor } from "../../src/mapek/monitor.ts";
import { flowOf, snapshotOf } from "../helpers/snapshot.ts";

const NOW = 1e12; // the datapath clock at the snapshots; flows first seen just before

const flow = (o: Partial<FlowSnapshot>) =>
  flowOf({ firstSeenNs: NOW - 1e9, lastSeenNs: NOW - 1e9, ...o });

const snap = (at: number, flows: FlowSnapshot[]) => snapshotOf(flows, { takenAt: at });

Deno.test("monitor: a scan's distinct ports, without answered UDP, duplicates or carry-over", () => {
  const m = new Monitor({ scanWindowS: 10, floodPps: 1e9, scanPorts: 20 });
  const flows: FlowSnapshot[] = [];
  // 3000 UDP ports on two addresses, each twice (two source ports): 6000 distinct.
  for (const daddr of ["192.0.2.1", "192.0.2.2"]) {
    for (let p = 1; p <= 3000; p++) {
      flows.push(flow({ daddr, dport: p }), flow({ daddr, dport: p, sport: 40001 }));
    }
  }
  // 100 more ports, each answered by this box (an egress flow back to the source's port).
  for (let p = 5001; p <= 5100; p++) {
    flows.push(flow({ dport: p }));
    flows.push(flow({
      hook: "tcEgress",
      direction: "tx",
      saddr: "192.0.2.1",
      daddr: "198.51.100.7",
      sport: p,
      dport: 40000,
    }));
  }
  // An IPv6 source: 50 TCP SYNs to distinct ports, and a SYN-ACKed one that does not count.
  for (let p = 1; p <= 50; p++) {
    flows.push(flow({
      family: 6,
      proto: 6,
      saddr: "2001:db8::7",
      daddr: "2001:db8::1",
      dport: p,
      tcpFlags: 0x02,
    }));
  }
  flows.push(flow({
    family: 6,
    proto: 6,
    saddr: "2001:db8::7",
    daddr: "2001:db8::1",
    dport: 80,
    tcpFlags: 0x12,
  }));
  assert.equal(m.observe(snap(1000, flows), NOW), undefined, "primes");
  for (const at of [2000, 3000]) {
    const o = m.observe(snap(at, flows), NOW)!;
    assert.equal(o.sources.get("198.51.100.7")!.scanPorts, 6000, `at ${at}`);
    assert.equal(o.sources.get("2001:db8::7")!.scanPorts, 50, `at ${at}`);
  }
});

Deno.test("monitor: kernel drops count on the watched interfaces only", () => {
  const m = new Monitor({ scanWindowS: 10, floodPps: 1e9, scanPorts: 20 });
  const iface = { ifindex: 2, name: "eth0", source: "ebpf" as const, hooks: [], traffic: [] };
  const at = (t: number, eth0: number, unknown: number, lo: number) =>
    snapshotOf([], {
      takenAt: t,
      interfaces: [{ ...iface, malformed: {}, fragments: 0, vlanTagged: 0 }],
      signals: {
        drops: [
          { interface: "eth0", reason: "NETFILTER_DROP", count: eth0 },
          { interface: "unknown", reason: "QUEUE_PURGE", count: unknown },
          { interface: "lo", reason: "NETFILTER_DROP", count: lo },
        ],
        flows: new Map(),
        rtt: [],
        retransmitsByInterface: {},
        unavailable: {},
      },
    });
  assert.equal(m.observe(at(1000, 100, 100, 100), NOW), undefined, "primes");
  const o = m.observe(at(3000, 700, 5000, 900), NOW + 2e9)!;
  assert.deepEqual([...o.dropsPerS], [["NETFILTER_DROP", 300]]);
});
