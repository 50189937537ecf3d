/**
 * The IPFIX codec byte by byte against the layout of RFC 7011 (message header 3.1, set header
 * 3.3.2, template record 3.4.1, options template record 3.4.2.2, data records 3.4.3), and a
 * property test: whatever records are packed, every message parses back (tests/export/decode.ts,
 * written apart from the codec) to the same values, within 1400 bytes.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { FLOW_KEY } from "../../ffi/layout.ts";
import {
  EndReason,
  FLOW_RECORD_BYTES,
  FLOW_TEMPLATES,
  flowTemplateId,
  type KeyLayout,
  MAX_MESSAGE_BYTES,
  MessageWriter,
  type RecordValues,
  SAMPLING_TEMPLATE,
  samplingDataSet,
  TEMPLATE_ID,
  templateSet,
  writeFlowRecord,
  writeHeader,
} from "../../src/export/ipfix.ts";
import { encodeFlowKey, type FlowKey } from "../../src/flows/key.ts";
import { Collector } from "./../export/decode.ts";

const K = Object.fromEntries(
  Object.entries(FLOW_KEY.members).map(([k, [o]]) => [k, o]),
) as unknown as KeyLayout;
K.size = FLOW_KEY.size;

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
const bytes = (s: string) => new Uint8Array(s.trim().split(/\s+/).map((x) => parseInt(x, 16)));

Deno.test("message header: version 10, length, export time, sequence, domain (RFC 7011 3.1)", () => {
  const m = new Uint8Array(40);
  writeHeader(m, 0x6543_2109, 0xfffffffe, 0x0102_0304);
  assert.equal(hex(m.subarray(0, 16)), "00 0a 00 28 65 43 21 09 ff ff ff fe 01 02 03 04");
  // Beyond 32 bits, the sequence wraps (modulo 2^32) and so does the export time.
  writeHeader(m, 2 ** 32 + 5, 2 ** 32 + 7, 1);
  assert.equal(hex(m.subarray(4, 12)), "00 00 00 05 00 00 00 07");
});

Deno.test("template set: the IPv4 ingress flow template, field by field (RFC 7011 3.4.1)", () => {
  const set = templateSet([FLOW_TEMPLATES[0]]);
  assert.equal(
    hex(set),
    [
      "00 02 00 3c", // set id 2, length 60
      "01 00 00 0d", // template 256, 13 fields
      "00 08 00 04", // sourceIPv4Address
      "00 0c 00 04", // destinationIPv4Address
      "00 07 00 02", // sourceTransportPort
      "00 0b 00 02", // destinationTransportPort
      "00 04 00 01", // protocolIdentifier
      "00 06 00 01", // tcpControlBits, reduced to one octet
      "00 0a 00 04", // ingressInterface
      "00 3d 00 01", // flowDirection
      "00 88 00 01", // flowEndReason
      "00 98 00 08", // flowStartMilliseconds
      "00 99 00 08", // flowEndMilliseconds
      "00 01 00 08", // octetDeltaCount
      "00 02 00 08", // packetDeltaCount
    ].join(" "),
  );
});

Deno.test("the four flow templates: IPv4/IPv6 × ingress/egress, ids 256–259, fixed lengths", () => {
  const set = templateSet(FLOW_TEMPLATES);
  const parsed = new Collector().parse(headed([set]));
  const t = parsed.sets[0].templates!;
  assert.deepEqual(t.map((x) => x.id), [256, 257, 258, 259]);
  assert.deepEqual(t.map((x) => x.fields.find((f) => f.id === 10 || f.id === 14)!.id), [
    10,
    14,
    10,
    14,
  ]);
  assert.deepEqual(t.map((x) => x.fields[0]), [
    { id: 8, length: 4 },
    { id: 8, length: 4 },
    { id: 27, length: 16 },
    { id: 27, length: 16 },
  ]);
  assert.equal(FLOW_RECORD_BYTES[4], 52);
  assert.equal(FLOW_RECORD_BYTES[6], 76);
  assert.equal(flowTemplateId(4, false), 256);
  assert.equal(flowTemplateId(4, true), 257);
  assert.equal(flowTemplateId(6, false), 258);
  assert.equal(flowTemplateId(6, true), 259);
});

Deno.test("options template and its record: every packet counted (305 = 1, 306 = 0)", () => {
  assert.equal(
    hex(templateSet([SAMPLING_TEMPLATE])),
    "00 03 00 16 01 04 00 03 00 01 00 95 00 04 01 31 00 04 01 32 00 04",
  );
  assert.equal(
    hex(samplingDataSet(0xdeadbeef)),
    "01 04 00 10 de ad be ef 00 00 00 01 00 00 00 00",
  );
  assert.throws(() => templateSet([FLOW_TEMPLATES[0], SAMPLING_TEMPLATE]), TypeError);
});

function headed(sets: Uint8Array[], records = 0): Uint8Array {
  const w = new MessageWriter();
  for (const s of sets) assert.ok(w.appendSet(s, records));
  const m = w.take();
  writeHeader(m, 1_700_000_000, 0, 1);
  return m;
}

const values = (o: Partial<RecordValues> = {}): RecordValues => ({
  octets: 0x0102_0304_0506,
  packets: 0x0a0b_0c0d,
  startMs: 1_700_000_000_123,
  endMs: 1_700_000_001_456,
  tcpFlags: 0x1b,
  endReason: EndReason.activeTimeout,
  egress: false,
  ...o,
});

const key = (k: Partial<FlowKey> = {}) =>
  encodeFlowKey({
    ifindex: 0x0102_0304,
    hook: "tcIngress",
    family: 4,
    proto: 6,
    saddr: "192.0.2.1",
    daddr: "198.51.100.7",
    sport: 40000,
    dport: 443,
    ...k,
  });

Deno.test("IPv4 data record, byte by byte, in the field order of its template", () => {
  const w = new MessageWriter();
  const at = w.reserve(256, 52);
  assert.equal(writeFlowRecord(w, at, key(), 0, K, values()), 52);
  const m = w.take();
  assert.equal(
    hex(m.subarray(16)),
    [
      "01 00 00 38", // data set 256, 4 + 52 bytes
      "c0 00 02 01", // 192.0.2.1
      "c6 33 64 07", // 198.51.100.7
      "9c 40 01 bb", // 40000, 443
      "06 1b", // TCP, flags
      "01 02 03 04", // ifindex (the key holds it little-endian; the record big-endian)
      "00 02", // ingress, active timeout
      "00 00 01 8b cf e5 68 7b", // 1700000000123 ms
      "00 00 01 8b cf e5 6d b0", // 1700000001456 ms
      "00 00 01 02 03 04 05 06", // octets
      "00 00 00 00 0a 0b 0c 0d", // packets
    ].join(" "),
  );
});

Deno.test("IPv6 egress record; ICMP type and code go to the destination port", () => {
  const w = new MessageWriter();
  const k6 = key({
    family: 6,
    hook: "tcEgress",
    proto: 58,
    saddr: "2001:db8::1",
    daddr: "2001:db8::ff",
    sport: 128, // echo request
    dport: 0,
  });
  const at = w.reserve(259, 76);
  writeFlowRecord(w, at, k6, 0, K, values({ egress: true, endReason: EndReason.idleTimeout }));
  const m = w.take();
  writeHeader(m, 0, 0, 1);
  const c = new Collector();
  c.parse(headed([templateSet(FLOW_TEMPLATES)]));
  const r = c.parse(m).sets[0].records![0];
  assert.equal(r.get(27), "2001:db8::1");
  assert.equal(r.get(28), "2001:db8::ff");
  assert.equal(r.get(7), 0);
  assert.equal(r.get(11), 128 << 8);
  assert.equal(r.get(4), 58);
  assert.equal(r.get(14), 0x0102_0304);
  assert.equal(r.get(61), 1);
  assert.equal(r.get(136), 1);
  assert.equal(r.get(1), 0x0102_0304_0506);
  assert.equal(r.get(2), 0x0a0b_0c0d);
});

Deno.test("counters up to 2^53 - 1 are written exactly in 8 bytes", () => {
  const w = new MessageWriter();
  const at = w.reserve(256, 52);
  writeFlowRecord(w, at, key(), 0, K, values({ octets: 2 ** 53 - 1, packets: 2 ** 32 }));
  const m = w.take();
  assert.equal(
    hex(m.subarray(at + 36, at + 52)),
    hex(bytes(`
    00 1f ff ff ff ff ff ff 00 00 00 01 00 00 00 00`)),
  );
});

Deno.test("MessageWriter: sets of one template share a header; full means -1, never split", () => {
  const w = new MessageWriter();
  assert.equal(w.reserve(256, 52), 20);
  assert.equal(w.reserve(256, 52), 72);
  assert.equal(w.reserve(258, 76), 128); // a new set: 124 + 4
  assert.equal(w.records, 3);
  let n = 3;
  while (w.reserve(258, 76) >= 0) n++;
  assert.ok(w.length <= MAX_MESSAGE_BYTES);
  assert.ok(w.length + 76 > MAX_MESSAGE_BYTES);
  const m = w.take();
  assert.equal(m.length, 16 + 4 + 2 * 52 + 4 + (n - 2) * 76);
  const v = new DataView(m.buffer);
  assert.equal(v.getUint16(16 + 2), 4 + 2 * 52);
  assert.equal(v.getUint16(16 + 4 + 2 * 52 + 2), 4 + (n - 2) * 76);
  assert.ok(w.empty);
  assert.equal(w.records, 0);
  // A record limit, as a queue of few records needs.
  const small = new MessageWriter(MAX_MESSAGE_BYTES, 2);
  assert.ok(small.reserve(256, 52) >= 0 && small.reserve(256, 52) >= 0);
  assert.equal(small.reserve(256, 52), -1);
  assert.equal(small.appendSet(new Uint8Array(2000)), false);
  assert.throws(() => new MessageWriter(10), RangeError);
  assert.throws(() => new MessageWriter(70000), RangeError);
});

Deno.test("property: any mix of records packs into messages of ≤ 1400 bytes that parse back", () => {
  const flow = fc.record({
    family: fc.constantFrom(4 as const, 6 as const),
    egress: fc.boolean(),
    proto: fc.constantFrom(6, 17, 1, 58, 47),
    sport: fc.integer({ min: 0, max: 65535 }),
    dport: fc.integer({ min: 0, max: 65535 }),
    ifindex: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    a: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    b: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    octets: fc.maxSafeNat(),
    packets: fc.maxSafeNat(),
    start: fc.integer({ min: 0, max: 2 ** 42 }),
    length: fc.integer({ min: 0, max: 2 ** 30 }),
    flags: fc.integer({ min: 0, max: 255 }),
    reason: fc.constantFrom(1, 2, 3, 4, 5) as fc.Arbitrary<1 | 2 | 3 | 4 | 5>,
  });
  fc.assert(
    fc.property(fc.array(flow, { maxLength: 120 }), (flows) => {
      const c = new Collector();
      c.parse(headed([templateSet(FLOW_TEMPLATES)]));
      const w = new MessageWriter();
      const messages: Uint8Array[] = [];
      const keyBuf = new Uint8Array(FLOW_KEY.size);
      for (const f of flows) {
        keyBuf.fill(0);
        keyBuf.set(f.a.subarray(0, f.family === 4 ? 4 : 16), K.saddr);
        keyBuf.set(f.b.subarray(0, f.family === 4 ? 4 : 16), K.daddr);
        new DataView(keyBuf.buffer).setUint16(K.sport, f.sport);
        new DataView(keyBuf.buffer).setUint16(K.dport, f.dport);
        new DataView(keyBuf.buffer).setUint32(K.ifindex, f.ifindex, true);
        keyBuf[K.proto] = f.proto;
        keyBuf[K.family] = f.family;
        const id = flowTemplateId(f.family, f.egress), size = FLOW_RECORD_BYTES[f.family];
        let at = w.reserve(id, size);
        if (at < 0) {
          messages.push(w.take());
          at = w.reserve(id, size);
        }
        writeFlowRecord(w, at, keyBuf, 0, K, {
          octets: f.octets,
          packets: f.packets,
          startMs: f.start,
          endMs: f.start + f.length,
          tcpFlags: f.flags,
          endReason: f.reason,
          egress: f.egress,
        });
      }
      if (!w.empty) messages.push(w.take());
      const got = messages.flatMap((m) => {
        assert.ok(m.length <= MAX_MESSAGE_BYTES);
        writeHeader(m, 0, 0, 1);
        return c.parse(m).sets.flatMap((s) => s.records!);
      });
      assert.equal(got.length, flows.length);
      got.forEach((r, i) => {
        const f = flows[i];
        const icmp = f.proto === 1 || f.proto === 58;
        assert.equal(r.get(1), f.octets);
        assert.equal(r.get(2), f.packets);
        assert.equal(r.get(152), f.start);
        assert.equal(r.get(153), f.start + f.length);
        assert.equal(r.get(7), icmp ? 0 : f.sport);
        assert.equal(r.get(11), icmp ? ((f.sport & 255) << 8) | (f.dport & 255) : f.dport);
        assert.equal(r.get(f.egress ? 14 : 10), f.ifindex);
        assert.equal(r.get(61), f.egress ? 1 : 0);
        assert.equal(r.get(136), f.reason);
        assert.equal(r.get(6), f.flags);
      });
    }),
    { numRuns: 200 },
  );
});

Deno.test("template ids are stable (collectors cache them across restarts)", () => {
  assert.deepEqual(TEMPLATE_ID, {
    ipv4Ingress: 256,
    ipv4Egress: 257,
    ipv6Ingress: 258,
    ipv6Egress: 259,
    sampling: 260,
  });
});
