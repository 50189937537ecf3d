import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import fc from "fast-check";
import { hmacSha256, macEqual } from "../../src/mesh/hmac.ts";
import { prng } from "../../scripts/mesh_sim.ts";
import {
  type Datagram,
  decode,
  decodeGossip,
  decodeHello,
  decodeProbe,
  decodeProbeRequest,
  type DropReason,
  encode,
  encodeGossip,
  encodeHello,
  encodeProbe,
  encodeProbeRequest,
  type Header,
  HEADER_BYTES,
  MAC_BYTES,
  MAGIC,
  MAX_DATAGRAM,
  MAX_PAYLOAD,
  type MemberInfo,
  MsgType,
  type MsgTypeName,
  nodeIdBytes,
  nodeIdHex,
  ReplayWindow,
  VERSION,
} from "../../src/mesh/protocol.ts";

const KEY = new TextEncoder().encode("the shared mesh key, 32 bytes ok");
const OTHER_KEY = new TextEncoder().encode("the shared mesh key, 32 bytes oK");
const ID_A = "00112233445566778899aabbccddeeff";
const ID_B = "fedcba98765432100123456789abcdef";

function header(type: MsgTypeName, seq = 1_700_000_000_000_000n): Header {
  return { type, sender: ID_A, seq, timestampNs: 1_700_000_000_123_456_789n };
}

function accepted(r: Datagram | DropReason): Datagram {
  assert.equal(typeof r, "object", `dropped: ${String(r)}`);
  return r as Datagram;
}

function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

/** Replaces the MAC of a (modified) datagram with a correct one. */
function resign(b: Uint8Array, key = KEY): Uint8Array {
  const out = b.slice();
  out.set(hmac(key, out.subarray(0, out.length - MAC_BYTES)), out.length - MAC_BYTES);
  return out;
}

function member(i: number, over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    id: i.toString(16).padStart(32, "0"),
    name: `node-${i}`,
    mesh: `10.0.${i >> 8 & 255}.${i & 255}:5000`,
    metrics: `10.0.${i >> 8 & 255}.${i & 255}:9100`,
    incarnation: i * 3,
    state: (["alive", "suspect", "dead", "left"] as const)[i % 4],
    ...over,
  };
}

// ---- header and datagram -------------------------------------------------------------------

Deno.test("constants describe the documented layout", () => {
  assert.equal(MAGIC, 0x5830);
  assert.equal(VERSION, 1);
  assert.equal(HEADER_BYTES, 40);
  assert.equal(MAC_BYTES, 32);
  assert.equal(MAX_DATAGRAM, 1200);
  assert.equal(MAX_PAYLOAD, 1128);
  assert.deepEqual(MsgType, {
    hello: 1,
    probe: 2,
    ack: 3,
    probeRequest: 4,
    gossip: 5,
    leave: 6,
    update: 7,
    sync: 8,
  });
});

Deno.test("node ids convert between hex and bytes", () => {
  const b = nodeIdBytes(ID_A);
  assert.equal(b.length, 16);
  assert.equal(b[0], 0x00);
  assert.equal(b[15], 0xff);
  assert.equal(nodeIdHex(b), ID_A);
  for (const bad of ["", ID_A.slice(1), ID_A + "0", ID_A.toUpperCase(), "g".repeat(32)]) {
    assert.throws(() => nodeIdBytes(bad), Error, bad);
  }
});

