/**
 * The ring buffer from the kernel to user space: every new flow arrives as one event, and
 * events the kernel could not reserve (ring full) are counted, never silently lost.
 */
import assert from "node:assert/strict";
import { readIfaceStats } from "../../src/collect/decode.ts";
import { decodeEvent, type FlowEvent } from "../../src/flows/key.ts";
import { FlowDatapath } from "../../src/datapath/flow.ts";
import { RingBuffer } from "../../src/datapath/ringbuf.ts";
import { eth, ETH_P, IPPROTO, ipv4, udp } from "./frames.ts";

function udpFrame(sport: number) {
  return eth(ETH_P.ipv4, ipv4(IPPROTO.udp, udp(sport, 53)));
}

Deno.test("ring buffer: one event per new flow, decoded, consumed without blocking", async () => {
  using dp = new FlowDatapath();
  dp.track(1);
  const events: FlowEvent[] = [];
  const ring = new RingBuffer(dp.events, (rec) => events.push(decodeEvent(rec)));
  try {
    ring.start(50);
    for (let i = 0; i < 200; i++) dp.xdp.testRun(udpFrame(10000 + i), 2);
    for (let i = 0; i < 50 && events.length < 200; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(events.length, 200);
    assert.deepEqual(events.map((e) => e.flow.sport), [...Array(200).keys()].map((i) => 10000 + i));
    assert.ok(events.every((e) => e.type === "new_flow" && e.flow.dport === 53 && e.tsNs > 0));
    assert.equal(ring.consumed, 200);
    const st = readIfaceStats(dp).find((s) => s.ifindex === 1 && s.hook === "xdp");
    assert.deepEqual([st?.eventsSent, st?.eventsLost, st?.eventsSuppressed], [200, 0, 0]);
  } finally {
    await ring.stop();
  }
});

Deno.test("ring buffer: when it is full, the events that did not fit are counted as lost", () => {
  // One page: room for 56 records of 64 bytes plus their 8-byte headers.
  using dp = new FlowDatapath({ ringBufferBytes: 4096 });
  dp.track(1);
  for (let i = 0; i < 100; i++) dp.tcIngress.testRun(udpFrame(20000 + i));
  const st = readIfaceStats(dp).find((s) => s.ifindex === 1 && s.hook === "tcIngress");
  assert.ok(st);
  assert.equal(st.flowsCreated, 100);
  assert.equal(st.eventsSent + st.eventsLost, 100);
  assert.equal(st.eventsSent, Math.floor(4096 / (64 + 8)));
  let seen = 0;
  using ring = new RingBuffer(dp.events, () => seen++);
  assert.equal(ring.consume(), st.eventsSent);
  assert.equal(seen, st.eventsSent);
});

Deno.test("ring buffer: a record that does not decode is refused with a clear error", () => {
  assert.throws(() => decodeEvent(new Uint8Array(10)), /flow event of 10 bytes, expected 64/);
  const bad = new Uint8Array(64);
  bad[56] = 9;
  assert.throws(() => decodeEvent(bad), /unknown flow event type 9/);
});
