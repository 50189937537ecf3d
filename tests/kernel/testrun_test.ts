/**
 * Crafted frames through the XDP and TC programs with BPF_PROG_TEST_RUN on the real kernel,
 * with exact counters and flow entries. Nothing is attached and no namespace is made: under
 * test-run the interface is the loopback (ifindex 1) and the hook is the program's own.
 */
import assert from "node:assert/strict";
import {
  CLASSES,
  type ClassName,
  HOOK_NAMES,
  type HookName,
  MALFORMED_REASONS,
  type MalformedReason,
} from "../../ffi/layout.ts";
import {
  type Counter,
  type IfaceStats,
  readFlows,
  readIfaceStats,
} from "../../src/collect/decode.ts";
import type { Flow, FlowSnapshot } from "../../src/flows/key.ts";
import { check, KernelError } from "../../src/datapath/errors.ts";
import { FlowDatapath } from "../../src/datapath/flow.ts";
import { vmlinuxBtf } from "../../src/datapath/signals.ts";
import { loadLibbpf, OPTS, opts as libbpfOpts, setPtr } from "../../ffi/libbpf.ts";
import {
  arp,
  type Bytes,
  cut,
  dot1ad,
  dot1q,
  eth,
  ETH_P,
  type Ext,
  icmp,
  icmp6,
  IPPROTO,
  ipv4,
  type Ipv4Options,
  ipv6,
  type Ipv6Options,
  payload,
  tcp,
  TCP_FLAGS,
  udp,
  V4,
  V6,
} from "./frames.ts";

const LO = 1;
const XDP_PASS = 2;
const TC_ACT_UNSPEC = -1;
const { syn: SYN, ack: ACK, psh: PSH, fin: FIN } = TCP_FLAGS;
/** Flow directions: from a to b, and back. */
const A4 = { family: 4, saddr: V4.a, daddr: V4.b } as const;
const B4 = { family: 4, saddr: V4.b, daddr: V4.a } as const;
const A6 = { family: 6, saddr: V6.a, daddr: V6.b } as const;
const B6 = { family: 6, saddr: V6.b, daddr: V6.a } as const;

const v4 = (proto: number, body: Uint8Array, o?: Ipv4Options) =>
  eth(ETH_P.ipv4, ipv4(proto, body, o));
const v6 = (next: number, body: Uint8Array, o?: Ipv6Options) =>
  eth(ETH_P.ipv6, ipv6(next, body, o));
const opts = (n: number, type: "hop" | "dest" = "dest"): Ext[] =>
  Array.from({ length: n }, () => ({ type }));

/**
 * A fresh datapath whose counters for the loopback (where test-run runs) have a slot of their
 * own, as attach() gives each interface.
 */
function datapath(): FlowDatapath {
  const dp = new FlowDatapath();
  try {
    dp.track(LO);
  } catch (e) {
    dp.close();
    throw e;
  }
  return dp;
}

/** Runs a frame `repeat` times; every frame passes: XDP_PASS, TC_ACT_UNSPEC. */
function run(dp: FlowDatapath, hook: HookName, frame: Bytes, repeat = 1): void {
  const { retval } = dp[hook].testRun(frame, repeat);
  assert.equal(retval, hook === "xdp" ? XDP_PASS : TC_ACT_UNSPEC, `return code of ${hook}`);
}

function runAll(dp: FlowDatapath, frame: Bytes, repeat = 1): void {
  for (const hook of HOOK_NAMES) run(dp, hook, frame, repeat);
}

/** One hook's counters; anything not named is 0. */
interface Counts {
  classes?: Partial<Record<ClassName, [packets: number, bytes: number]>>;
  malformed?: Partial<Record<MalformedReason, number>>;
  fragments?: number;
  vlanTagged?: number;
}

/** One flow entry on the loopback; ports 0, flags 0 and not a fragment unless named. */
interface FlowWant {
  hook: HookName;
  family: 4 | 6;
  proto: number;
  saddr: string;
  daddr: string;
  sport?: number;
  dport?: number;
  packets: number;
  bytes: number;
  tcpFlags?: number;
  fragment?: boolean;
}

type FlowFields = Omit<Flow, "firstSeenNs" | "lastSeenNs">;

const flowId = (f: FlowFields) =>
  [f.hook, f.family, f.proto, f.saddr, f.daddr, f.sport, f.dport].join(" ");
const byId = (a: FlowFields, b: FlowFields) => flowId(a) < flowId(b) ? -1 : 1;

/** The same flows on every hook. */
function onAllHooks(flows: Omit<FlowWant, "hook">[]): FlowWant[] {
  return HOOK_NAMES.flatMap((hook) => flows.map((f) => ({ ...f, hook })));
}

/**
 * Asserts the whole state: the loopback's counters are exactly `counts` per hook (a hook not
 * named counted nothing), no other interface counted anything, and the flows (table plus flow
 * cache) are exactly `flows`. Each hook's flowsCreated and eventsSent equal its number of
 * flows; nothing failed, nothing was suppressed or lost.
 */