Deno.test("encode lays out header, payload and MAC big-endian", () => {
  const payload = Uint8Array.of(9, 8, 7);
  const h = header("probe", 0x0102030405060708n);
  const b = encode(KEY, h, payload);
  assert.equal(b.length, HEADER_BYTES + 3 + MAC_BYTES);
  const v = new DataView(b.buffer);
  assert.equal(b[0], 0x58); // "X"
  assert.equal(b[1], 0x30); // "0"
  assert.equal(b[2], 1);
  assert.equal(b[3], MsgType.probe);
  assert.equal(v.getUint16(4), 0, "flags/reserved are zero");
  assert.equal(v.getUint16(6), 3);
  assert.equal(nodeIdHex(b.subarray(8, 24)), ID_A);
  assert.deepEqual([...b.subarray(24, 32)], [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(v.getBigUint64(32), h.timestampNs);
  assert.deepEqual([...b.subarray(40, 43)], [9, 8, 7]);
  assert.deepEqual(b.subarray(43), hmac(KEY, b.subarray(0, 43)));
});

Deno.test("every message type round-trips through encode and decode", () => {
  for (const type of Object.keys(MsgType) as MsgTypeName[]) {
    for (const payload of [new Uint8Array(0), Uint8Array.of(1, 2, 3)]) {
      const h = header(type);
      const d = accepted(decode(KEY, encode(KEY, h, payload)));
      assert.deepEqual(d, { ...h, payload });
    }
  }
});

Deno.test("header extremes round-trip", () => {
  const h: Header = {
    type: "leave",
    sender: "ff".repeat(16),
    seq: 0xffff_ffff_ffff_ffffn,
    timestampNs: 0n,
  };
  assert.deepEqual(accepted(decode(KEY, encode(KEY, h, new Uint8Array(0)))), {
    ...h,
    payload: new Uint8Array(0),
  });
});

Deno.test("decode of a subarray view with an offset", () => {
  const b = encode(KEY, header("hello"), Uint8Array.of(5));
  const big = new Uint8Array(b.length + 10);
  big.set(b, 7);
  const d = accepted(decode(KEY, big.subarray(7, 7 + b.length)));
  assert.deepEqual(d.payload, Uint8Array.of(5));
  assert.equal(d.sender, ID_A);
});

Deno.test("the decoded payload is a copy", () => {
  const b = encode(KEY, header("gossip"), Uint8Array.of(1, 2));
  const d = accepted(decode(KEY, b));
  b[HEADER_BYTES] = 99;
  assert.deepEqual(d.payload, Uint8Array.of(1, 2));
});

Deno.test("the largest payload fits exactly in MAX_DATAGRAM; one more byte is refused", () => {
  const max = new Uint8Array(MAX_PAYLOAD).fill(0xab);
  const b = encode(KEY, header("gossip"), max);
  assert.equal(b.length, MAX_DATAGRAM);
  assert.deepEqual(accepted(decode(KEY, b)).payload, max);
  assert.throws(
    () => encode(KEY, header("gossip"), new Uint8Array(MAX_PAYLOAD + 1)),
    RangeError,
  );
});

Deno.test("encode refuses a malformed sender id", () => {
  assert.throws(() => encode(KEY, { ...header("hello"), sender: "xyz" }, new Uint8Array(0)));
});

// ---- drops ---------------------------------------------------------------------------------

Deno.test("decode: truncated below header + MAC", () => {
  const b = encode(KEY, header("hello"), new Uint8Array(0));
  assert.equal(b.length, HEADER_BYTES + MAC_BYTES);
  for (const n of [0, 1, 2, 39, 40, 71]) {
    assert.equal(decode(KEY, b.subarray(0, n)), "truncated", `length ${n}`);
  }
  accepted(decode(KEY, b));
});

Deno.test("decode: oversized above 1200 bytes, even when otherwise well-formed", () => {
  const b = new Uint8Array(MAX_DATAGRAM + 1);
  const v = new DataView(b.buffer);
  v.setUint16(0, MAGIC);
  b[2] = VERSION;
  b[3] = MsgType.gossip;
  v.setUint16(6, MAX_DATAGRAM + 1 - HEADER_BYTES - MAC_BYTES);
  assert.equal(decode(KEY, resign(b)), "oversized");
  assert.equal(decode(KEY, new Uint8Array(65536)), "oversized");
});

Deno.test("decode: bad magic", () => {
  const b = encode(KEY, header("hello"), Uint8Array.of(1));
  for (const [i, x] of [[0, 0x59], [1, 0x31], [0, 0x30]] as const) {
    const c = b.slice();
    c[i] = x;
    assert.equal(decode(KEY, resign(c)), "bad_magic");
  }
});

Deno.test("decode: unknown version (2, 0, 255)", () => {
  const b = encode(KEY, header("hello"), Uint8Array.of(1));
  for (const version of [2, 0, 255]) {
    const c = b.slice();
    c[2] = version;
    assert.equal(decode(KEY, resign(c)), "unknown_version", `version ${version}`);
    assert.equal(decode(KEY, c), "unknown_version", "checked before the MAC");
  }
});

Deno.test("decode: unknown type, with a valid MAC over it", () => {
  const b = encode(KEY, header("hello"), Uint8Array.of(1));
  for (const type of [0, 9, 255]) {
    const c = b.slice();
    c[3] = type;
    assert.equal(decode(KEY, resign(c)), "unknown_type", `type ${type}`);
    // without a valid MAC it is not trusted enough to tell
    assert.equal(decode(KEY, c), "bad_mac", `type ${type}, stale MAC`);
  }
});

Deno.test("decode: length field not matching the datagram", () => {
  const b = encode(KEY, header("probe"), new Uint8Array(10));
  const v = new DataView(b.buffer);
  for (const len of [0, 9, 11, 0xffff]) {
    const c = b.slice();
    new DataView(c.buffer).setUint16(6, len);
    assert.equal(decode(KEY, c), "bad_length", `length ${len}`);
    assert.equal(decode(KEY, resign(c)), "bad_length", `length ${len}, re-signed`);
  }
  assert.equal(v.getUint16(6), 10);
  // an extra byte appended or one removed
  const longer = new Uint8Array(b.length + 1);
  longer.set(b);
  assert.equal(decode(KEY, longer), "bad_length");
  assert.equal(decode(KEY, b.subarray(0, b.length - 1)), "bad_length");
});

Deno.test("decode: flags/reserved bytes are ignored on receive (but covered by the MAC)", () => {
  const b = encode(KEY, header("hello"), Uint8Array.of(1));
  const c = b.slice();
  c[4] = 0x80;
  c[5] = 0x01;
  assert.equal(decode(KEY, c), "bad_mac");
  const d = accepted(decode(KEY, resign(c)));
  assert.equal(d.type, "hello");
  assert.deepEqual(d.payload, Uint8Array.of(1));
});

Deno.test("decode: any single flipped bit in header, payload or MAC is bad_mac", () => {
  const b = encode(KEY, header("gossip"), Uint8Array.of(1, 2, 3, 4, 5));
  // The bits whose change would be reported by an earlier check: magic, version, length.
  const earlier = new Set([0, 1, 2, 6, 7]);
  let flips = 0;
  for (let i = 0; i < b.length; i++) {
    if (earlier.has(i)) continue;
    for (let bit = 0; bit < 8; bit++) {
      const c = b.slice();
      c[i] ^= 1 << bit;
      assert.equal(decode(KEY, c), "bad_mac", `byte ${i} bit ${bit}`);
      flips++;
    }
  }
  assert.equal(flips, (b.length - earlier.size) * 8);
});

Deno.test("decode: bad_mac for a flip in each region (header, payload, MAC)", () => {
  const b = encode(KEY, header("ack"), new Uint8Array(16));
  for (
    const i of [3, 8, 30, 39, HEADER_BYTES, HEADER_BYTES + 15, b.length - MAC_BYTES, b.length - 1]
  ) {
    const c = b.slice();
    c[i] ^= 0x01;
    assert.equal(decode(KEY, c), "bad_mac", `byte ${i}`);
  }
});

Deno.test("decode: wrong key is bad_mac", () => {
  const b = encode(KEY, header("hello"), Uint8Array.of(1, 2));
  assert.equal(decode(OTHER_KEY, b), "bad_mac");
  assert.equal(decode(new Uint8Array(0), b), "bad_mac");
  accepted(decode(OTHER_KEY, encode(OTHER_KEY, header("hello"), Uint8Array.of(1, 2))));
});

Deno.test("decode: 2000 random buffers never throw and are never accepted", () => {
  const rand = prng(0x5830_0001);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 2000; i++) {
    const n = Math.floor(rand() * 1501); // 0..1500
    const b = new Uint8Array(n);
    for (let j = 0; j < n; j++) b[j] = Math.floor(rand() * 256);
    // Every other buffer gets a valid prefix so that the later checks are reached too.
    if (i % 2 === 1 && n >= 8) {
      const v = new DataView(b.buffer);
      v.setUint16(0, MAGIC);
      b[2] = VERSION;
      if (i % 4 === 3 && n >= HEADER_BYTES + MAC_BYTES) {
        v.setUint16(6, n - HEADER_BYTES - MAC_BYTES);
      }
    }
    let r: Datagram | DropReason;
    try {
      r = decode(KEY, b);
    } catch (e) {
      assert.fail(`buffer ${i} (length ${n}) threw ${e}`);
    }
    assert.equal(typeof r, "string", `buffer ${i} (length ${n}) was accepted`);
    counts[r as string] = (counts[r as string] ?? 0) + 1;
  }
  for (const reason of ["truncated", "oversized", "bad_magic", "bad_length", "bad_mac"]) {
    assert.ok(
      (counts[reason] ?? 0) > 0,
      `fuzzing never reached ${reason}: ${JSON.stringify(counts)}`,
    );
  }
});

// ---- replay window -------------------------------------------------------------------------

Deno.test("ReplayWindow: in order", () => {
  const w = new ReplayWindow();
  for (let s = 0n; s < 200n; s++) assert.equal(w.accept(s), true, `seq ${s}`);
  assert.equal(w.accept(199n), false);
});

Deno.test("ReplayWindow: large starting numbers (wall clock in µs)", () => {
  const w = new ReplayWindow();
  const start = 1_700_000_000_000_000n;
  assert.equal(w.accept(start), true);
  assert.equal(w.accept(start + 1n), true);
  assert.equal(w.accept(start), false);
  assert.equal(w.accept(0xffff_ffff_ffff_ffffn), true);
  assert.equal(w.accept(start + 2n), false);
});

Deno.test("ReplayWindow: out of order within 64 is accepted once", () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(100n), true);
  for (const s of [99n, 50n, 37n, 98n]) assert.equal(w.accept(s), true, `seq ${s}`);
  for (const s of [99n, 50n, 37n, 98n, 100n]) assert.equal(w.accept(s), false, `seq ${s} again`);
  assert.equal(w.accept(105n), true);
  assert.equal(w.accept(101n), true);
  assert.equal(w.accept(100n), false, "remembered after the window moved");
  assert.equal(w.accept(99n), false, "remembered after the window moved");
  assert.equal(w.accept(42n), true, "age 63");
  assert.equal(w.accept(41n), false, "age 64");
});

