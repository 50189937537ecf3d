/**
 * The enforcement check of the flow programs (x0_enforce, x0_runtime) on the real kernel with
 * BPF_PROG_TEST_RUN: block, rate limit, expiry by the kernel's own clock, the flow cache's
 * remembered misses invalidated by a new rule, IPv6, and accounting of what was dropped.
 */
import assert from "node:assert/strict";
import { readFlows, readIfaceStats } from "../../src/collect/decode.ts";
import { enforceFilterIndex } from "../../src/datapath/enforce.ts";
import { FlowDatapath } from "../../src/datapath/flow.ts";
import { eth, ETH_P, IPPROTO, ipv4, ipv6, payload, udp, V4, V6 } from "./frames.ts";

const LO = 1;
const XDP_DROP = 1, XDP_PASS = 2, TC_ACT_SHOT = 2, TC_ACT_UNSPEC = -1;

const from4 = (src: string, sport = 4000) =>
  eth(ETH_P.ipv4, ipv4(IPPROTO.udp, udp(sport, 53, payload(18)), { src, dst: V4.b }));
const from6 = (src: string) =>
  eth(ETH_P.ipv6, ipv6(IPPROTO.udp, udp(4000, 53, payload(18)), { src, dst: V6.b }));

function withDatapath(fn: (dp: FlowDatapath) => void | Promise<void>) {
  return async () => {
    const dp = new FlowDatapath();
    try {
      dp.track(LO);
      await fn(dp);
    } finally {
      dp.close();
    }
  };
}

Deno.test(
  "enforce: a blocked IPv4 source is dropped by XDP and TC ingress, counted, others pass",
  withDatapath((dp) => {
    const bad = from4("203.0.113.9");
    assert.equal(dp.xdp.testRun(bad).retval, XDP_PASS, "no rule yet");
    dp.enforcer.put({ address: "203.0.113.9", kind: "block", ratePps: 0 });
    assert.equal(dp.xdp.testRun(bad, 10).retval, XDP_DROP);
    assert.equal(dp.tcIngress.testRun(bad, 5).retval, TC_ACT_SHOT);
    assert.equal(dp.tcEgress.testRun(bad).retval, TC_ACT_UNSPEC, "egress is never enforced");
    assert.equal(dp.xdp.testRun(from4(V4.a)).retval, XDP_PASS, "another source passes");
    const [rule] = dp.enforcer.list();
    assert.equal(rule.address, "203.0.113.9");
    assert.equal(rule.kind, "block");
    assert.equal(rule.droppedPackets, 15);
    assert.equal(rule.droppedBytes, 15 * bad.length);
    // What was dropped is still accounted: the flow table saw every packet.
    const flows = readFlows(dp).filter((f) => f.saddr === "203.0.113.9" && f.hook !== "tcEgress");
    assert.equal(flows.reduce((n, f) => n + f.packets, 0), 1 + 10 + 5);
    assert.ok(dp.enforcer.remove("203.0.113.9"));
    assert.equal(dp.xdp.testRun(bad).retval, XDP_PASS, "removed: passes again");
    assert.equal(dp.enforcer.remove("203.0.113.9"), false);
  }),
);

Deno.test(
  "enforce: a rule added after a flow's packets passed applies from the next packet (flow cache)",
  withDatapath((dp) => {
    const f = from4("203.0.113.10");
    // Another rule exists, so the check runs and remembers this flow's miss in the flow cache.
    dp.enforcer.put({ address: "203.0.113.99", kind: "block", ratePps: 0 });
    assert.equal(dp.xdp.testRun(f, 3).retval, XDP_PASS);
    dp.enforcer.put({ address: "203.0.113.10", kind: "block", ratePps: 0 });
    assert.equal(dp.xdp.testRun(f).retval, XDP_DROP);
  }),
);

