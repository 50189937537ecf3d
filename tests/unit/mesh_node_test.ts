/**
 * The mesh node under hostile datagrams, fed straight into the real node code (no sockets):
 * replays from another time, poisoned gossip, member floods, probe requests that point
 * elsewhere, and property-based fuzzing (fast-check) of all of it. Nothing may throw out of the
 * node, nothing may grow without bound, and every refusal is counted with its reason.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { MeshNode, type MeshOptions } from "../../src/mesh/node.ts";
import {
  decodeGossip,
  encode,
  encodeGossip,
  encodeHello,
  encodeProbeRequest,
  type MemberInfo,
  type MsgTypeName,
} from "../../src/mesh/protocol.ts";
import { parseCidr } from "../../src/net/cidr.ts";
import { defaultMesh } from "../../scripts/mesh_sim.ts";

const KEY = new Uint8Array(32).fill(7);
const SELF = "00000000000000000000000000000001";
const ATTACKER = "0000000000000000000000000000000a";
const NETWORK = "198.18.0.0/24";

interface Sent {
  to: string;
  bytes: Uint8Array;
}

/** A node on the 198.18.0.0/24 test network whose datagrams go to `sent` instead of a socket. */
function node(o: Partial<MeshOptions> = {}): { n: MeshNode; sent: Sent[] } {
  const sent: Sent[] = [];
  const n = new MeshNode({
    listen: "198.18.0.1:5000",
    key: KEY,
    peers: [],
    id: SELF,
    name: "self",
    metrics: "198.18.0.1:9477",
    ...defaultMesh(),
    networks: [parseCidr(NETWORK)],
    maxMembers: 64,
    transport: (bytes, host, port) => sent.push({ to: `${host}:${port}`, bytes }),
    ...o,
  });
  return { n, sent };
}

let seq = BigInt(Date.now()) * 1000n;
/** A datagram from `sender` signed with the mesh key (a key holder), stamped `atMs`. */
function datagram(
  type: MsgTypeName,
  payload: Uint8Array,
  sender = ATTACKER,
  atMs = Date.now(),
  key = KEY,
): Uint8Array {
  return encode(key, { type, sender, seq: ++seq, timestampNs: BigInt(atMs) * 1_000_000n }, payload);
}

const hello = (name: string, metrics: string) => encodeHello({ name, metrics, incarnation: 1 });
const member = (i: number, o: Partial<MemberInfo> = {}): MemberInfo => ({
  id: (0x1000 + i).toString(16).padStart(32, "0"),
  name: `m${i}`,
  mesh: `198.18.0.${(i % 250) + 2}:5000`,
  metrics: `198.18.0.${(i % 250) + 2}:9477`,
  incarnation: 1,
  state: "alive",
  ...o,
});

const dropped = (n: MeshNode) => n.snapshot().dropped;
/** The attacker, a key holder, says hello from 198.18.0.77: a member whose lists are believed. */
const join = (n: MeshNode) =>
  n.receive(datagram("hello", hello("attacker", "198.18.0.77:9477")), "198.18.0.77:5000");
const members = (n: MeshNode) => n.snapshot().peers.map((p) => p.name).sort();

Deno.test("mesh node: a datagram captured a month ago is refused as stale, also by a node that just started", () => {
  const monthAgo = Date.now() - 30 * 24 * 3600 * 1000;
  const old = datagram("hello", hello("x", "198.18.0.9:9477"), ATTACKER, monthAgo);
  const { n } = node(); // a fresh node: no replay window remembers anything
  n.receive(old, "203.0.113.66:5000");
  assert.deepEqual(members(n), []);
  assert.equal(dropped(n).stale, 1);
  // From the future (a skewed or forged clock) too.
  n.receive(
    datagram("hello", hello("x", "198.18.0.9:9477"), ATTACKER, Date.now() + 60_000),
    "198.18.0.9:5000",
  );
  assert.equal(dropped(n).stale, 2);
  // A fresh one from the member's own address is accepted, and a replay of it is not.
  const fresh = datagram("hello", hello("x", "198.18.0.9:9477"));
  n.receive(fresh, "198.18.0.9:5000");
  n.receive(fresh, "198.18.0.66:5000");
  assert.deepEqual(members(n), ["x"]);
  assert.equal(n.snapshot().peers[0].mesh, "198.18.0.9:5000");
  assert.equal(dropped(n).replay, 1);
});