Deno.test("ReplayWindow: duplicates", () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(0n), true);
  assert.equal(w.accept(0n), false);
  assert.equal(w.accept(7n), true);
  assert.equal(w.accept(7n), false);
  assert.equal(w.accept(0n), false);
});

Deno.test("ReplayWindow: 64 or more below the highest is too old", () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(1000n), true);
  assert.equal(w.accept(936n), false, "exactly 64 below");
  assert.equal(w.accept(0n), false);
  assert.equal(w.accept(937n), true, "63 below");
  assert.equal(w.accept(937n), false);
});

Deno.test("ReplayWindow: jumps of 64 or more forget the old window", () => {
  for (const jump of [64n, 65n, 1000n, 1n << 40n]) {
    const w = new ReplayWindow();
    for (let s = 10n; s < 20n; s++) assert.equal(w.accept(s), true);
    const top = 19n + jump;
    assert.equal(w.accept(top), true, `jump ${jump}`);
    assert.equal(w.accept(top), false);
    assert.equal(w.accept(top - 1n), true, `jump ${jump}: just below`);
    assert.equal(w.accept(top - 63n), true, `jump ${jump}: age 63`);
    assert.equal(w.accept(top - 64n), false, `jump ${jump}: age 64`);
    assert.equal(w.accept(19n), false, `jump ${jump}: old highest`);
  }
});

