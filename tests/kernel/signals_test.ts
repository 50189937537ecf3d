/**
 * Kernel signals against the real kernel: drops produced on purpose in test namespaces
 * (an nftables drop rule, a closed UDP port, TCP segments that a listening socket refuses),
 * TCP retransmits forced by nftables loss, TCP RTT on a veth pair, and drop reason names read
 * from this kernel's BTF.
 */
import assert from "node:assert/strict";
import { dropReasonNames, SignalsProbe, UNKNOWN_INTERFACE } from "../../src/datapath/signals.ts";
import { flowSignalKey } from "../../src/flows/signals.ts";
import { withNetns } from "../../src/datapath/netns.ts";
import { ifindexOf, ifnameOf } from "../../src/datapath/netdev.ts";
import { SignalsReader } from "../../src/collect/signals.ts";
import { HealthBoard } from "../../src/state/health.ts";
import { EventLog } from "../../src/state/events.ts";
import { nft, nftInputRule, sh, type Side, trafficCommand, VethPair } from "../helpers/netns.ts";
import { RawTcp } from "../helpers/rawnet.ts";
import { IPPROTO, payload, tcp, TCP_FLAGS, withL4Checksum } from "./frames.ts";

function traffic(side: Side, ...args: (string | number)[]) {
  return trafficCommand(side.ns, ...args);
}

Deno.test("signals: drop reason names come from this kernel's BTF", () => {
  const names = dropReasonNames();
  assert.ok([...names.values()].includes("NETFILTER_DROP"));
  assert.ok([...names.values()].includes("NO_SOCKET"));
  assert.ok(!names.has(-1));
});

Deno.test("signals: nftables drops and a closed UDP port are counted by reason, per flow, exactly", async () => {
  using v = new VethPair(95);
  // Tracepoints see the whole machine; the probe keeps to the namespace it is made in.
  using probe = withNetns(v.b.ns, () => new SignalsProbe(["drops", "retransmits", "rtt"]));
  assert.deepEqual([...probe.unavailable], []);
  await nft(v.b.ns, nftInputRule("x0drop", "udp dport 9999 drop"));
  for (const [port, n] of [[9999, 30], [9998, 20]]) {
    const o = await traffic(v.a, "udp-send", v.b.ip4, port, n, 100).output();
    assert.ok(o.success, new TextDecoder().decode(o.stderr));
  }
  await new Promise((r) => setTimeout(r, 200));
  const flows = probe.flows();
  const get = (port: number) => {
    for (const [k, s] of flows) {
      if (k.startsWith(`4/17/${v.a.ip4}/`) && k.endsWith(`/${v.b.ip4}/${port}`)) return s;
    }
    return undefined;
  };
  const nf = get(9999), closed = get(9998);
  assert.equal(nf?.drops, 30);
  assert.equal(probe.reasonName(nf!.lastDropReason), "NETFILTER_DROP");
  assert.equal(closed?.drops, 20);
  assert.equal(probe.reasonName(closed!.lastDropReason), "NO_SOCKET");
  const bIdx = Number(sh("cat", [`/sys/class/net/${v.b.dev}/ifindex`], v.b.ns).trim());
  const byReason = (r: string) =>
    probe.drops().filter((d) => d.reason === r && d.ifindex === bIdx).reduce(
      (a, d) => a + d.count,
      0,
    );
  assert.ok(byReason("NETFILTER_DROP") >= 30);
  assert.ok(byReason("NO_SOCKET") >= 20);
  // Nothing from other namespaces (the machine's own traffic) is counted: every interface
  // a drop names is one of ns b's.
  const mine = new Set(
    sh("ip", ["-o", "link", "show"], v.b.ns).split("\n").filter(Boolean).map((l) =>
      Number(l.split(":")[0])
    ),
  );
  for (const d of probe.drops()) assert.ok(mine.has(d.ifindex), `drop on ifindex ${d.ifindex}`);
});

