/**
 * What one snapshot reports is consistent: while traffic flows, a scrape never shows a flow ahead
 * of its interface's counters (a reader sees both from one moment, or the counters later).
 */
import assert from "node:assert/strict";
import { Daemon } from "../helpers/daemon.ts";
import { trafficCommand, VethPair } from "../helpers/netns.ts";

function value(text: string, name: string, labels: string[]): number {
  const line = text.split("\n").find((l) =>
    l.startsWith(`${name}{`) && labels.every((x) => l.includes(x))
  );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

Deno.test("consistency: during a UDP stream, no scrape shows the flow ahead of its interface's counters", async () => {
  using v = new VethPair(83);
  await using d = new Daemon(v.b, ["--interface", v.b.dev, "--collect.interval-ms", "100"]);
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined);
  const stream = trafficCommand(v.a.ns, "udp-rate", v.a.ip4, v.b.ip4, 7100, 20000, 4).spawn();
  let pages = 0, moving = 0, last = -1;
  try {
    const end = Date.now() + 3500;
    while (Date.now() < end) {
      const m = d.request("/metrics").body;
      const flow = value(m, "x0tta6bl4_flow_packets_total", ['dport="7100"', 'direction="rx"']);
      const iface = value(m, "x0tta6bl4_interface_packets_total", [
        `interface="${v.b.dev}"`,
        'direction="rx"',
        'family="ipv4"',
        'protocol="udp"',
      ]);
      assert.ok(flow <= iface, `flow ${flow} ahead of its interface's ${iface} (page ${pages})`);
      if (flow > last) moving++;
      last = flow;
      pages++;
    }
  } finally {
    await stream.output();
  }
  assert.ok(pages >= 20 && moving >= 10, `${pages} pages, the flow grew in ${moving}`);
});