Deno.test("ReplayWindow: a jump of less than 64 keeps the seen bits", () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(10n), true);
  assert.equal(w.accept(8n), true);
  assert.equal(w.accept(73n), true); // jump 63: 10 is now 63 below
  assert.equal(w.accept(10n), false);
  assert.equal(w.accept(9n), false, "64 below");
  assert.equal(w.accept(11n), true);
  assert.equal(w.accept(72n), true);
});

// ---- payloads ------------------------------------------------------------------------------

/** Every proper prefix of a valid payload (but `valid`) is cut short; a trailing byte is refused. */
function assertStrict(p: Uint8Array, dec: (p: Uint8Array) => unknown, valid: number[] = []) {
  for (let n = 0; n < p.length; n++) {
    if (valid.includes(n)) continue;
    assert.throws(() => dec(p.subarray(0, n)), RangeError, `prefix of ${n}/${p.length}`);
  }
  const longer = new Uint8Array(p.length + 1);
  longer.set(p);
  assert.throws(() => dec(longer), RangeError, "a trailing byte");
}

Deno.test("hello round-trips, including UTF-8 and 255-byte strings", () => {
  for (
    const m of [
      { name: "edge-1", metrics: "10.0.0.1:9100", incarnation: 0 },
      { name: "", metrics: "", incarnation: 0xffff_ffff },
      { name: "узел-Ω-🛰", metrics: "[fd00::1]:9100", incarnation: 42 },
      { name: "n".repeat(255), metrics: "m".repeat(255), incarnation: 7 },
    ]
  ) {
    const p = encodeHello(m);
    assert.deepEqual(decodeHello(p), m);
    assertStrict(p, decodeHello);
  }
});