Deno.test("signals: TCP retransmits under nftables loss, and a plausible RTT", async () => {
  using v = new VethPair(96);
  using probe = withNetns(v.a.ns, () => new SignalsProbe(["drops", "retransmits", "rtt"]));
  // Drop a fifth of the data segments arriving at b: a's socket must retransmit.
  await nft(v.b.ns, nftInputRule("x0loss", "tcp dport 9100 numgen random mod 100 < 20 drop"));
  const sink = traffic(v.b, "tcp-sink", 9100).spawn();
  await new Promise((r) => setTimeout(r, 300));
  let sent = false;
  for (let i = 0; i < 40 && !sent; i++) {
    sent = (await traffic(v.a, "tcp-send", v.b.ip4, 9100, 3_000_000).output()).success;
    if (!sent) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(sent);
  await sink.output();
  const mine = [...probe.flows()].find(([k]) =>
    k.startsWith(`4/6/${v.a.ip4}/`) && k.endsWith(`/${v.b.ip4}/9100`)
  );
  assert.ok(mine, "the sender's TCP flow has signals");
  const [key, s] = mine;
  assert.ok(s.retransmits > 0, `retransmits on ${key}: ${s.retransmits}`);
  assert.ok(s.rttSamples > 0 && s.srttUs > 0 && s.srttUs < 200_000, `srtt ${s.srttUs} µs`);
  const aIdx = Number(sh("cat", [`/sys/class/net/${v.a.dev}/ifindex`], v.a.ns).trim());
  const hist = probe.rttHistogram().get(aIdx);
  assert.ok(hist && hist.reduce((a, b) => a + b, 0) > 0, "RTT histogram of veth-a");
  assert.equal(flowSignalKey(4, 6, "1.2.3.4", 5, "6.7.8.9", 10), "4/6/1.2.3.4/5/6.7.8.9/10");
});

Deno.test("signals: a packet with no route is counted under its reason", async () => {
  using v = new VethPair(97);
  // b forwards, but has no route to 10.203.9.0/24: what a sends there dies in b.
  v.run(v.b, "sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
  v.run(v.a, "ip", ["route", "add", "10.203.9.0/24", "via", v.b.ip4]);
  using probe = withNetns(v.b.ns, () => new SignalsProbe(["drops"]));
  const o = await traffic(v.a, "udp-send", "10.203.9.9", 4000, 12, 50).output();
  assert.ok(o.success, new TextDecoder().decode(o.stderr));
  await new Promise((r) => setTimeout(r, 200));
  const flow = [...probe.flows()].find(([k]) => k.endsWith("/10.203.9.9/4000"));
  assert.ok(flow, "the flow to nowhere has signals");
  assert.equal(flow[1].drops, 12);
  assert.match(probe.reasonName(flow[1].lastDropReason), /NOROUTE|INNOROUTES|UNREACHABLE/);
});

/** A TCP segment from `src` to `dst` whose checksum is right, or (`bad`) is not. */
function segment(src: string, dst: string, seg: Uint8Array<ArrayBuffer>, bad = false) {
  const out = withL4Checksum(IPPROTO.tcp, src, dst, seg);
  if (bad) out[17] ^= 0xff;
  return out;
}

Deno.test("signals: TCP drops after the socket lookup (skb->dev cleared) count on the interface they came in by, IPv4 and IPv6", async () => {
  using v = new VethPair(98);
  const reader = withNetns(
    v.b.ns,
    () => new SignalsReader(["drops"], new HealthBoard(), new EventLog()),
  );
  try {
    using _listener = withNetns(v.b.ns, () => Deno.listen({ hostname: "::", port: 9300 }));
    const name = (i: number) => withNetns(v.b.ns, () => ifnameOf(i)) ?? `ifindex ${i}`;
    const drops = () => {
      const out = new Map<string, number>();
      for (const d of reader.read(name)?.drops ?? []) {
        out.set(`${d.interface}/${d.reason}`, d.count);
      }
      return out;
    };
    const before = drops();
    // Per family, to the listening socket of b: SYNs with a wrong checksum, short (checked in
    // tcp_v4_rcv/tcp_v6_rcv, the device still set) and with 100 bytes of payload (checked
    // after the socket lookup, skb->dev NULL); and segments without flags, refused by the
    // listener (TCP_FLAGS, skb->dev NULL).
    const sent = { short: 7, long: 11, noFlags: 5 };
    for (const [family, src, dst] of [[4, v.a.ip4, v.b.ip4], [6, v.a.ip6, v.b.ip6]] as const) {
      using raw = new RawTcp(v.a.ns, family);
      const { syn } = TCP_FLAGS;
      for (let i = 0; i < sent.short; i++) {
        raw.send(dst, segment(src, dst, tcp(41001, 9300, syn), true));
      }
      for (let i = 0; i < sent.long; i++) {
        raw.send(dst, segment(src, dst, tcp(41002, 9300, syn, payload(100)), true));
      }
      for (let i = 0; i < sent.noFlags; i++) raw.send(dst, segment(src, dst, tcp(41003, 9300, 0)));
    }
    await new Promise((r) => setTimeout(r, 300));
    const after = drops();
    const delta = (iface: string, reason: string) =>
      (after.get(`${iface}/${reason}`) ?? 0) - (before.get(`${iface}/${reason}`) ?? 0);
    assert.equal(delta(v.b.dev, "TCP_CSUM"), 2 * (sent.short + sent.long), "TCP_CSUM on veth-b");
    assert.equal(delta(v.b.dev, "TCP_FLAGS"), 2 * sent.noFlags, "TCP_FLAGS on veth-b");
    for (const reason of ["TCP_CSUM", "TCP_FLAGS"]) {
      assert.equal(delta(UNKNOWN_INTERFACE, reason), 0, `${reason} without an interface`);
    }
    // Per flow, with the last reason.
    const flows = reader.read(name)?.flows;
    const reasons = dropReasonNames();
    const bIdx = withNetns(v.b.ns, () => ifindexOf(v.b.dev));
    for (const [family, src, dst] of [[4, v.a.ip4, v.b.ip4], [6, v.a.ip6, v.b.ip6]] as const) {
      for (
        const [sport, n, reason] of [
          [41001, sent.short, "TCP_CSUM"],
          [41002, sent.long, "TCP_CSUM"],
          [41003, sent.noFlags, "TCP_FLAGS"],
        ] as const
      ) {
        const s = flows?.get(flowSignalKey(family, IPPROTO.tcp, src, sport, dst, 9300));
        assert.equal(s?.drops, n, `drops of IPv${family} port ${sport}`);
        assert.equal(reasons.get(s.lastDropReason), reason);
        assert.equal(s.ifindex, bIdx);
      }
    }
  } finally {
    reader.close();
  }
});