Deno.test(
  "enforce: a blocked IPv6 source is dropped; its IPv4 look-alike is not",
  withDatapath((dp) => {
    dp.enforcer.put({ address: "2001:db8::66", kind: "block", ratePps: 0 });
    assert.equal(dp.xdp.testRun(from6("2001:db8::66")).retval, XDP_DROP);
    assert.equal(dp.xdp.testRun(from6(V6.a)).retval, XDP_PASS);
    // 32.1.13.184 has the same first four bytes as 2001:db8::/32.
    dp.enforcer.put({ address: "32.1.13.184", kind: "block", ratePps: 0 });
    assert.equal(dp.xdp.testRun(from6("2001:db8::1234")).retval, XDP_PASS);
    assert.deepEqual(dp.enforcer.list().map((r) => r.address).sort(), [
      "2001:db8::66",
      "32.1.13.184",
    ]);
  }),
);

Deno.test(
  "enforce: a rate limit lets rate/10 packets through per 100 ms window and drops the rest",
  withDatapath((dp) => {
    dp.enforcer.put({ address: "203.0.113.11", kind: "rateLimit", ratePps: 1000 });
    // 2000 packets in well under a window (a test run takes microseconds per packet); a
    // window boundary inside the run would let at most one more allowance through.
    dp.xdp.testRun(from4("203.0.113.11"), 2000);
    const [r] = dp.enforcer.list();
    assert.equal(r.kind, "rateLimit");
    assert.equal(r.passedPackets + r.droppedPackets, 2000);
    assert.ok(r.passedPackets >= 100 && r.passedPackets <= 200, `passed ${r.passedPackets}`);
  }),
);

Deno.test(
  "enforce: the kernel stops applying a rule at its expiry, with nobody removing it",
  withDatapath(async (dp) => {
    const f = from4("203.0.113.12");
    dp.enforcer.put({
      address: "203.0.113.12",
      kind: "block",
      ratePps: 0,
      expiresAt: Date.now() + 300,
    });
    assert.equal(dp.xdp.testRun(f).retval, XDP_DROP);
    assert.equal(dp.enforcer.list()[0].expired, false);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(dp.xdp.testRun(f).retval, XDP_PASS);
    assert.equal(dp.enforcer.list()[0].expired, true);
    const expiresAt = dp.enforcer.list()[0].expiresAt!;
    assert.ok(Math.abs(expiresAt - (Date.now() - 100)) < 150, "expiry read back in wall time");
  }),
);

Deno.test(
  "enforce: the event rate shift samples new-flow events at run time",
  withDatapath((dp) => {
    assert.equal(dp.enforcer.eventRateShift, 0);
    dp.enforcer.setEventRateShift(10); // 1000 >> 10 = 0 events per second
    for (let p = 0; p < 5; p++) dp.xdp.testRun(from4(V4.a, 5000 + p));
    dp.enforcer.setEventRateShift(0);
    dp.xdp.testRun(from4(V4.a, 6000));
    const [st] = readIfaceStats(dp).filter((s) => s.ifindex === LO && s.hook === "xdp");
    assert.equal(st.eventsSuppressed, 5);
    assert.equal(st.eventsSent, 1);
  }),
);

Deno.test(
  "enforce: a source sharing a prefilter bit with a blocked one is looked up and passes",
  withDatapath((dp) => {
    // Two addresses with the same prefilter bit (found by search with the same hash).
    const want = enforceFilterIndex("203.0.113.20");
    let twin = "";
    for (let i = 0; i < 1 << 24 && !twin; i++) {
      const a = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
      if (enforceFilterIndex(a) === want) twin = a;
    }
    assert.ok(twin, "a colliding address exists");
    dp.enforcer.put({ address: "203.0.113.20", kind: "block", ratePps: 0 });
    assert.equal(dp.xdp.testRun(from4(twin)).retval, XDP_PASS);
    assert.equal(dp.xdp.testRun(from4("203.0.113.20")).retval, XDP_DROP);
    // Neither bit nor rule: passes without a lookup; the rule's counters saw only its own.
    assert.equal(dp.xdp.testRun(from4(V4.a)).retval, XDP_PASS);
    assert.equal(dp.enforcer.list()[0].droppedPackets, 1);
  }),
);