Deno.test("hello layout: u8-length strings, then u32 incarnation", () => {
  const p = encodeHello({ name: "ab", metrics: "c", incarnation: 0x01020304 });
  assert.deepEqual([...p], [2, 0x61, 0x62, 1, 0x63, 1, 2, 3, 4]);
});

Deno.test("strings longer than 255 bytes are refused", () => {
  assert.throws(
    () => encodeHello({ name: "n".repeat(256), metrics: "", incarnation: 0 }),
    RangeError,
  );
  // 128 two-byte characters: 128 characters but 256 bytes
  assert.throws(
    () => encodeHello({ name: "é".repeat(128), metrics: "", incarnation: 0 }),
    RangeError,
  );
});

Deno.test("payload decoders refuse invalid UTF-8", () => {
  const bad = [
    [0xff],
    [0xc3], // lead byte without its continuation
    [0x80], // lone continuation
    [0xed, 0xa0, 0x80], // a UTF-16 surrogate
    [0xc0, 0xaf], // overlong "/"
  ];
  for (const s of bad) {
    const hello = Uint8Array.of(s.length, ...s, 0, 0, 0, 0, 0);
    assert.throws(() => decodeHello(hello), TypeError, `hello ${s}`);
    const req = Uint8Array.of(...nodeIdBytes(ID_B), s.length, ...s, ...new Uint8Array(16));
    assert.throws(() => decodeProbeRequest(req), TypeError, `probe-request ${s}`);
    const gossip = Uint8Array.of(1, ...nodeIdBytes(ID_B), s.length, ...s, 0, 0, 0, 0, 0, 0, 0);
    assert.throws(() => decodeGossip(gossip), TypeError, `gossip ${s}`);
  }
  // the same layouts with valid UTF-8 decode
  assert.equal(decodeHello(Uint8Array.of(2, 0xc3, 0xa9, 0, 0, 0, 0, 0)).name, "é");
});