Deno.test("mesh node: poisoned gossip entries are refused one by one, counted, and never break a tick", () => {
  const { n, sent } = node();
  const bad: MemberInfo[] = [
    member(1, { mesh: "" }),
    member(2, { mesh: "not-host-port" }),
    member(3, { mesh: "metadata.example:80" }),
    member(4, { metrics: "169.254.169.254:80" }),
    member(5, { mesh: "203.0.113.5:5000" }),
    member(6, { name: "" }),
    member(7, { name: "x".repeat(65) }),
    member(8, { name: "bell\u0007" }),
    member(9, { mesh: "[::1]:99999" }),
  ];
  const good = member(10);
  join(n);
  n.receive(datagram("gossip", encodeGossip([...bad, good]).payload), "198.18.0.77:5000");
  assert.deepEqual(members(n), ["attacker", "m10"]);
  const d = dropped(n);
  assert.equal(d.bad_member, 7, JSON.stringify(d));
  assert.equal(d.outside_networks, 2, JSON.stringify(d));
  // Every tick works on what was kept, and nothing is ever sent outside the network.
  n.probe();
  n.gossip();
  assert.deepEqual(
    n.peerAddresses(),
    new Map([["198.18.0.12", good.id], ["198.18.0.77", ATTACKER]]),
  );
  assert.ok(n.meshPorts().has(5000));
  for (const s of sent) assert.match(s.to, /^198\.18\.0\.\d+:\d+$/);
});

Deno.test("mesh node: a thousand gossip datagrams from one key holder keep at most max_members", () => {
  // Long timeouts: on a busy machine the loop below may take longer than suspect_after, and a
  // suspect member's indirect probes would then count as more sends.
  const { n, sent } = node({ maxMembers: 64, suspectAfterMs: 60_000, deadAfterMs: 90_000 });
  join(n);
  for (let d = 0; d < 1000; d++) {
    const batch = Array.from({ length: 10 }, (_, i) => member(d * 10 + i));
    n.receive(datagram("gossip", encodeGossip(batch).payload), "198.18.0.77:5000");
  }
  const snap = n.snapshot();
  assert.equal(snap.peers.length, 64);
  assert.ok((snap.dropped.members_full ?? 0) >= 9000, JSON.stringify(snap.dropped));
  sent.length = 0;
  n.probe();
  assert.ok(sent.length <= 64, `one probe per kept member, not per gossiped one (${sent.length})`);
});

Deno.test("mesh node: a probe request is served only for a known member, at the address we know", () => {
  const { n, sent } = node();
  const known = member(1);
  join(n);
  n.receive(datagram("gossip", encodeGossip([known]).payload), "198.18.0.77:5000");
  sent.length = 0;
  const request = (target: string, address: string) =>
    datagram("probeRequest", encodeProbeRequest({ target, address, probeSeq: 1n, sentNs: 1n }));
  n.receive(request("ffffffffffffffffffffffffffffffff", "192.0.2.80:80"), "198.18.0.77:5000");
  assert.equal(sent.length, 0);
  assert.equal(dropped(n).unknown_target, 1);
  n.receive(request(known.id, "192.0.2.80:80"), "198.18.0.77:5000");
  assert.deepEqual(sent.map((s) => s.to), [known.mesh]);
});

Deno.test("mesh node: a timer that throws is counted, not fatal", async () => {
  const { n } = node({
    probeIntervalMs: 10,
    gossipIntervalMs: 10,
    transport: () => {
      throw new Error("network down");
    },
  });
  n.receive(datagram("gossip", encodeGossip([member(1)]).payload), "198.18.0.77:5000");
  await n.start();
  await new Promise((r) => setTimeout(r, 50));
  await n.stop();
  assert.ok((dropped(n).send_failed ?? 0) > 0);
});

// ---------------------------------------------------------------- property-based fuzzing

/** Sends `b` and checks the node's invariants: no throw, bounded, every datagram accounted. */
function feed(n: MeshNode, b: Uint8Array, from = "198.18.0.77:5000") {
  const before = n.snapshot();
  n.receive(b, from);
  const after = n.snapshot();
  assert.equal(after.datagrams.received, before.datagrams.received + 1);
  assert.ok(after.peers.length <= n.o.maxMembers);
  for (const [reason, count] of Object.entries(after.dropped)) {
    assert.ok(Number.isInteger(count) && count > 0, reason);
  }
}

const dropTotal = (n: MeshNode) => Object.values(dropped(n)).reduce((a, b) => a + b, 0);

Deno.test("mesh fuzz: random bytes never throw and are all dropped with a reason", () => {
  const { n } = node();
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 1400 }), (b) => {
      const drops = dropTotal(n);
      feed(n, b);
      assert.equal(dropTotal(n), drops + 1, "a random datagram is one counted drop");
    }),
    { numRuns: 2000 },
  );
  assert.deepEqual(members(n), []);
});

Deno.test("mesh fuzz: every single-byte mutation of valid datagrams is refused, and counted", () => {
  const { n } = node();
  const valid = [
    datagram("hello", hello("h", "198.18.0.5:9477")),
    datagram("gossip", encodeGossip([member(1), member(2)]).payload),
    datagram(
      "probeRequest",
      encodeProbeRequest({ target: member(1).id, address: "1.2.3.4:5", probeSeq: 1n, sentNs: 1n }),
    ),
  ];
  fc.assert(
    fc.property(
      fc.constantFrom(...valid),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (d, at, xor) => {
        const b = d.slice();
        b[at % b.length] ^= xor;
        const drops = dropTotal(n);
        feed(n, b);
        assert.equal(dropTotal(n), drops + 1);
      },
    ),
    { numRuns: 3000 },
  );
  assert.deepEqual(members(n), []);
});

