/**
 * IPFIX end to end: real traffic across a veth pair between two test namespaces, the appliance
 * watching veth-b (as tests/helpers/daemon.ts starts it) and exporting to nfdump's nfcapd in the
 * other namespace, with a 2 s active and a 1 s idle timeout. What nfcapd received must add up,
 * per flow, to exactly the packets sent and their frames' bytes (Ethernet header included, as the
 * datapath counts them), a long flow cut into several records by the active timeout.
 */
import assert from "node:assert/strict";
import { Daemon } from "../helpers/daemon.ts";
import { sweep, trafficCommand, udpSend, VethPair } from "../helpers/netns.ts";
import { Nfcapd } from "../export/collectors.ts";

/** Ethernet, IP and UDP headers around a datagram's payload. */
const frame4 = (payload: number) => 14 + 20 + 8 + payload;
const frame6 = (payload: number) => 14 + 40 + 8 + payload;

Deno.test("IPFIX: nfcapd's records add up to exactly the packets sent across the veth", async () => {
  sweep();
  using v = new VethPair(60);
  const port = 4739;
  await using nfcapd = new Nfcapd(v.a.ip4, port, v.a.ns);
  await nfcapd.start();
  await using d = new Daemon(v.b, [
    "--interface",
    v.b.dev,
    "--export.ipfix.collectors",
    `${v.a.ip4}:${port}`,
    "--export.ipfix.active-timeout-s",
    "2",
    "--export.ipfix.idle-timeout-s",
    "1",
  ]);
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined, 20_000);

  // A long IPv4 flow into veth-b (5 s at 400 packets/s: cut by the active timeout), a burst of
  // IPv6 datagrams into it, and a burst out of it (TC egress).
  const long = trafficCommand(v.a.ns, "udp-rate", v.a.ip4, v.b.ip4, 9999, 400, 5).spawn();
  udpSend(v.a.ns, v.b.ip6, 9998, 1000, 100);
  udpSend(v.b.ns, v.a.ip4, 9997, 300, 200);
  const out = await long.output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const longSent = Number(new TextDecoder().decode(out.stdout).trim());
  assert.ok(longSent > 1000, `udp-rate sent ${longSent}`);

  // Every flow idle for more than 1 s is exported; then the daemon stops (forced end).
  await new Promise((r) => setTimeout(r, 3000));
  const health = d.json("/api/v1/health") as {
    components: { component: string; state: string; reason: string }[];
  };
  const exp = health.components.find((c) => c.component === `export:ipfix ${v.a.ip4}:${port}`);
  assert.ok(exp, JSON.stringify(health));
  assert.equal(exp.state, "healthy", exp.reason);
  assert.match(exp.reason, /sent [1-9]\d* records/);
  // `x0tta6bl4 status` shows it with what was sent and what failed; /metrics counts it.
  const cli = d.cli(["status"]);
  assert.equal(cli.code, 0, cli.stdout + cli.stderr);
  const name = `export:ipfix ${v.a.ip4}:${port}`.replaceAll(".", "\\.");
  assert.match(
    cli.stdout,
    new RegExp(
      `^${name}\\s+healthy\\s+\\S+\\s+sent [1-9]\\d* records in [1-9]\\d* messages, ` +
        "\\d+ queued, 0 dropped, 0 failed sends$",
      "m",
    ),
  );
  const labels = `kind="ipfix",destination="${v.a.ip4}:${port}"`;
  const metrics = d.request("/metrics").body;
  assert.match(
    metrics,
    new RegExp(`^x0tta6bl4_export_records_total\\{${labels}\\} [1-9]\\d*$`, "m"),
  );
  for (
    const line of [`failures_total{${labels}} 0`, `dropped_total{${labels},reason="queue_full"} 0`]
  ) {
    assert.ok(metrics.includes(`\nx0tta6bl4_export_${line}\n`), line);
  }
  const status = await d.stop();
  assert.equal(status?.code, 0, d.log);
  assert.equal(await nfcapd.drained(), 0, "no datagram dropped at nfcapd's socket");
  await nfcapd.stop();

  const flows = nfcapd.flows();
  const find = (daddr: string, dport: number, proto = 17) => {
    const hits = [...flows].filter(([k]) => k.endsWith(` ${daddr} ${dport} ${proto}`));
    assert.equal(
      hits.length,
      1,
      `one flow to ${daddr}:${dport} in ${[...flows.keys()].join("\n")}`,
    );
    return hits[0][1];
  };
  const a = find(v.b.ip4, 9999);
  assert.equal(a.packets, longSent);
  assert.equal(a.octets, longSent * frame4(32));
  assert.ok(a.records >= 2, `the active timeout cut the long flow: ${a.records} records`);
  const b = find(v.b.ip6, 9998);
  assert.deepEqual([b.packets, b.octets], [1000, 1000 * frame6(100)]);
  const c = find(v.a.ip4, 9997);
  assert.deepEqual([c.packets, c.octets], [300, 300 * frame4(200)]);
  assert.match(nfcapd.exporters(), /Sampler: .*packet interval: 1, packet space: 0/);
});