Deno.test("probe round-trips without `about`", () => {
  const b = { probeSeq: 123n, sentNs: 1_700_000_000_000_000_001n };
  const p = encodeProbe(b);
  assert.equal(p.length, 16);
  assert.deepEqual(decodeProbe(p), b);
  assert.equal("about" in decodeProbe(p), false);
  assert.equal("incarnation" in decodeProbe(p), false);
  assertStrict(p, decodeProbe);
});

Deno.test("ack round-trips with `about` and incarnation", () => {
  const b = { probeSeq: 0xffff_ffff_ffff_ffffn, sentNs: 0n, about: ID_B, incarnation: 9 };
  const p = encodeProbe(b);
  assert.equal(p.length, 16 + 16 + 4);
  assert.deepEqual([...p.subarray(16, 32)], [...nodeIdBytes(ID_B)]);
  assert.deepEqual([...p.subarray(32)], [0, 0, 0, 9]);
  assert.deepEqual(decodeProbe(p), b);
  // its first 16 bytes are a complete probe/ack without `about`
  assertStrict(p, decodeProbe, [16]);
});

Deno.test("ack with `about` but no incarnation encodes incarnation 0", () => {
  const p = encodeProbe({ probeSeq: 1n, sentNs: 2n, about: ID_A });
  assert.deepEqual(decodeProbe(p), { probeSeq: 1n, sentNs: 2n, about: ID_A, incarnation: 0 });
});

Deno.test("probe payload lengths other than 16 and 36 are refused", () => {
  for (const n of [0, 15, 17, 20, 35, 37, 40]) {
    assert.throws(() => decodeProbe(new Uint8Array(n)), RangeError, `length ${n}`);
  }
  decodeProbe(new Uint8Array(16));
  decodeProbe(new Uint8Array(36));
});

Deno.test("probe-request round-trips", () => {
  for (const address of ["10.0.0.2:5000", "[fd00::2]:5000", ""]) {
    const b = { target: ID_B, address, probeSeq: 77n, sentNs: 1_700_000_000_999_000_000n };
    const p = encodeProbeRequest(b);
    assert.equal(p.length, 16 + 1 + new TextEncoder().encode(address).length + 16);
    assert.deepEqual(decodeProbeRequest(p), b);
    assertStrict(p, decodeProbeRequest);
  }
});

Deno.test("gossip round-trips every state", () => {
  const members = [0, 1, 2, 3, 4].map((i) => member(i));
  assert.deepEqual(
    new Set(members.map((m) => m.state)),
    new Set(["alive", "suspect", "dead", "left"]),
  );
  const { payload, count } = encodeGossip(members);
  assert.equal(count, 5);
  assert.equal(payload[0], 5);
  assert.deepEqual(decodeGossip(payload), members);
  assertStrict(payload, decodeGossip);
});

Deno.test("gossip layout of one member", () => {
  const m = member(1, { name: "a", mesh: "b", metrics: "c", incarnation: 0x0a0b0c0d });
  const { payload } = encodeGossip([m]);
  assert.deepEqual([...payload], [
    1,
    ...nodeIdBytes(m.id),
    1,
    0x61,
    1,
    0x62,
    1,
    0x63,
    0x0a,
    0x0b,
    0x0c,
    0x0d,
    1, // suspect
  ]);
});

Deno.test("gossip of no members", () => {
  const { payload, count } = encodeGossip([]);
  assert.equal(count, 0);
  assert.deepEqual([...payload], [0]);
  assert.deepEqual(decodeGossip(payload), []);
  assert.throws(() => decodeGossip(new Uint8Array(0)), RangeError);
});

