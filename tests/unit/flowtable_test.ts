import assert from "node:assert/strict";
import { FlowTable } from "../../src/flows/table.ts";
import { ipv4Bytes, ipv6Bytes } from "../../src/net/address.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";

function flow(i: number, over: Partial<FlowSnapshot> = {}): FlowSnapshot {
  return {
    ifindex: 2 + (i % 3),
    hook: i % 2 ? "tcEgress" : "tcIngress",
    family: 4,
    proto: i % 4 === 0 ? 1 : 17,
    saddr: `10.0.${i >> 8}.${i & 255}`,
    daddr: "192.0.2.1",
    sport: i % 4 === 0 ? 8 : 1000 + i,
    dport: i % 4 === 0 ? 0 : 53,
    packets: (i * 7) % 13,
    bytes: (i * 37) % 101,
    firstSeenNs: 1000 + i,
    lastSeenNs: 5000 + ((i * 11) % 17),
    tcpFlags: 0,
    fragment: false,
    interface: `if${2 + (i % 3)}`,
    direction: i % 2 ? "tx" : "rx",
    ...over,
  };
}

Deno.test("flow table: objects go in as columns and come back the same", () => {
  const flows = Array.from({ length: 300 }, (_, i) => flow(i));
  flows.push(flow(300, { family: 6, saddr: "2001:db8::1", daddr: "fe80::a:b", fragment: true }));
  const t = FlowTable.from(flows);
  assert.equal(t.size, 301);
  assert.deepEqual(t.toArray(), flows);
});

Deno.test("flow table: top() equals a stable sort, with filters and totals", () => {
  const flows = Array.from({ length: 1000 }, (_, i) => flow(i));
  const t = FlowTable.from(flows);
  for (const order of ["bytes", "packets", "lastSeenNs"] as const) {
    for (const limit of [0, 1, 7, 100, 5000]) {
      const want = flows.map((f, i) => ({ f, i }))
        .sort((a, b) => b.f[order] - a.f[order] || a.i - b.i).slice(0, limit).map((x) => x.f);
      assert.deepEqual(t.top(order, limit), { total: 1000, flows: want }, `${order} ${limit}`);
    }
  }
  const udpTo1003 = t.top("bytes", 10, (i) => t.proto(i) === 17 && t.port(i, "sport") === 1003);
  assert.deepEqual(udpTo1003.flows.map((f) => f.sport), [1003]);
  const onIf3 = t.top("bytes", 2000, (i) => t.ifindex(i) === 3);
  assert.equal(onIf3.total, flows.filter((f) => f.ifindex === 3).length);
  const addr = ipv4Bytes("10.0.1.2");
  assert.deepEqual(t.top("bytes", 5, (i) => t.hasAddress(i, 4, addr)).flows.map((f) => f.saddr), [
    "10.0.1.2",
  ]);
});

Deno.test("flow table: addresses parse, or say why not", () => {
  assert.deepEqual([...ipv4Bytes("192.0.2.255")], [192, 0, 2, 255]);
  assert.deepEqual([...ipv6Bytes("2001:db8::1")], [0x20, 1, 0xd, 0xb8, ...Array(11).fill(0), 1]);
  assert.deepEqual([...ipv6Bytes("::ffff:192.0.2.1")].slice(10), [0xff, 0xff, 192, 0, 2, 1]);
  assert.deepEqual([...ipv6Bytes("::")], Array(16).fill(0));
  for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d"]) assert.throws(() => ipv4Bytes(bad), /IPv4/);
  for (const bad of ["1::2::3", "12345::", "g::1", "1:2:3:4:5:6:7:8:9"]) {
    assert.throws(() => ipv6Bytes(bad), /IPv6/);
  }
});