Deno.test("mesh fuzz: hostile payloads with a valid MAC never throw, never grow past the bounds", () => {
  const { n, sent } = node({ maxMembers: 16 });
  const type = fc.constantFrom<MsgTypeName>(
    "hello",
    "probe",
    "ack",
    "probeRequest",
    "gossip",
    "leave",
    "update",
    "sync",
  );
  const addr = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 70000 }))
      .map(([h, p]) => `198.18.0.${h}:${p}`),
    fc.constantFrom("169.254.169.254:80", "[::1]:1", "a:b:c", ":", "198.18.0.1:5000"),
  );
  const gossip = fc.array(
    fc.record({
      id: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) =>
        Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")
      ),
      name: fc.string({ maxLength: 80 }),
      mesh: addr,
      metrics: addr,
      incarnation: fc.nat(),
      state: fc.constantFrom<MemberInfo["state"]>("alive", "suspect", "dead", "left"),
    }),
    { maxLength: 12 },
  ).map((ms) => {
    try {
      return encodeGossip(ms).payload;
    } catch {
      return new Uint8Array([0]);
    }
  });
  const payload = fc.oneof(fc.uint8Array({ maxLength: 1100 }), gossip);
  fc.assert(
    fc.property(type, payload, addr, (t, p, from) => {
      const ok = /^198\.18\.0\.\d{1,3}:\d{1,5}$/.test(from) ? from : "198.18.0.77:5000";
      feed(n, datagram(t, p, crypto.randomUUID().replaceAll("-", "")), ok);
    }),
    { numRuns: 3000 },
  );
  n.probe();
  n.swim();
  n.swim();
  n.gossip();
  n.sync();
  assert.ok(n.snapshot().peers.length <= 16);
  for (const s of sent) {
    assert.match(s.to, /^198\.18\.0\.\d+:\d+$/, "never sent outside the network");
  }
});

Deno.test("mesh node: a claim that it is suspect is refuted with a higher incarnation; a claim about a peer it hears well is ignored", () => {
  const { n, sent } = node({ peers: ["198.18.0.9:5000"] });
  const peer = member(9, { mesh: "198.18.0.9:5000" });
  n.receive(datagram("hello", hello("m9", peer.metrics), peer.id), peer.mesh);
  const self: MemberInfo = {
    id: SELF,
    name: "self",
    mesh: "198.18.0.1:5000",
    metrics: "198.18.0.1:9477",
    incarnation: 4_000_000_000, // above the wall clock's seconds: the node's own is lower
    state: "suspect",
  };
  // Another key holder says that we are suspect and that our configured peer (just heard) is dead.
  const claims = encodeGossip([self, { ...peer, incarnation: 1, state: "dead" }]).payload;
  join(n);
  n.receive(datagram("update", claims), "198.18.0.77:5000");
  assert.equal(n.snapshot().peers.find((p) => p.name === "m9")?.state, "alive");
  sent.length = 0;
  n.gossip();
  const refutations = sent.filter((s) => s.bytes[3] === 7).map((s) =>
    decodeGossip(s.bytes.subarray(40, s.bytes.length - 32))
  );
  assert.ok(refutations.length > 0, "the refutation goes out");
  const mine = refutations[0].find((m) => m.id === SELF);
  assert.equal(mine?.state, "alive");
  assert.equal(mine?.incarnation, 4_000_000_001);
});

Deno.test("mesh node: a list from a key holder that is no member is refused, and a member's list replayed is dropped", () => {
  const { n, sent } = node();
  const c = member(3);
  n.receive(datagram("hello", hello("m3", c.metrics), c.id), c.mesh);
  // A non-member's update, which does not name its sender: no replay window could check it.
  const claim = datagram("update", encodeGossip([{ ...c, state: "suspect" }]).payload);
  sent.length = 0;
  for (let i = 0; i < 3; i++) n.receive(claim, "198.18.0.77:5000");
  assert.equal(n.snapshot().peers.find((p) => p.name === "m3")?.state, "alive");
  assert.equal(dropped(n).unknown_sender, 3);
  assert.ok(sent.every((s) => s.bytes[3] === 1 && s.to === "198.18.0.77:5000"), "hello back");
  // Once a member, its list counts once; the same datagram again is a replay.
  join(n);
  const again = datagram(
    "update",
    encodeGossip([{ ...c, incarnation: 2, state: "suspect" }]).payload,
  );
  n.receive(again, "198.18.0.77:5000");
  n.receive(again, "198.18.0.77:5000");
  assert.equal(dropped(n).replay, 1);
});