Deno.test("gossip that does not fit in one datagram carries a prefix of the members", () => {
  const members = Array.from(
    { length: 100 },
    (_, i) => member(i, { name: `a-rather-long-node-name-${i}`.padEnd(40, "x") }),
  );
  const { payload, count } = encodeGossip(members);
  assert.ok(count > 0 && count < members.length, `count ${count}`);
  assert.ok(payload.length <= MAX_PAYLOAD);
  assert.equal(payload[0], count);
  assert.deepEqual(decodeGossip(payload), members.slice(0, count));
  // one more member would not have fitted
  const size = (m: MemberInfo) => encodeGossip([m]).payload.length - 1;
  assert.ok(payload.length + size(members[count]) > MAX_PAYLOAD);
  // and the payload is usable in a datagram
  const d = accepted(decode(KEY, encode(KEY, header("gossip"), payload)));
  assert.deepEqual(decodeGossip(d.payload), members.slice(0, count));
});

Deno.test("gossip count never exceeds 255 (the u8 count field)", () => {
  // The smallest member is 24 bytes (16 id + three empty strings + 4 + 1), so at most 46 fit
  // in MAX_PAYLOAD: the payload size limit is reached long before the 255 cap.
  const tiny = Array.from(
    { length: 300 },
    (_, i) => member(i, { name: "", mesh: "", metrics: "" }),
  );
  const { payload, count } = encodeGossip(tiny);
  assert.ok(count <= 255);
  assert.equal(count, Math.floor((MAX_PAYLOAD - 1) / 24));
  assert.equal(payload[0], count);
  assert.equal(payload.length, 1 + 24 * count);
  assert.deepEqual(decodeGossip(payload), tiny.slice(0, count));
  // A hand-made count of 255 decodes as far as the bytes go, then is cut short.
  const lying = payload.slice();
  lying[0] = 255;
  assert.throws(() => decodeGossip(lying), RangeError);
});

Deno.test("gossip decoding refuses an unknown member state", () => {
  const { payload } = encodeGossip([member(0)]);
  for (const state of [4, 255]) {
    const p = payload.slice();
    p[p.length - 1] = state;
    assert.throws(() => decodeGossip(p), RangeError, `state ${state}`);
  }
});

Deno.test("gossip skips a member whose strings cannot be encoded, and goes on", () => {
  const members = [member(1), member(2, { name: "n".repeat(256) }), member(3)];
  const { payload, count } = encodeGossip(members);
  assert.equal(count, 2);
  assert.deepEqual(decodeGossip(payload), [members[0], members[2]]);
});

Deno.test("hmacSha256 agrees with node:crypto for any key and data length (block edges included)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 130 }),
      fc.uint8Array({ minLength: 0, maxLength: 1300 }),
      (key, data) => {
        const want = new Uint8Array(createHmac("sha256", key).update(data).digest());
        assert.deepEqual(hmacSha256(key, data), want);
      },
    ),
    { numRuns: 500 },
  );
  const key = new Uint8Array(32).fill(9);
  for (let n = 0; n <= 200; n++) {
    const data = new Uint8Array(n).map((_, i) => i * 7);
    assert.deepEqual(
      hmacSha256(key, data),
      new Uint8Array(createHmac("sha256", key).update(data).digest()),
      `length ${n}`,
    );
  }
});

Deno.test("macEqual: equal only for the same bytes and length", () => {
  const a = new Uint8Array(32).fill(1);
  assert.equal(macEqual(a, a.slice()), true);
  for (let i = 0; i < 32; i++) {
    const b = a.slice();
    b[i] ^= 0x80;
    assert.equal(macEqual(a, b), false);
  }
  assert.equal(macEqual(a, a.subarray(0, 31)), false);
});