function expectState(
  dp: FlowDatapath,
  counts: Partial<Record<HookName, Counts>>,
  flows: FlowWant[],
): void {
  const got = readFlows(dp);
  for (const f of got) {
    assert.ok(f.firstSeenNs > 0, `first_seen of ${flowId(f)}`);
    assert.ok(f.lastSeenNs >= f.firstSeenNs, `last_seen before first_seen in ${flowId(f)}`);
  }
  const strip = (f: FlowSnapshot): FlowFields => {
    const { firstSeenNs: _, lastSeenNs: __, interface: name, direction, ...rest } = f;
    assert.equal(name, String(f.ifindex)); // no name given: the ifindex stands in
    assert.equal(direction, f.hook === "tcEgress" ? "tx" : "rx");
    return rest;
  };
  const want: FlowFields[] = flows.map((f) => ({
    ifindex: LO,
    hook: f.hook,
    family: f.family,
    proto: f.proto,
    saddr: f.saddr,
    daddr: f.daddr,
    sport: f.sport ?? 0,
    dport: f.dport ?? 0,
    packets: f.packets,
    bytes: f.bytes,
    tcpFlags: f.tcpFlags ?? 0,
    fragment: f.fragment ?? false,
  }));
  assert.deepEqual(got.map(strip).sort(byId), want.sort(byId), "flow table");

  const stats = readIfaceStats(dp);
  assert.deepEqual(stats.filter((x) => x.ifindex !== LO), [], "counters outside the loopback");
  for (const hook of HOOK_NAMES) {
    const c = counts[hook] ?? {};
    const created = want.filter((f) => f.hook === hook).length;
    const expected: IfaceStats = {
      ifindex: LO,
      hook,
      classes: Object.fromEntries(CLASSES.map((name) => {
        const [packets, bytes] = c.classes?.[name] ?? [0, 0];
        return [name, { packets, bytes }];
      })) as Record<ClassName, Counter>,
      malformed: Object.fromEntries(
        MALFORMED_REASONS.map((r) => [r, c.malformed?.[r] ?? 0]),
      ) as Record<MalformedReason, number>,
      fragments: c.fragments ?? 0,
      vlanTagged: c.vlanTagged ?? 0,
      flowsCreated: created,
      flowInsertFailed: 0,
      eventsSent: created,
      eventsSuppressed: 0,
      eventsLost: 0,
    };
    const got = stats.filter((x) => x.hook === hook);
    assert.ok(got.length <= 1, `${got.length} records for ${hook} on the loopback`);
    // A hook that saw nothing may have an all-zero record or none.
    assert.deepEqual(got[0] ?? zeroLike(expected), expected, `counters of ${hook}`);
  }
}

/** The record a hook with no traffic has: the same identity, every number 0. */
function zeroLike(s: IfaceStats): IfaceStats {
  const zero = <K extends string>(r: Record<K, unknown>, v: () => unknown) =>
    Object.fromEntries(Object.keys(r).map((k) => [k, v()]));
  return {
    ...s,
    classes: zero(s.classes, () => ({ packets: 0, bytes: 0 })) as Record<ClassName, Counter>,
    malformed: zero(s.malformed, () => 0) as Record<MalformedReason, number>,
    fragments: 0,
    vlanTagged: 0,
    flowsCreated: 0,
    flowInsertFailed: 0,
    eventsSent: 0,
    eventsSuppressed: 0,
    eventsLost: 0,
  };
}

const allHooks = (c: Counts) => ({ xdp: c, tcIngress: c, tcEgress: c });

function assertKernelError(fn: () => unknown, errnoName: string, what: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KernelError, `${what}: expected a KernelError, got ${e}`);
    assert.equal(e.errnoName, errnoName, `${what}: ${e.message}`);
    return true;
  });
}

// ---- the builder itself -----------------------------------------------------------------------

