/**
 * Drops per flow under a port scan: a scan of one-datagram UDP flows to closed ports (raw
 * frames from the test's namespace) is counted in full per interface and reason, while the
 * kernel keeps drops per flow for a bounded set of flows, where a flow that drops often during
 * the scan still gets its count.
 */
import assert from "node:assert/strict";
import { SignalsProbe } from "../../src/datapath/signals.ts";
import { withNetns } from "../../src/datapath/netns.ts";
import { sh, trafficCommand, VethPair } from "../helpers/netns.ts";

const UDP_FLOWS = new URL("../helpers/udp_flows.ts", import.meta.url).pathname;
/** bpf/x0tta6bl4.h: X0_DROP_FLOWS, X0_DROP_FLOW_BUDGET, X0_DROP_FLOW_MIN. */
const DROP_FLOWS = 1024, BUDGET = 128, MIN = 8;

Deno.test("drop flows: a scan of 6000 one-datagram flows is counted by reason in full, per flow only within the bound, and a flow that drops often during it keeps its count", async () => {
  using v = new VethPair(87);
  using probe = withNetns(v.b.ns, () => new SignalsProbe(["drops"]));
  const bIdx = Number(sh("cat", [`/sys/class/net/${v.b.dev}/ifindex`], v.b.ns).trim());
  const noSocket = () =>
    probe.drops().filter((d) => d.reason === "NO_SOCKET" && d.ifindex === bIdx)
      .reduce((a, d) => a + d.count, 0);
  const before = noSocket();
  const t0 = performance.now();
  // 6000 flows at 4000/s (1.5 s), and meanwhile 200 datagrams of one flow to another port.
  const scan = new Deno.Command("ip", {
    args: ["netns", "exec", v.a.ns, Deno.execPath(), "run", "-A", UDP_FLOWS, v.a.dev, v.a.ip4]
      .concat(["40000", "20000", "6000", "4000", v.b.ip4]),
    stdout: "piped",
    stderr: "piped",
  }).output();
  await new Promise((r) => setTimeout(r, 300));
  const heavy = await trafficCommand(v.a.ns, "udp-send", v.b.ip4, 9997, 200, 20).output();
  assert.ok(heavy.success, new TextDecoder().decode(heavy.stderr));
  const sent = await scan;
  assert.ok(sent.success, new TextDecoder().decode(sent.stderr));
  assert.equal(new TextDecoder().decode(sent.stdout).trim(), "6000");
  const epochs = Math.ceil((performance.now() - t0) / 2 ** 30 * 1e6) + 1;
  await new Promise((r) => setTimeout(r, 200));

  assert.ok(noSocket() - before >= 6200, `NO_SOCKET drops: ${noSocket() - before}`);
  const flows = [...probe.flows()].filter(([k, s]) => s.drops && k.startsWith("4/17/"));
  const scanFlows = flows.filter(([k]) => k.includes(`/${v.a.ip4}/40000/`));
  // Entered within each epoch's budget, or by the sketch (collisions of one-datagram flows
  // in both rows are rare); never more than the map holds.
  assert.ok(
    scanFlows.length <= Math.min(DROP_FLOWS, BUDGET * epochs + 60),
    `${scanFlows.length} scan flows kept over ${epochs} epochs`,
  );
  const h = flows.find(([k]) => k.endsWith(`/${v.b.ip4}/9997`));
  assert.ok(h, "the flow that drops often is kept");
  // At most about two admissions' worth of drops is lost before it entered.
  assert.ok(h[1].drops >= 200 - 2 * MIN && h[1].drops <= 200 + 2, `its drops: ${h[1].drops}`);
  assert.equal(probe.reasonName(h[1].lastDropReason), "NO_SOCKET");
});
