/**
 * Remote-write end to end: the real appliance (`main.ts serve`) in a test namespace, watching a
 * veth with known traffic, pushes its /metrics every second to a real Prometheus in the same
 * namespace (nothing scrapes it), which then answers the same interface and flow counts as the
 * appliance's /metrics; the appliance's health shows the push.
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { Daemon } from "../helpers/daemon.ts";
import { sweep, udpSend, VethPair } from "../helpers/netns.ts";
import { metric, Prometheus } from "../helpers/remote_write.ts";

sweep();

Deno.test("e2e: the appliance pushes /metrics to a real Prometheus by remote-write", async () => {
  using v = new VethPair(72);
  // The namespace is the test's own: the port is free there.
  await using prom = new Prometheus(9090, { ns: v.b.ns });
  await prom.start();
  await using d = new Daemon(v.b, [
    "--interface",
    v.b.dev,
    "--export.remote-write.url",
    prom.url,
    "--export.remote-write.interval-s",
    "1",
    "--export.remote-write.external-labels",
    "site=lab",
  ]);
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined);

  udpSend(v.a.ns, v.b.ip4, 7000, 25, 200);
  const labels = { interface: v.b.dev, direction: "rx", family: "ipv4", protocol: "udp" };
  const m = await d.until("the traffic on /metrics", () => {
    const m = d.request("/metrics").body;
    return metric(m, "x0tta6bl4_interface_packets_total", labels) === 25 &&
        metric(m, "x0tta6bl4_flow_packets_total", { dport: "7000", direction: "rx" }) === 25
      ? m
      : undefined;
  });
  const sel = `job="x0tta6bl4",instance="${hostname()}",x0tta6bl4_node="${hostname()}",site="lab"`;
  const ifSel = `${sel},interface="${v.b.dev}",direction="rx",family="ipv4",protocol="udp"`;
  const wanted: [string, number][] = [
    [`x0tta6bl4_interface_packets_total{${ifSel}}`, 25],
    [
      `x0tta6bl4_interface_bytes_total{${ifSel}}`,
      metric(m, "x0tta6bl4_interface_bytes_total", labels)!,
    ],
    [`x0tta6bl4_flow_packets_total{${sel},dport="7000",direction="rx"}`, 25],
    [`x0tta6bl4_flow_bytes_total{${sel},dport="7000",direction="rx"}`, 25 * 242],
  ];
  assert.equal(wanted[1][1], 25 * 242);
  const deadline = Date.now() + 20_000;
  for (const [q, want] of wanted) {
    let got: number | undefined;
    while ((got = await prom.value(q)) !== want && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(got, want, `${q}\n${prom.log.slice(-2000)}\n${d.log}`);
  }
  // The pushed page is the scraped page: as many of the appliance's own series (process
  // metrics aside, they are read apart) in Prometheus as on /metrics, once both are steady.
  const own = (t: string) =>
    t.split("\n").filter((l) => l.startsWith("x0tta6bl4_") && !l.startsWith("x0tta6bl4_process"))
      .length;
  const count = `count({${sel},__name__=~"x0tta6bl4_.*",__name__!~"x0tta6bl4_process_.*"})`;
  let pushed: number | undefined, page = 0;
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    [pushed, page] = [await prom.value(count), own(d.request("/metrics").body)];
    if (pushed === page) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(pushed, page, "the same series in Prometheus as on /metrics");
  assert.ok(page > 10, `${page} series`);

  const h = d.json("/api/v1/health") as {
    components: { component: string; state: string; reason: string }[];
  };
  const rw = h.components.find((c) => c.component === "export:remote_write");
  assert.equal(rw?.state, "healthy", JSON.stringify(rw));
  assert.match(rw!.reason, /samples sent in \d+ requests/);

  const status = await d.stop();
  assert.equal(status?.code, 0, d.log);
});
