/**
 * The appliance's life: fallback when it lacks privileges, kill -9 and restart with counters
 * adopted from pins, interfaces that vanish and come back.
 */
import assert from "node:assert/strict";
import { Daemon, DaemonHome, sh } from "../helpers/daemon.ts";
import { nft, nftInputRule, type Side, udpSend, VethPair } from "../helpers/netns.ts";

function ping(from: Side, to: string, count: number) {
  sh("ping", ["-q", "-c", String(count), "-i", "0.02", to], from.ns);
}

interface Health {
  status: string;
  mode: string;
  fallbackReason?: string;
  components: { component: string; state: string; reason: string }[];
}

interface Ifaces {
  interfaces: { name: string; source: string; traffic: { direction: string; packets: number }[] }[];
}

function rxPackets(d: Daemon, name: string): number | undefined {
  const i = (d.json("/api/v1/interfaces") as Ifaces).interfaces.find((x) => x.name === name);
  return i?.traffic?.filter((t) => t.direction === "rx").reduce((a, t) => a + t.packets, 0);
}

Deno.test("lifecycle: without privileges it falls back, says why, and still counts", async () => {
  using v = new VethPair(80);
  await using d = new Daemon(v.b, ["--interface", v.b.dev], [
    "capsh",
    "--drop=cap_bpf,cap_perfmon,cap_sys_admin,cap_net_admin",
    "--",
    "-c",
  ]);
  await d.start();
  const h = d.json("/api/v1/health") as Health;
  assert.equal(h.mode, "fallback");
  assert.equal(h.status, "degraded");
  const fb = h.components.find((c) => c.component === "fallback");
  assert.equal(fb?.state, "degraded");
  assert.match(fb!.reason, /EPERM.*CAP_BPF/);
  assert.match(d.request("/readyz").body, /^ready: fallback: .*EPERM/);
  const before = await d.until("fallback counters", () => rxPackets(d, v.b.dev));
  ping(v.a, v.b.ip4, 10);
  const after = await d.until("counters to move", () => {
    const n = rxPackets(d, v.b.dev);
    return n !== undefined && n >= before + 10 ? n : undefined;
  });
  assert.ok(after >= before + 10);
  const m = d.request("/metrics").body;
  assert.match(m, /x0tta6bl4_mode\{mode="fallback"\} 1/);
  assert.match(
    m,
    new RegExp(
      `x0tta6bl4_interface_packets_total\\{interface="${v.b.dev}",direction="rx",family="all",protocol="all",source="fallback"\\} \\d+`,
    ),
  );
  // Still without privileges, retrying says why it stays in fallback.
  const retry = d.request("/api/v1/datapath/retry", { method: "POST", token: d.token });
  assert.equal(retry.status, 503);
  assert.match(JSON.parse(retry.body).reason, /EPERM/);
});

Deno.test("lifecycle: kill -9 mid-traffic, restart: counters go on, nothing doubled, no stale pin", async () => {
  using v = new VethPair(81);
  using home = new DaemonHome();
  await using d1 = new Daemon(v.b, ["--interface", v.b.dev], [], home);
  await d1.start();
  ping(v.a, v.b.ip4, 20);
  const before = await d1.until("20 pings counted", () => {
    const n = rxPackets(d1, v.b.dev);
    return n !== undefined && n >= 20 ? n : undefined;
  });
  const filters = () =>
    ["ingress", "egress"].map((dir) => v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, dir]));
  const pingBg = new Deno.Command("ip", {
    args: ["netns", "exec", v.a.ns, "ping", "-q", "-c", "40", "-i", "0.02", v.b.ip4],
    stdout: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await d1.stop("SIGKILL"))?.signal, "SIGKILL");
  // The TC filters of the dead daemon stay and keep counting into the pinned maps.
  assert.ok(filters().every((f) => f.includes("x0_tc_")));

  await using d2 = new Daemon(v.b, ["--interface", v.b.dev], [], home);
  await d2.start();
  await pingBg.status;
  // Every ping of the 40 is counted: before the kill, by the orphaned filter, or after.
  const after = await d2.until("counters to include all 40 pings", () => {
    const n = rxPackets(d2, v.b.dev);
    return n !== undefined && n >= before + 40 ? n : undefined;
  });
  assert.ok(after >= before + 40, `rx packets went from ${before} to ${after}`);
  assert.match(d2.log, /counters adopted from the previous run/);
  // Exactly one filter of ours per direction: the restart replaced the stale one in place.
  for (const f of filters()) assert.equal(f.match(/handle 0x7830/g)?.length, 1, f);
  assert.deepEqual(
    [...Deno.readDirSync(d1.pinDir)].map((e) => e.name).sort(),
    ["x0_enforce", "x0_flowcache", "x0_flows", "x0_ifslot", "x0_ifstats", "x0_runtime"],
  );
  assert.equal((await d2.stop())?.code, 0);
  assert.deepEqual(filters(), ["", ""]);
});

