/**
 * Real traffic across a veth pair between two namespaces made by the test: known numbers of
 * UDP, TCP and ICMP packets (IPv4 and IPv6) of known sizes, counted exactly per flow with XDP
 * (ingress of veth-b) and TC (ingress and egress of veth-a); and IPv4 BIG TCP, GSO packets
 * beyond 64 KiB, on TC. Afterwards nothing is attached.
 */
import assert from "node:assert/strict";
import { readFlows, readIfaceStats, totals } from "../../src/collect/decode.ts";
import type { Flow } from "../../src/flows/key.ts";
import { FlowDatapath } from "../../src/datapath/flow.ts";
import { ifindexOf } from "../../src/datapath/netdev.ts";
import { withNetns } from "../../src/datapath/netns.ts";
import { type Side, sweep, trafficCommand, VethPair } from "../helpers/netns.ts";
import { IFLA, setLinkU32 } from "../helpers/rawnet.ts";

function traffic(side: Side, ...args: (string | number)[]) {
  return trafficCommand(side.ns, ...args);
}

async function send(side: Side, ...args: (string | number)[]) {
  const out = await traffic(side, ...args).output();
  assert.ok(out.success, `traffic ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

const matches = (x: Flow, f: Partial<Flow>) =>
  Object.entries(f).every(([k, v]) => (x as unknown as Record<string, unknown>)[k] === v);

function find(flows: Flow[], f: Partial<Flow>): Flow | undefined {
  return flows.find((x) => matches(x, f));
}

/**
 * The matching flow with the most bytes: a TCP connection attempt made before the server
 * listened leaves a flow of its own (a SYN, a RST) beside the connection that carried the data.
 */
function busiest(flows: Flow[], f: Partial<Flow>): Flow | undefined {
  return flows.filter((x) => matches(x, f)).sort((x, y) => y.bytes - x.bytes)[0];
}

/** Everything this test attached is gone: no XDP program, no filter, no clsact qdisc. */
function assertClean(v: VethPair) {
  for (const side of [v.a, v.b]) {
    const link = v.run(side, "ip", ["-d", "link", "show", side.dev]);
    assert.doesNotMatch(link, /prog\/xdp|xdpgeneric|xdpdrv/, `XDP left on ${side.dev}`);
    for (const dir of ["ingress", "egress"]) {
      assert.equal(v.run(side, "tc", ["filter", "show", "dev", side.dev, dir]), "");
    }
    assert.doesNotMatch(v.run(side, "tc", ["qdisc", "show", "dev", side.dev]), /clsact/);
  }
}

sweep();

for (const xdpMode of ["native", "generic"] as const) {
  Deno.test(`veth: exact per-flow counts with XDP (${xdpMode}) and TC, v4 and v6`, async () => {
    using v = new VethPair(xdpMode === "native" ? 1 : 2);
    const dp = new FlowDatapath();
    try {
      const bIdx = withNetns(v.b.ns, () => ifindexOf(v.b.dev));
      const aIdx = withNetns(v.a.ns, () => ifindexOf(v.a.dev));
      const xb = withNetns(v.b.ns, () => dp.attach(bIdx, "xdp", xdpMode));
      assert.equal(xb.xdpMode, xdpMode);
      withNetns(v.a.ns, () => dp.attach(aIdx, "tc"));
      // Reads XDP's totals and the kernel's rx counters of veth-b at one moment: retried
      // until no packet (a stray IPv6 control message) slipped in between the two reads.
      const snapshot = () => {
        const xdpTotals = () => {
          const s = readIfaceStats(dp).find((s) => s.hook === "xdp" && s.ifindex === bIdx);
          return s ? totals(s) : { packets: 0, bytes: 0 };
        };
        for (;;) {
          const t1 = xdpTotals(), kernel = v.stats(v.b), t2 = xdpTotals();
          if (t1.packets === t2.packets) return { xdp: t1, kernel };
        }
      };
      const before = snapshot();

      // UDP: 20 datagrams of 100 bytes over v4 and 7 of 300 bytes over v6.
      await send(v.a, "udp-send", v.b.ip4, 9000, 20, 100);
      await send(v.a, "udp-send", v.b.ip6, 9001, 7, 300);
      // ICMP: 5 echo requests of 56 bytes each way of v4, 3 of v6.
      v.run(v.a, "ping", ["-q", "-c", "5", "-i", "0.05", "-s", "56", v.b.ip4]);
      v.run(v.a, "ping", ["-q", "-6", "-c", "3", "-i", "0.05", "-s", "56", v.b.ip6]);
      // TCP: one connection carrying 200000 bytes.
      const sink = traffic(v.b, "tcp-sink", 9100).spawn();
      await new Promise((r) => setTimeout(r, 50));
      let sent = false;
      for (let i = 0; i < 40 && !sent; i++) {
        sent = (await traffic(v.a, "tcp-send", v.b.ip4, 9100, 200000).output()).success;
        if (!sent) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(sent, "tcp-send failed");
      assert.equal(
        new TextDecoder().decode((await sink.output()).stdout).trim(),
        "listening\n200000",
      );

      const flows = readFlows(dp);
      const udp4 = { family: 4 as const, proto: 17, saddr: v.a.ip4, daddr: v.b.ip4, dport: 9000 };
      const udp6 = { family: 6 as const, proto: 17, saddr: v.a.ip6, daddr: v.b.ip6, dport: 9001 };
      for (const [hook, ifindex] of [["xdp", bIdx], ["tcEgress", aIdx]] as const) {
        const u4 = find(flows, { ...udp4, hook, ifindex });
        assert.ok(u4, `UDP v4 flow on ${hook}`);
        assert.deepEqual([u4.packets, u4.bytes], [20, 20 * (14 + 20 + 8 + 100)]);
        const u6 = find(flows, { ...udp6, hook, ifindex });
        assert.ok(u6, `UDP v6 flow on ${hook}`);
        assert.deepEqual([u6.packets, u6.bytes], [7, 7 * (14 + 40 + 8 + 300)]);
        const echo4 = find(flows, {
          proto: 1,
          saddr: v.a.ip4,
          daddr: v.b.ip4,
          sport: 8,
          hook,
          ifindex,
        });
        assert.deepEqual([echo4?.packets, echo4?.bytes], [5, 5 * (14 + 20 + 8 + 56)]);
        const echo6 = find(flows, {
          proto: 58,
          saddr: v.a.ip6,
          daddr: v.b.ip6,
          sport: 128,
          hook,
          ifindex,
        });
        assert.deepEqual([echo6?.packets, echo6?.bytes], [3, 3 * (14 + 40 + 8 + 56)]);
      }
      // Replies come back through TC ingress of veth-a.
      const reply4 = find(flows, {
        proto: 1,
        saddr: v.b.ip4,
        sport: 0,
        hook: "tcIngress",
        ifindex: aIdx,
      });
      assert.deepEqual([reply4?.packets, reply4?.bytes], [5, 5 * (14 + 20 + 8 + 56)]);
      const reply6 = find(flows, {
        proto: 58,
        saddr: v.b.ip6,
        sport: 129,
        hook: "tcIngress",
        ifindex: aIdx,
      });
      assert.deepEqual([reply6?.packets, reply6?.bytes], [3, 3 * (14 + 40 + 8 + 56)]);

      // TCP: the handshake and teardown flags were seen, and the payload is all there.
      const tcpOut = busiest(flows, { proto: 6, saddr: v.a.ip4, dport: 9100, hook: "xdp" });
      assert.ok(tcpOut, "TCP flow a→b on XDP");
      assert.equal(tcpOut.tcpFlags & 0x13, 0x13, "SYN, ACK and FIN seen"); // FIN|SYN|ACK
      assert.ok(tcpOut.bytes > 200000, `TCP bytes ${tcpOut.bytes}`);
      const tcpBack = busiest(flows, {
        proto: 6,
        saddr: v.b.ip4,
        sport: 9100,
        hook: "tcIngress",
      });
      assert.ok(tcpBack && (tcpBack.tcpFlags & 0x12) === 0x12, "SYN-ACK seen on the way back");

      // Per interface, XDP saw exactly what the kernel says veth-b received. (With native XDP,
      // veth's rx_bytes leaves out the 14-byte Ethernet header that XDP counts.)
      const after = snapshot();
      const rx = after.kernel.rxPackets - before.kernel.rxPackets;
      const l2 = xdpMode === "native" ? 14 * rx : 0;
      assert.deepEqual(
        [after.xdp.packets - before.xdp.packets, after.xdp.bytes - before.xdp.bytes],
        [rx, after.kernel.rxBytes - before.kernel.rxBytes + l2],
      );
      const xdpStats = readIfaceStats(dp).find((s) => s.hook === "xdp" && s.ifindex === bIdx);
      assert.ok(xdpStats);
      assert.equal(xdpStats.classes.ipv4_udp.packets, 20);
      assert.equal(xdpStats.classes.ipv6_udp.packets, 7);
      assert.equal(xdpStats.malformed.l2_truncated, 0);

      withNetns(v.b.ns, () => assert.ok(dp.detach(bIdx)));
      withNetns(v.a.ns, () => assert.ok(dp.detach(aIdx)));
      assertClean(v);
    } finally {
      dp.close();
      assertClean(v);
    }
  });
}

Deno.test("veth: IPv4 BIG TCP (GSO packets beyond 64 KiB, total length 0) counts on TC, none malformed", async () => {
  using v = new VethPair(3);
  // Both ends take IPv4 GSO and GRO packets up to 185000 bytes: the sender's TCP then builds
  // them, with total length 0, and veth hands them across whole.
  for (const side of [v.a, v.b]) {
    setLinkU32(side.ns, side.dev, { [IFLA.gsoIpv4MaxSize]: 185000, [IFLA.groIpv4MaxSize]: 185000 });
  }
  const dp = new FlowDatapath();
  try {
    const aIdx = withNetns(v.a.ns, () => ifindexOf(v.a.dev));
    const bIdx = withNetns(v.b.ns, () => ifindexOf(v.b.dev));
    withNetns(v.a.ns, () => dp.attach(aIdx, "tc"));
    withNetns(v.b.ns, () => dp.attach(bIdx, "tc"));
    // iperf3 sends 50 MB in 1 MiB writes: with that much queued, a's TCP builds GSO packets up
    // to the 185000 bytes allowed.
    const iperf3 = (side: Side, ...args: string[]) =>
      new Deno.Command("ip", {
        args: ["netns", "exec", side.ns, "iperf3", ...args],
        stdout: "piped",
        stderr: "piped",
      });
    const server = iperf3(v.b, "-s", "-1", "-B", v.b.ip4, "-p", "5209").spawn();
    let received = 0;
    try {
      let out: Deno.CommandOutput | undefined;
      for (let i = 0; i < 40 && !out?.success; i++) {
        await new Promise((r) => setTimeout(r, 100)); // until the server listens
        out = await iperf3(v.a, "-c", v.b.ip4, "-p", "5209", "-J", "-n", "50M", "-l", "1M")
          .output();
      }
      assert.ok(out?.success, `iperf3: ${new TextDecoder().decode(out?.stdout)}`);
      received = JSON.parse(new TextDecoder().decode(out.stdout)).end.sum_received.bytes;
    } finally {
      try {
        server.kill();
      } catch { /* it served its one client and exited */ }
      await server.output();
    }
    assert.ok(received > 40_000_000, `iperf3 received ${received} bytes`);

    const flows = readFlows(dp);
    for (const [hook, ifindex] of [["tcEgress", aIdx], ["tcIngress", bIdx]] as const) {
      const st = readIfaceStats(dp).find((s) => s.hook === hook && s.ifindex === ifindex);
      assert.ok(st, `counters of ${hook}`);
      assert.deepEqual(st.classes.malformed, { packets: 0, bytes: 0 }, `malformed on ${hook}`);
      // iperf3's data connection (its control connection to the same port carries little).
      const f = busiest(flows, { proto: 6, saddr: v.a.ip4, dport: 5209, hook, ifindex });
      assert.ok(f, `TCP flow a→b on ${hook}`);
      // Every byte b received is in the flow, and its packets were BIG TCP ones: on average
      // beyond the 64 KiB an IPv4 total length can say.
      assert.ok(f.bytes > received, `${f.bytes} bytes on ${hook}, ${received} received`);
      assert.ok(f.bytes / f.packets > 65535, `${f.packets} packets, ${f.bytes} bytes on ${hook}`);
    }
    withNetns(v.a.ns, () => assert.ok(dp.detach(aIdx)));
    withNetns(v.b.ns, () => assert.ok(dp.detach(bIdx)));
    assertClean(v);
  } finally {
    dp.close();
    assertClean(v);
  }
});
