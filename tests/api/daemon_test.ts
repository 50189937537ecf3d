/**
 * The appliance as users meet it: `main.ts serve` running in a test namespace, watching a veth
 * with real traffic, asked over real HTTP (curl inside the namespace). Every route, auth, bad
 * input, live events, /metrics through promtool and a real Prometheus.
 */
import assert from "node:assert/strict";
import { Daemon, type HttpReply, Prometheus } from "../helpers/daemon.ts";
import { nft, nftInputRule, type Side, sweep, udpSend, VethPair } from "../helpers/netns.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function udp(from: Side, to: string, port: number, count: number, size: number) {
  udpSend(from.ns, to, port, count, size);
}

function assertProblem(r: HttpReply, status: number, detail: RegExp) {
  assert.equal(r.status, status, r.body);
  assert.equal(r.headers["content-type"], "application/problem+json");
  const p = JSON.parse(r.body);
  assert.equal(p.status, status);
  assert.match(`${p.title} ${p.detail ?? ""}`, detail);
  assert.doesNotMatch(r.body, /\.ts:\d+|at [A-Za-z]+ \(/, "no stack trace");
}

interface Flow {
  proto: number;
  saddr: string;
  daddr: string;
  dport: number;
  packets: number;
  bytes: number;
  direction: string;
  interface: string;
}

function metric(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return undefined;
}

sweep();

Deno.test("daemon: API, auth, bad input, events, metrics, promtool and Prometheus", async (t) => {
  using v = new VethPair(70);
  await using d = new Daemon(v.b, ["--interface", v.b.dev]);
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined);

  await t.step("liveness, readiness, health", () => {
    assert.equal(d.request("/livez").status, 200);
    assert.match(d.request("/readyz").body, /ready: eBPF datapath/);
    const h = d.json("/api/v1/health") as {
      status: string;
      mode: string;
      components: { component: string; state: string; reason: string; since: string }[];
    };
    assert.equal(h.mode, "ebpf");
    const dp = h.components.find((c) => c.component === `datapath:${v.b.dev}`);
    assert.equal(dp?.state, "healthy");
    assert.match(dp!.reason, /attached: tcIngress, tcEgress/);
    assert.ok(!Number.isNaN(Date.parse(dp!.since)));
    for (const c of ["collector", "ringbuf", "fallback", "metrics", "cilium"]) {
      if (c === "metrics") d.request("/metrics");
      const again = d.json("/api/v1/health") as typeof h;
      assert.ok(again.components.some((x) => x.component === c), `component ${c}`);
    }
  });

  await t.step("real traffic: flows and metrics count exactly what was sent", async () => {
    udp(v.a, v.b.ip4, 7000, 25, 200);
    const labels = { interface: v.b.dev, direction: "rx", family: "ipv4", protocol: "udp" };
    // Waits for every figure asserted below: the flow and the interface's counters.
    const { flow, m } = await d.until("the UDP flow and its interface's counters", () => {
      const r = d.json(`/api/v1/flows?protocol=udp&port=7000&address=${v.a.ip4}`) as {
        flows: Flow[];
      };
      const f = r.flows.find((f) => f.direction === "rx");
      const m = d.request("/metrics").body;
      const counted = metric(m, "x0tta6bl4_interface_packets_total", labels) === 25 &&
        metric(m, "x0tta6bl4_flow_packets_total", { dport: "7000", direction: "rx" }) === 25;
      return f && f.packets === 25 && counted ? { flow: f, m } : undefined;
    });
    assert.deepEqual(
      [flow.interface, flow.saddr, flow.daddr, flow.packets, flow.bytes],
      [v.b.dev, v.a.ip4, v.b.ip4, 25, 25 * (14 + 20 + 8 + 200)],
    );
    assert.equal(metric(m, "x0tta6bl4_interface_packets_total", labels), 25);
    assert.equal(metric(m, "x0tta6bl4_interface_bytes_total", labels), 25 * 242);
    assert.equal(metric(m, "x0tta6bl4_flow_packets_total", { dport: "7000", direction: "rx" }), 25);
    assert.equal(metric(m, "x0tta6bl4_mode", { mode: "ebpf" }), 1);
    assert.equal(
      metric(m, "x0tta6bl4_component_health", {
        component: `datapath:${v.b.dev}`,
        state: "healthy",
      }),
      1,
    );
    assert.match(m, /^x0tta6bl4_build_info\{/m);
    const ifs = d.json("/api/v1/interfaces") as {
      interfaces: { name: string; source: string; hooks: string[] }[];
    };
    assert.deepEqual(ifs.interfaces.map((i) => [i.name, i.source]), [[v.b.dev, "ebpf"]]);
  });

  await t.step(
    "kernel signals: drops by reason on the flow, in the API and in /metrics",
    async () => {
      await nft(v.b.ns, nftInputRule("x0drop", "udp dport 9997 drop"));
      udp(v.a, v.b.ip4, 9997, 15, 100);
      const f = await d.until("the dropped flow", () => {
        const r = d.json("/api/v1/flows?port=9997") as { flows: (Flow & { drops?: number })[] };
        const x = r.flows.find((f) => f.direction === "rx");
        return x?.drops === 15 ? x : undefined;
      });
      assert.equal(f.packets, 15);
      const m = d.request("/metrics").body;
      const drops = metric(m, "x0tta6bl4_drops_total", {
        interface: v.b.dev,
        reason: "NETFILTER_DROP",
      });
      assert.ok(drops !== undefined && drops >= 15, `drops_total ${drops}`);
      const h = d.json("/api/v1/health") as {
        components: { component: string; state: string; reason: string }[];
      };
      const sig = h.components.find((c) => c.component === "signals");
      assert.equal(sig?.state, "healthy");
      assert.match(sig!.reason, /running: drops, retransmits, rtt/);
    },
  );

  await t.step("promtool check metrics finds no problem", () => {
    const body = d.request("/metrics").body;
    const p = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = p.stdin.getWriter();
    return (async () => {
      await w.write(new TextEncoder().encode(body));
      await w.close();
      const out = await p.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, text);
      assert.equal(text.trim(), "");
    })();
  });

  await t.step("flows: sorting, filters and bad queries", () => {
    const r = d.json("/api/v1/flows?sort=packets&limit=2") as { flows: Flow[]; total: number };
    assert.ok(r.flows.length <= 2 && r.total >= r.flows.length);
    assert.ok(r.flows.length < 2 || r.flows[0].packets >= r.flows[1].packets);
    const icmp = d.json("/api/v1/flows?protocol=icmp") as { flows: Flow[] };
    assert.ok(icmp.flows.every((f) => f.proto === 1));
    assertProblem(d.request("/api/v1/flows?limit=0"), 400, /limit/);
    assertProblem(d.request("/api/v1/flows?sort=size"), 400, /sort/);
    assertProblem(d.request("/api/v1/flows?protocol=bogus"), 400, /protocol/);
    assertProblem(d.request("/api/v1/flows?port=70000"), 400, /port/);
    assertProblem(d.request("/api/v1/flows?address=x;y"), 400, /address/);
    assertProblem(d.request("/api/v1/flows?colour=red"), 400, /colour|Unrecognized/i);
    assertProblem(d.request("/api/v1/nowhere"), 404, /no route/);
    assertProblem(d.request("/api/v1/mesh/peers"), 404, /mesh not enabled/);
  });

  await t.step("mutations need the token; bodies are limited and validated", () => {
    const body = JSON.stringify({ name: "pad0" });
    assertProblem(
      d.request("/api/v1/interfaces", { method: "POST", body }),
      401,
      /bearer token is required/,
    );
    assertProblem(
      d.request("/api/v1/interfaces", { method: "POST", body, token: "wrong-token-123456" }),
      401,
      /wrong token/,
    );
    assertProblem(d.request("/api/v1/interfaces/pad0", { method: "DELETE" }), 401, /bearer/);
    assertProblem(d.request("/api/v1/datapath/retry", { method: "POST" }), 401, /bearer/);
    const token = d.token;
    assert.equal(Deno.statSync(`${d.stateDir}/api-token`).mode! & 0o777, 0o600);
    const big = JSON.stringify({ name: "x".repeat(70_000) });
    assertProblem(
      d.request("/api/v1/interfaces", { method: "POST", body: big, token }),
      413,
      /too large/,
    );
    assertProblem(
      d.request("/api/v1/interfaces", { method: "POST", body: "{nope", token }),
      400,
      /JSON/,
    );
    assertProblem(
      d.request("/api/v1/interfaces", { method: "POST", body: '{"name":"a/b"}', token }),
      422,
      /interface name/,
    );
    assertProblem(
      d.request("/api/v1/interfaces", { method: "POST", body: '{"name":"eth0","x":1}', token }),
      422,
      /x|Unrecognized/,
    );
    const unknown = d.request("/api/v1/interfaces", {
      method: "POST",
      body: '{"name":"x0nope9"}',
      token,
    });
    assertProblem(unknown, 404, /x0nope9/);
    assert.equal(JSON.parse(unknown.body).errno, "ENODEV");

    const ok = d.request("/api/v1/interfaces", { method: "POST", body, token });
    assert.equal(ok.status, 201, ok.body);
    assert.match(v.run(v.b, "tc", ["filter", "show", "dev", "pad0", "ingress"]), /x0_tc_ingress/);
    assert.equal(d.request("/api/v1/interfaces/pad0", { method: "DELETE", token }).status, 204);
    assert.equal(v.run(v.b, "tc", ["filter", "show", "dev", "pad0", "ingress"]), "");
    assertProblem(
      d.request("/api/v1/interfaces/pad0", { method: "DELETE", token }),
      404,
      /not watched/,
    );
    assert.equal(d.request("/api/v1/datapath/retry", { method: "POST", token }).status, 200);
  });

  await t.step("live events over SSE, resumable with Last-Event-ID", () => {
    const sse = (headers: string[]) => d.events(headers, 1.5);
    const all = sse(["Last-Event-ID: 0"]);
    const ids = [...all.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    assert.ok(ids.length >= 3, all);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "ids ascend");
    assert.match(all, /^event: attach$/m);
    assert.match(all, /^event: flow$/m);
    const from = ids[ids.length - 2];
    const resumed = [...sse([`Last-Event-ID: ${from}`]).matchAll(/^id: (\d+)$/gm)].map((m) =>
      Number(m[1])
    );
    assert.equal(resumed[0], ids[ids.length - 1]);
    assertProblem(
      d.request("/api/v1/events", { header: ["Last-Event-ID: -4"] }),
      400,
      /Last-Event-ID/,
    );
  });

  await t.step("status and top read the running appliance through its API", () => {
    const st = d.cli(["status"]);
    const out = st.stdout;
    assert.equal(st.code, 0, out + st.stderr);
    assert.match(out, /status: healthy\s+mode: ebpf/);
    assert.match(out, new RegExp(`${v.b.dev}\\s+ebpf`));
    assert.match(out, /MAPE-K: observe mode, 0 action\(s\) in force/);
    const top = d.cli(["top", "--count", "1", "--interval", "0.2"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, new RegExp(`${v.b.dev}\\s+rx\\s+udp`));
    // Nobody at that address (run outside the helper, which names this daemon's address).
    const gone = new Deno.Command("ip", {
      args: ["netns", "exec", v.b.ns, Deno.execPath(), "run", "-A", MAIN, "status"]
        .concat(["--listen", "127.0.0.1:1"]),
      stderr: "piped",
    }).outputSync();
    assert.equal(gone.code, 3);
    assert.match(new TextDecoder().decode(gone.stderr), /no appliance answers/);
  });

  await t.step("bundle: a support tarball with what it lists and no secret", () => {
    const dir = Deno.makeTempDirSync({ prefix: "x0t-bundle-" });
    try {
      const out = d.cli(["bundle", "--output", `${dir}/b.tar.gz`]);
      const text = out.stdout;
      assert.equal(out.code, 0, text + out.stderr);
      assert.match(text, /support bundle: .*b\.tar\.gz/);
      const listed = text.match(/contains: (.*)/)![1].split(", ");
      const list = new TextDecoder().decode(
        new Deno.Command("tar", { args: ["-tzf", `${dir}/b.tar.gz`], stdout: "piped" }).outputSync()
          .stdout,
      ).trim().split("\n").filter((l) => !l.endsWith("/")).map((l) => l.replace(/^[^/]+\//, ""));
      assert.deepEqual(list.sort(), listed.sort());
      new Deno.Command("tar", { args: ["-xzf", `${dir}/b.tar.gz`, "-C", dir] }).outputSync();
      const all = list.map((f) =>
        Deno.readTextFileSync(
          `${dir}/${[...Deno.readDirSync(dir)].find((e) => e.isDirectory)!.name}/${f}`,
        )
      ).join("\n");
      assert.ok(!all.includes(d.token), "the API token is in the bundle");
      assert.match(all, /x0tta6bl4_interface_packets_total/); // metrics are there
      assert.match(all, new RegExp(`datapath:${v.b.dev}`)); // and health
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });

  await t.step("OpenAPI document lists every route", () => {
    const doc = d.json("/api/v1/openapi.json") as {
      paths: Record<string, Record<string, unknown>>;
    };
    const expected: [string, string][] = [
      ["/livez", "get"],
      ["/readyz", "get"],
      ["/metrics", "get"],
      ["/api/v1/openapi.json", "get"],
      ["/api/v1/health", "get"],
      ["/api/v1/interfaces", "get"],
      ["/api/v1/interfaces", "post"],
      ["/api/v1/interfaces/{name}", "delete"],
      ["/api/v1/flows", "get"],
      ["/api/v1/events", "get"],
      ["/api/v1/datapath/retry", "post"],
      ["/api/v1/mesh/status", "get"],
      ["/api/v1/mesh/peers", "get"],
      ["/api/v1/mesh/sd", "get"],
    ];
    for (const [path, method] of expected) {
      assert.ok(doc.paths[path]?.[method], `${method} ${path}`);
    }
  });

  await t.step("a real Prometheus scrapes it and finds the traffic", async () => {
    const target = d.base.replace("http://", "");
    await using prom = new Prometheus(
      v.b.ns,
      19090 + (Deno.pid % 1000),
      () =>
        `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: x0tta6bl4\n    static_configs:\n      - targets: ["${target}"]\n`,
    );
    const value = await d.until("Prometheus to have the series", () =>
      prom.query(
        `x0tta6bl4_interface_packets_total{direction="rx",protocol="udp",family="ipv4"}`,
      )?.[0]?.value?.[1], 20_000);
    assert.equal(Number(value), 25 + 15); // the 25 counted, and the 15 the firewall dropped
  });

  const status = await d.stop();
  assert.equal(status?.code, 0);
  assert.match(d.log, /stopped: everything detached/);
  for (const dir of ["ingress", "egress"]) {
    assert.equal(v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, dir]), "");
  }
});