Deno.test("lifecycle: an interface that disappears is degraded, and attached again when back", async () => {
  using v = new VethPair(82);
  await using d = new Daemon(v.b, ["--interface", v.b.dev, "--interface", "x0flap"]);
  await d.start();
  const state = () =>
    (d.json("/api/v1/health") as Health).components.find((c) => c.component === "datapath:x0flap");
  const absent = await d.until(
    "x0flap degraded",
    () => state()?.state === "degraded" ? state() : undefined,
  );
  assert.match(absent.reason, /not present/);
  v.run(v.b, "ip", ["link", "add", "x0flap", "type", "veth", "peer", "name", "x0flap-p"]);
  const back = await d.until(
    "x0flap attached",
    () => state()?.state === "healthy" ? state() : undefined,
  );
  assert.match(back.reason, /attached/);
  assert.match(v.run(v.b, "tc", ["filter", "show", "dev", "x0flap", "ingress"]), /x0_tc_ingress/);
  v.run(v.b, "ip", ["link", "del", "x0flap"]);
  await d.until("x0flap degraded again", () => state()?.state === "degraded" ? true : undefined);
});

Deno.test("lifecycle: when the cause of the fallback goes away, retry brings eBPF back", async () => {
  using v = new VethPair(83);
  const btf = `${Deno.makeTempDirSync({ prefix: "x0t-btf-" })}/vmlinux`;
  try {
    await using d = new Daemon(v.b, ["--interface", v.b.dev, "--datapath.btf-path", btf]);
    await d.start();
    const h = d.json("/api/v1/health") as Health;
    assert.equal(h.mode, "fallback");
    assert.match(h.fallbackReason ?? "", /kernel BTF at .* is missing or unreadable/);
    Deno.copyFileSync("/sys/kernel/btf/vmlinux", btf); // the operator provides the BTF file
    const r = d.request("/api/v1/datapath/retry", { method: "POST", token: d.token });
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).mode, "ebpf");
    await d.until("eBPF health", () => {
      const x = d.json("/api/v1/health") as Health;
      return x.mode === "ebpf" &&
          x.components.find((c) => c.component === `datapath:${v.b.dev}`)?.state === "healthy"
        ? x
        : undefined;
    });
    assert.match(v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, "ingress"]), /x0_tc_ingress/);
  } finally {
    Deno.removeSync(btf.replace(/\/vmlinux$/, ""), { recursive: true });
  }
});

Deno.test("lifecycle: SIGHUP reloads the config file: interfaces come and go", async () => {
  using v = new VethPair(84);
  const dir = Deno.makeTempDirSync({ prefix: "x0t-conf-" });
  const file = `${dir}/x0tta6bl4.yaml`;
  try {
    Deno.writeTextFileSync(file, `datapath:\n  interfaces: [${v.b.dev}]\n`);
    await using d = new Daemon(v.b, ["--config", file]);
    await d.start();
    const watched = () =>
      (d.json("/api/v1/health") as Health).components.map((c) => c.component)
        .filter((c) => c.startsWith("datapath:")).sort();
    await d.until("veth-b watched", () => watched().length === 1 || undefined);
    Deno.writeTextFileSync(file, `datapath:\n  interfaces: [pad0]\n`);
    Deno.kill(d.pid, "SIGHUP");
    await d.until(
      "pad0 instead of veth-b",
      () => JSON.stringify(watched()) === '["datapath:pad0"]' || undefined,
    );
    assert.match(v.run(v.b, "tc", ["filter", "show", "dev", "pad0", "ingress"]), /x0_tc_ingress/);
    assert.equal(v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, "ingress"]), "");
    // A broken file is refused and the running configuration stays.
    Deno.writeTextFileSync(file, `datapath:\n  hook: sideways\n`);
    Deno.kill(d.pid, "SIGHUP");
    await d.until("the refusal logged", () => /reload refused/.test(d.log) || undefined);
    assert.match(d.log, /x0tta6bl4\.yaml:2:9: datapath\.hook/);
    assert.deepEqual(watched(), ["datapath:pad0"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("lifecycle: a burst of drops of one reason is announced on the event stream", async () => {
  using v = new VethPair(85);
  await using d = new Daemon(v.b, ["--interface", v.b.dev]);
  await d.start();
  await nft(v.b.ns, nftInputRule("x0drop", "udp dport 9996 drop"));
  await new Promise((r) => setTimeout(r, 500)); // a snapshot with the old count first
  udpSend(v.a.ns, v.b.ip4, 9996, 150, 64);
  const event = await d.until("a drops event", () => {
    const out = d.events(["Last-Event-ID: 0"], 1);
    const m = out.match(/event: drops\ndata: (.*)/);
    return m ? JSON.parse(m[1]) : undefined;
  });
  assert.equal(event.data.interface, v.b.dev);
  assert.equal(event.data.reason, "NETFILTER_DROP");
  assert.ok(event.data.new >= 100);
});