Deno.test("frames: lengths, fields and checksum come out right", () => {
  const syn = v4(IPPROTO.tcp, tcp(40000, 80, SYN));
  assert.equal(syn.length, 14 + 20 + 20);
  assert.deepEqual([...syn.subarray(12, 16)], [0x08, 0x00, 0x45, 0x00]);
  assert.equal((syn[16] << 8) | syn[17], 40, "IPv4 total length");
  assert.equal(syn[14 + 20 + 13], SYN);
  // An IPv4 header with a correct checksum sums to 0xffff.
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += (syn[i] << 8) | syn[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  assert.equal(sum, 0xffff);

  const tagged = eth(ETH_P.ipv4, new Uint8Array(0), { tags: [dot1ad(200), dot1q(300)] });
  assert.deepEqual([...tagged.subarray(12)], [0x88, 0xa8, 0, 200, 0x81, 0, 1, 44, 8, 0]);

  const u = v6(IPPROTO.udp, udp(1, 2, payload(3)), {
    ext: [{ type: "hop" }, { type: "routing" }, { type: "frag", offset: 3, more: true }],
  });
  assert.equal(u.length, 14 + 40 + 8 + 24 + 8 + 11);
  assert.equal((u[18] << 8) | u[19], 8 + 24 + 8 + 11, "IPv6 payload length");
  assert.equal(u[20], IPPROTO.hop);
  assert.deepEqual([u[54], u[55]], [IPPROTO.routing, 0]);
  assert.deepEqual([u[62], u[63]], [IPPROTO.frag, 2]);
  assert.deepEqual([...u.subarray(86, 90)], [IPPROTO.udp, 0, 0, 3 << 3 | 1]);
  assert.deepEqual([...u.subarray(94, 98)], [0, 1, 0, 2]);

  const ah = v6(IPPROTO.tcp, new Uint8Array(0), { ext: [{ type: "ah" }] });
  assert.deepEqual([ah[54], ah[55], ah.length], [IPPROTO.tcp, 4, 14 + 40 + 24]);
  assert.equal(cut(u, 20).length, 20);
});

// ---- well-formed traffic ----------------------------------------------------------------------

Deno.test("testrun: IPv4 TCP flags are OR-ed per flow (SYN then ACK gives 0x12)", () => {
  using dp = datapath();
  const syn = v4(IPPROTO.tcp, tcp(40000, 80, SYN));
  const synAck = v4(IPPROTO.tcp, tcp(80, 40000, SYN | ACK), { src: V4.b, dst: V4.a });
  const ack = v4(IPPROTO.tcp, tcp(40000, 80, ACK, payload(100)));
  const fin = v4(IPPROTO.tcp, tcp(80, 40000, FIN | ACK), { src: V4.b, dst: V4.a });
  for (const f of [syn, synAck, ack, fin]) runAll(dp, f);

  const bytes = syn.length + synAck.length + ack.length + fin.length;
  assert.equal(bytes, 54 + 54 + 154 + 54);
  expectState(
    dp,
    allHooks({ classes: { ipv4_tcp: [4, bytes] } }),
    onAllHooks([
      {
        ...A4,
        proto: 6,
        sport: 40000,
        dport: 80,
        packets: 2,
        bytes: syn.length + ack.length,
        tcpFlags: 0x12,
      },
      {
        ...B4,
        proto: 6,
        sport: 80,
        dport: 40000,
        packets: 2,
        bytes: synAck.length + fin.length,
        tcpFlags: SYN | ACK | FIN,
      },
    ]),
  );
});

Deno.test("testrun: IPv4 UDP and ICMP (type and code as ports), DF alone is no fragment", () => {
  using dp = datapath();
  const dns = v4(IPPROTO.udp, udp(5353, 53, payload(30)), { df: true });
  const echo = v4(IPPROTO.icmp, icmp(8, 0, payload(56)));
  const unreachable = v4(IPPROTO.icmp, icmp(3, 4, payload(28)), { src: V4.b, dst: V4.a });
  runAll(dp, dns, 3);
  runAll(dp, echo, 2);
  runAll(dp, unreachable);

  expectState(
    dp,
    allHooks({
      classes: {
        ipv4_udp: [3, 3 * dns.length],
        ipv4_icmp: [3, 2 * echo.length + unreachable.length],
      },
    }),
    onAllHooks([
      { ...A4, proto: 17, sport: 5353, dport: 53, packets: 3, bytes: 3 * dns.length },
      { ...A4, proto: 1, sport: 8, dport: 0, packets: 2, bytes: 2 * echo.length },
      { ...B4, proto: 1, sport: 3, dport: 4, packets: 1, bytes: unreachable.length },
    ]),
  );
});

Deno.test("testrun: IPv4 other protocol (GRE) has no ports; options are skipped by IHL", () => {
  using dp = datapath();
  const gre = v4(IPPROTO.gre, payload(24));
  // Router alert (4 bytes: IHL 6) before UDP; 40 bytes of NOPs (IHL 15) before TCP.
  const alert = v4(IPPROTO.udp, udp(1111, 2222, payload(5)), {
    options: Uint8Array.of(148, 4, 0, 0),
  });
  const nops = v4(IPPROTO.tcp, tcp(3333, 4444, SYN), { options: new Uint8Array(40).fill(1) });
  assert.equal(alert[14], 0x46);
  assert.equal(nops[14], 0x4f);
  for (const f of [gre, alert, nops]) runAll(dp, f);

  expectState(
    dp,
    allHooks({
      classes: {
        ipv4_other: [1, gre.length],
        ipv4_udp: [1, alert.length],
        ipv4_tcp: [1, nops.length],
      },
    }),
    onAllHooks([
      { ...A4, proto: 47, packets: 1, bytes: gre.length },
      { ...A4, proto: 17, sport: 1111, dport: 2222, packets: 1, bytes: alert.length },
      { ...A4, proto: 6, sport: 3333, dport: 4444, packets: 1, bytes: nops.length, tcpFlags: SYN },
    ]),
  );
});

Deno.test("testrun: IPv6 TCP, UDP, ICMPv6 and other protocols", () => {
  using dp = datapath();
  const syn = v6(IPPROTO.tcp, tcp(50000, 443, SYN));
  const synAck = v6(IPPROTO.tcp, tcp(443, 50000, SYN | ACK), { src: V6.b, dst: V6.a });
  const ack = v6(IPPROTO.tcp, tcp(50000, 443, ACK, payload(10)));
  const dns = v6(IPPROTO.udp, udp(5353, 53, payload(40)));
  const echo = v6(IPPROTO.icmp6, icmp6(128, 0, payload(56)));
  const tooBig = v6(IPPROTO.icmp6, icmp6(2, 0, payload(100)), { src: V6.b, dst: V6.a });
  const noNext = v6(IPPROTO.none, new Uint8Array(0));
  const gre = v6(IPPROTO.gre, payload(16));
  const frames = [syn, synAck, ack, dns, echo, tooBig, noNext, gre];
  for (const f of frames) runAll(dp, f);
  assert.equal(syn.length, 14 + 40 + 20);

  const len = (...f: Bytes[]) => f.reduce((n, x) => n + x.length, 0);
  expectState(
    dp,
    allHooks({
      classes: {
        ipv6_tcp: [3, len(syn, synAck, ack)],
        ipv6_udp: [1, dns.length],
        ipv6_icmp: [2, len(echo, tooBig)],
        ipv6_other: [2, len(noNext, gre)],
      },
    }),
    onAllHooks([
      {
        ...A6,
        proto: 6,
        sport: 50000,
        dport: 443,
        packets: 2,
        bytes: len(syn, ack),
        tcpFlags: SYN | ACK,
      },
      {
        ...B6,
        proto: 6,
        sport: 443,
        dport: 50000,
        packets: 1,
        bytes: synAck.length,
        tcpFlags: SYN | ACK,
      },
      { ...A6, proto: 17, sport: 5353, dport: 53, packets: 1, bytes: dns.length },
      { ...A6, proto: 58, sport: 128, dport: 0, packets: 1, bytes: echo.length },
      { ...B6, proto: 58, sport: 2, dport: 0, packets: 1, bytes: tooBig.length },
      { ...A6, proto: 59, packets: 1, bytes: noNext.length },
      { ...A6, proto: 47, packets: 1, bytes: gre.length },
    ]),
  );
});

Deno.test("testrun: ICMP type/code are read only for the family's own ICMP", () => {
  // IPv4 carrying next header 58 and IPv6 carrying protocol 1 are "other" protocols: like GRE
  // their flows carry no ports.
  using dp = datapath();
  const v4icmp6 = v4(IPPROTO.icmp6, icmp6(128, 0, payload(8)));
  const v6icmp = v6(IPPROTO.icmp, icmp(8, 0, payload(8)));
  runAll(dp, v4icmp6);
  runAll(dp, v6icmp);
  expectState(
    dp,
    allHooks({ classes: { ipv4_other: [1, v4icmp6.length], ipv6_other: [1, v6icmp.length] } }),
    onAllHooks([
      { ...A4, proto: 58, packets: 1, bytes: v4icmp6.length },
      { ...A6, proto: 1, packets: 1, bytes: v6icmp.length },
    ]),
  );
});

Deno.test("testrun: 802.1Q and QinQ frames count as vlanTagged and are parsed through the tags", () => {
  using dp = datapath();
  const q = eth(ETH_P.ipv4, ipv4(IPPROTO.udp, udp(1000, 2000, payload(10))), {
    tags: [dot1q(100)],
  });
  const qinq = eth(ETH_P.ipv4, ipv4(IPPROTO.tcp, tcp(3000, 4000, SYN)), {
    tags: [dot1ad(200), dot1q(300)],
  });
  const q6 = eth(ETH_P.ipv6, ipv6(IPPROTO.udp, udp(5000, 6000)), { tags: [dot1q(5)] });
  const qArp = eth(ETH_P.arp, arp(), { tags: [dot1q(7)] });
  const plain = v4(IPPROTO.udp, udp(1000, 2000, payload(10)));
  assert.equal(q.length, plain.length + 4);
  assert.equal(qinq.length, 14 + 8 + 40);
  for (const f of [q, qinq, q6, qArp, plain]) runAll(dp, f);

  expectState(
    dp,
    allHooks({
      classes: {
        ipv4_udp: [2, q.length + plain.length],
        ipv4_tcp: [1, qinq.length],
        ipv6_udp: [1, q6.length],
        non_ip: [1, qArp.length],
      },
      vlanTagged: 4,
    }),
    onAllHooks([
      // The tagged and the untagged datagram are one flow: tags are not part of the key.
      { ...A4, proto: 17, sport: 1000, dport: 2000, packets: 2, bytes: q.length + plain.length },
      { ...A4, proto: 6, sport: 3000, dport: 4000, packets: 1, bytes: qinq.length, tcpFlags: SYN },
      { ...A6, proto: 17, sport: 5000, dport: 6000, packets: 1, bytes: q6.length },
    ]),
  );
});

Deno.test("testrun: IPv6 hop-by-hop, routing, destination options and AH are walked to L4", () => {
  using dp = datapath();
  const three = v6(IPPROTO.udp, udp(1234, 5678, payload(20)), {
    ext: [{ type: "hop" }, { type: "routing" }, { type: "dest" }],
  });
  const wide = v6(IPPROTO.tcp, tcp(2222, 22, PSH | ACK, payload(30)), {
    ext: [{ type: "hop", bytes: 16 }, { type: "dest", bytes: 24 }, { type: "ah" }],
  });
  const five = v6(IPPROTO.icmp6, icmp6(129, 0, payload(8)), { ext: opts(5) });
  assert.equal(three.length, 14 + 40 + 8 + 24 + 8 + 8 + 20);
  assert.equal(wide.length, 14 + 40 + 16 + 24 + 24 + 20 + 30);
  for (const f of [three, wide, five]) runAll(dp, f);

  expectState(
    dp,
    allHooks({
      classes: {
        ipv6_udp: [1, three.length],
        ipv6_tcp: [1, wide.length],
        ipv6_icmp: [1, five.length],
      },
    }),
    onAllHooks([
      { ...A6, proto: 17, sport: 1234, dport: 5678, packets: 1, bytes: three.length },
      {
        ...A6,
        proto: 6,
        sport: 2222,
        dport: 22,
        packets: 1,
        bytes: wide.length,
        tcpFlags: PSH | ACK,
      },
      { ...A6, proto: 58, sport: 129, dport: 0, packets: 1, bytes: five.length },
    ]),
  );
});

Deno.test("testrun: IPv6 with exactly 6 extension headers (X0_MAX_EXT_HEADERS) reaches UDP", () => {
  using dp = datapath();
  const six = v6(IPPROTO.udp, udp(7, 9, payload(4)), { ext: [{ type: "hop" }, ...opts(5)] });
  runAll(dp, six);
  expectState(
    dp,
    allHooks({ classes: { ipv6_udp: [1, six.length] } }),
    onAllHooks([
      { ...A6, proto: 17, sport: 7, dport: 9, packets: 1, bytes: six.length },
    ]),
  );
});

Deno.test("testrun: IPv6 fragments count as fragments, with ports 0 and the inner protocol", () => {
  using dp = datapath();
  // First fragment (offset 0, more) carrying the UDP header, after a hop-by-hop header; then
  // the last fragment (offset 1448 bytes) of the same datagram; and a TCP first fragment.
  const first = v6(IPPROTO.udp, udp(1000, 2000, payload(64)), {
    ext: [{ type: "hop" }, { type: "frag", more: true, id: 42 }],
  });
  const last = v6(IPPROTO.udp, payload(100), { ext: [{ type: "frag", offset: 181, id: 42 }] });
  const tcpFrag = v6(IPPROTO.tcp, tcp(1, 2, SYN, payload(40)), {
    ext: [{ type: "frag", more: true, id: 43 }],
  });
  for (const f of [first, last, tcpFrag]) runAll(dp, f);

  expectState(
    dp,
    allHooks({
      classes: { ipv6_udp: [2, first.length + last.length], ipv6_tcp: [1, tcpFrag.length] },
      fragments: 3,
    }),
    onAllHooks([
      { ...A6, proto: 17, packets: 2, bytes: first.length + last.length, fragment: true },
      { ...A6, proto: 6, packets: 1, bytes: tcpFrag.length, fragment: true },
    ]),
  );
});

Deno.test("testrun: IPv4 first and non-first fragments count as fragments, with ports 0", () => {
  using dp = datapath();
  const first = v4(IPPROTO.udp, udp(1000, 2000, payload(1472)), { mf: true, id: 7 });
  const middle = v4(IPPROTO.udp, payload(1480), { mf: true, fragOffset: 185, id: 7 });
  const last = v4(IPPROTO.udp, payload(100), { fragOffset: 370, id: 7 });
  for (const f of [first, middle, last]) runAll(dp, f);
  const bytes = first.length + middle.length + last.length;
  assert.equal(bytes, 3 * 34 + 1480 + 1480 + 100);

  // The class follows the protocol number as it does for IPv6 fragments above.
  expectState(
    dp,
    allHooks({ classes: { ipv4_udp: [3, bytes] }, fragments: 3 }),
    onAllHooks([
      { ...A4, proto: 17, packets: 3, bytes, fragment: true },
    ]),
  );
});

Deno.test("testrun: non-IP frames (ARP, LLDP) count as non_ip and make no flow", () => {
  using dp = datapath();
  const request = eth(ETH_P.arp, arp());
  const lldp = eth(0x88cc, payload(46));
  runAll(dp, request, 2);
  runAll(dp, lldp);
  expectState(
    dp,
    allHooks({ classes: { non_ip: [3, 2 * request.length + lldp.length] } }),
    [],
  );
});

Deno.test("testrun: an oversized 3000-byte frame is counted with its exact length", () => {
  using dp = datapath();
  const big = v4(IPPROTO.udp, udp(9, 9, payload(3000 - 42)));
  assert.equal(big.length, 3000);
  runAll(dp, big, 2);
  expectState(
    dp,
    allHooks({ classes: { ipv4_udp: [2, 6000] } }),
    onAllHooks([
      { ...A4, proto: 17, sport: 9, dport: 9, packets: 2, bytes: 6000 },
    ]),
  );
});

Deno.test("testrun: each hook counts only its own frames", () => {
  using dp = datapath();
  const f = v4(IPPROTO.udp, udp(40, 50, payload(10)));
  run(dp, "xdp", f);
  run(dp, "tcIngress", f, 2);
  run(dp, "tcEgress", f, 3);
  const flow = { ...A4, proto: 17, sport: 40, dport: 50 } as const;
  expectState(
    dp,
    {
      xdp: { classes: { ipv4_udp: [1, f.length] } },
      tcIngress: { classes: { ipv4_udp: [2, 2 * f.length] } },
      tcEgress: { classes: { ipv4_udp: [3, 3 * f.length] } },
    },
    [
      { ...flow, hook: "xdp", packets: 1, bytes: f.length },
      { ...flow, hook: "tcIngress", packets: 2, bytes: 2 * f.length },
      { ...flow, hook: "tcEgress", packets: 3, bytes: 3 * f.length },
    ],
  );

  // Only XDP ran: the TC hooks counted nothing.
  using dp2 = datapath();
  run(dp2, "xdp", f);
  expectState(dp2, { xdp: { classes: { ipv4_udp: [1, f.length] } } }, [
    { ...flow, hook: "xdp", packets: 1, bytes: f.length },
  ]);
});

Deno.test("testrun: an interface without a slot of its own counts under ifindex 0", () => {
  using dp = new FlowDatapath(); // no track(): the loopback has no slot
  const f = v4(IPPROTO.udp, udp(40, 50));
  run(dp, "tcEgress", f, 2);
  const stats = readIfaceStats(dp).map((
    s,
  ) => [s.ifindex, s.hook, s.classes.ipv4_udp, s.flowsCreated]);
  assert.deepEqual(stats, [[0, "tcEgress", { packets: 2, bytes: 2 * f.length }, 1]]);
  // The flow key keeps the real ifindex.
  const flows = readFlows(dp).map((x) => [x.ifindex, x.hook, x.sport, x.dport, x.packets]);
  assert.deepEqual(flows, [[LO, "tcEgress", 40, 50, 2]]);
});

Deno.test("testrun: flowsCreated and eventsSent equal the number of distinct flows", () => {
  using dp = datapath();
  const frames = Array.from(
    { length: 50 },
    (_, i) => v4(IPPROTO.udp, udp(10000 + i, 53, payload(i))),
  );
  for (const f of frames) run(dp, "xdp", f, 2);
  const bytes = frames.reduce((n, f) => n + 2 * f.length, 0);
  expectState(
    dp,
    { xdp: { classes: { ipv4_udp: [100, bytes] } } },
    frames.map((f, i) => ({
      ...A4,
      hook: "xdp",
      proto: 17,
      sport: 10000 + i,
      dport: 53,
      packets: 2,
      bytes: 2 * f.length,
    })),
  );
  assert.equal(readIfaceStats(dp).find((x) => x.hook === "xdp")?.flowsCreated, 50);
});

// ---- malformed frames -------------------------------------------------------------------------

const udp4 = v4(IPPROTO.udp, udp(1, 2, payload(8)));
const udp6 = v6(IPPROTO.udp, udp(1, 2, payload(8)));

/**
 * Each frame is malformed for exactly one reason; it passes, counts, and makes no flow.
 * `xdpOnly`: the kernel refuses to build an skb for it (EtherType IPv4 or IPv6 with less than
 * the fixed IP header: EINVAL), so only XDP sees it; tagged twins cover TC.
 */
interface Extra {
  vlanTagged?: number;
  xdpOnly?: boolean;
}

const MALFORMED: [MalformedReason, string, Bytes, Extra?][] = [
  [
    "l2_truncated",
    "802.1Q tag cut short",
    cut(eth(ETH_P.ipv4, new Uint8Array(0), { tags: [dot1q(1)] }), 16),
  ],
  [
    "l2_truncated",
    "QinQ inner tag cut short (the outer tag was whole)",
    cut(eth(ETH_P.ipv4, new Uint8Array(0), { tags: [dot1ad(1), dot1q(2)] }), 20),
    { vlanTagged: 1 },
  ],
  ["l3_truncated", "IPv4 EtherType with no IP header", eth(ETH_P.ipv4, new Uint8Array(0)), {
    xdpOnly: true,
  }],
  ["l3_truncated", "IPv4 header cut at 19 bytes", cut(udp4, 14 + 19), { xdpOnly: true }],
  ["l3_truncated", "IPv6 header cut at 39 bytes", cut(udp6, 14 + 39), { xdpOnly: true }],
  [
    "l3_truncated",
    "tagged IPv4 header cut at 19 bytes",
    cut(eth(ETH_P.ipv4, ipv4(IPPROTO.udp, udp(1, 2)), { tags: [dot1q(9)] }), 18 + 19),
    { vlanTagged: 1 },
  ],
  [
    "l3_truncated",
    "tagged IPv6 header cut at 20 bytes",
    cut(eth(ETH_P.ipv6, ipv6(IPPROTO.udp, udp(1, 2)), { tags: [dot1q(9)] }), 18 + 20),
    { vlanTagged: 1 },
  ],
  ["l3_truncated", "IPv6 hop-by-hop announced, none present", v6(IPPROTO.hop, new Uint8Array(0))],
  ["l3_truncated", "IPv6 fragment header of 4 bytes", v6(IPPROTO.frag, Uint8Array.of(17, 0, 0, 1))],
  [
    "l3_truncated",
    "IPv4 options cut short: IHL 15, 40 bytes of header",
    cut(v4(IPPROTO.udp, udp(1, 2), { options: new Uint8Array(40).fill(1) }), 14 + 40),
  ],
  [
    "l3_truncated",
    "IPv6 hop-by-hop claims 16 bytes, 8 present, then UDP",
    v6(IPPROTO.udp, new Uint8Array(0), { ext: [{ type: "hop", hdrLen: 1 }] }),
  ],
  [
    "l3_truncated",
    "IPv6 hop-by-hop claims 16 bytes, 8 present, then no next header",
    v6(IPPROTO.none, new Uint8Array(0), { ext: [{ type: "hop", hdrLen: 1 }] }),
  ],
  ["ip_version", "IPv4 EtherType, version 6", v4(IPPROTO.udp, udp(1, 2), { version: 6 })],
  ["ip_version", "IPv6 EtherType, version 4", v6(IPPROTO.udp, udp(1, 2), { version: 4 })],
  ["ipv4_ihl", "IHL 4", v4(IPPROTO.udp, udp(1, 2), { ihl: 4 })],
  ["ipv4_ihl", "IHL 0", v4(IPPROTO.udp, udp(1, 2), { ihl: 0 })],
  [
    "ip_length",
    "IPv4 total length beyond the frame",
    v4(IPPROTO.udp, udp(1, 2), { totalLength: 1000 }),
  ],
  [
    "ip_length",
    "IPv4 total length below the header",
    v4(IPPROTO.udp, udp(1, 2), { totalLength: 19 }),
  ],
  ["ip_length", "IPv4 frame cut inside its UDP payload", cut(udp4, udp4.length - 3)],
  [
    "ip_length",
    "IPv6 payload length beyond the frame",
    v6(IPPROTO.udp, udp(1, 2), { payloadLength: 9 }),
  ],
  [
    "ip_length",
    "IPv6 frame cut inside its extension headers",
    cut(v6(IPPROTO.udp, udp(1, 2), { ext: opts(2) }), 14 + 44),
  ],
  ["l4_truncated", "IPv4 TCP header of 19 bytes", v4(IPPROTO.tcp, cut(tcp(1, 2, SYN), 19))],
  ["l4_truncated", "IPv4 UDP header of 7 bytes", v4(IPPROTO.udp, payload(7))],
  ["l4_truncated", "IPv4 ICMP header of 1 byte", v4(IPPROTO.icmp, Uint8Array.of(8))],
  ["l4_truncated", "IPv6 TCP header of 10 bytes", v6(IPPROTO.tcp, payload(10))],
  [
    "l4_truncated",
    "IPv6 UDP header of 4 bytes after 2 extension headers",
    v6(IPPROTO.udp, payload(4), { ext: opts(2) }),
  ],
  ["l4_truncated", "ICMPv6 header of 1 byte", v6(IPPROTO.icmp6, Uint8Array.of(128))],
  [
    "ext_headers",
    "7 extension headers before UDP",
    v6(IPPROTO.udp, udp(1, 2), { ext: [{ type: "hop" }, ...opts(6)] }),
  ],
  [
    "ext_headers",
    "10 extension headers before TCP",
    v6(IPPROTO.tcp, tcp(1, 2, SYN), { ext: opts(10) }),
  ],
];

for (const [reason, what, frame, extra = {}] of MALFORMED) {
  Deno.test(`testrun: malformed ${reason}: ${what}`, () => {
    using dp = datapath();
    const counts: Counts = {
      malformed: { [reason]: 1 },
      classes: { malformed: [1, frame.length] },
      vlanTagged: extra.vlanTagged,
    };
    if (extra.xdpOnly) {
      run(dp, "xdp", frame);
      for (const hook of ["tcIngress", "tcEgress"] as const) {
        assertKernelError(() => dp[hook].testRun(frame), "EINVAL", `${what} on ${hook}`);
      }
      expectState(dp, { xdp: counts }, []);
    } else {
      runAll(dp, frame);
      expectState(dp, allHooks(counts), []);
    }
  });
}

// ---- IPv4 BIG TCP: total length 0 on a GSO packet ----------------------------------------------

/**
 * Runs `frame` through a TC program as a GSO packet of `gsoSize`-byte segments: test-run takes
 * a struct __sk_buff as its context and copies gso_size and gso_segs into the skb it builds.
 * The struct's layout comes from this kernel's BTF.
 */
function runGso(dp: FlowDatapath, hook: "tcIngress" | "tcEgress", frame: Bytes, gsoSize: number) {
  const skb = vmlinuxBtf().struct("__sk_buff");
  assert.ok(skb, "struct __sk_buff in the kernel's BTF");
  const at = (name: string) => {
    const m = skb.members.find((m) => m.name === name);
    assert.ok(m, `__sk_buff.${name}`);
    return m.offset;
  };
  const ctx = new Uint8Array(skb.size);
  const cv = new DataView(ctx.buffer);
  cv.setUint32(at("gso_size"), gsoSize, true);
  cv.setUint32(at("gso_segs"), Math.ceil(frame.length / gsoSize), true);
  const o = OPTS.testRun;
  const { buf, view } = libbpfOpts(o.size);
  setPtr(view, o.dataIn, frame);
  view.setUint32(o.dataSizeIn, frame.length, true);
  setPtr(view, o.ctxIn, ctx);
  view.setUint32(o.ctxSizeIn, ctx.length, true);
  check(`test-run ${hook} as GSO`, loadLibbpf().bpf_prog_test_run_opts(dp[hook].fd, buf));
  assert.equal(view.getInt32(o.retval, true), TC_ACT_UNSPEC, `return code of ${hook}`);
}

Deno.test("testrun: IPv4 BIG TCP (total length 0 on a GSO packet) counts on TC with the skb's length", () => {
  using dp = datapath();
  const seg = tcp(40000, 5201, ACK | PSH, payload(2000));
  const big = v4(IPPROTO.tcp, seg, { totalLength: 0, df: true });
  assert.deepEqual([big[16], big[17]], [0, 0]);
  for (const hook of ["tcIngress", "tcEgress"] as const) runGso(dp, hook, big, 1448);
  const flow = { ...A4, proto: 6, sport: 40000, dport: 5201, tcpFlags: ACK | PSH } as const;
  expectState(
    dp,
    {
      tcIngress: { classes: { ipv4_tcp: [1, big.length] } },
      tcEgress: { classes: { ipv4_tcp: [1, big.length] } },
    },
    [
      { ...flow, hook: "tcIngress", packets: 1, bytes: big.length },
      { ...flow, hook: "tcEgress", packets: 1, bytes: big.length },
    ],
  );
});

Deno.test("testrun: IPv4 total length 0 stays malformed without GSO, on XDP, and for UDP", () => {
  using dp = datapath();
  const zeroTcp = v4(IPPROTO.tcp, tcp(40000, 5201, ACK, payload(100)), { totalLength: 0 });
  const zeroUdp = v4(IPPROTO.udp, udp(40000, 5201, payload(100)), { totalLength: 0 });
  // XDP never sees a GSO packet, and the stack drops a non-GSO one with total length 0.
  runAll(dp, zeroTcp);
  // Only TCP has BIG TCP.
  for (const hook of ["tcIngress", "tcEgress"] as const) runGso(dp, hook, zeroUdp, 1448);
  const counts = (n: number, bytes: number): Counts => ({
    malformed: { ip_length: n },
    classes: { malformed: [n, bytes] },
  });
  expectState(dp, {
    xdp: counts(1, zeroTcp.length),
    tcIngress: counts(2, zeroTcp.length + zeroUdp.length),
    tcEgress: counts(2, zeroTcp.length + zeroUdp.length),
  }, []);
});

Deno.test("testrun: a GSO packet whose total length is short or beyond the frame is malformed", () => {
  using dp = datapath();
  const body = tcp(40000, 5201, ACK, payload(100));
  const short = v4(IPPROTO.tcp, body, { totalLength: 19 });
  const beyond = v4(IPPROTO.tcp, body, { totalLength: 1000 });
  for (const hook of ["tcIngress", "tcEgress"] as const) {
    for (const f of [short, beyond]) runGso(dp, hook, f, 1448);
  }
  const c: Counts = {
    malformed: { ip_length: 2 },
    classes: { malformed: [2, short.length + beyond.length] },
  };
  expectState(dp, { tcIngress: c, tcEgress: c }, []);
});

// ---- frames the kernel refuses ----------------------------------------------------------------

Deno.test("testrun: frames shorter than an Ethernet header are refused with EINVAL", () => {
  using dp = datapath();
  const short = cut(udp4, 13);
  for (const hook of HOOK_NAMES) {
    for (const f of [short, cut(udp4, 1)]) {
      assertKernelError(() => dp[hook].testRun(f), "EINVAL", `${f.length}-byte frame on ${hook}`);
    }
  }
  expectState(dp, {}, []);
});

Deno.test("testrun: frames too big for test-run are refused, and nothing is counted", () => {
  using dp = datapath();
  // An skb is one page: 4096 bytes no longer fit with its head and tail room.
  const page = v4(IPPROTO.udp, udp(1, 2, payload(4096 - 42)));
  assertKernelError(() => dp.tcIngress.testRun(page), "EINVAL", "4096 bytes on tcIngress");
  assertKernelError(() => dp.tcEgress.testRun(page), "EINVAL", "4096 bytes on tcEgress");
  // XDP takes the rest in page fragments, but not 1 MiB of them.
  const huge = v4(IPPROTO.udp, payload(1 << 20));
  assertKernelError(() => dp.xdp.testRun(huge), "ENOMEM", "1 MiB on xdp");
  expectState(dp, {}, []);
});
