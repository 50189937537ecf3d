/**
 * The real appliance under hostile or careless clients, in a test namespace, with curl and a real
 * Prometheus: a page that rebinds DNS to the API, reads behind the token with a read-only token
 * for the scraper, and an event-stream client that never reads.
 */
import assert from "node:assert/strict";
import { Daemon, DaemonHome, Prometheus } from "../helpers/daemon.ts";
import { trafficCommand, VethPair } from "../helpers/netns.ts";

function metric(text: string, line: string): number | undefined {
  const m = text.split("\n").find((l) => l.startsWith(`${line} `));
  return m === undefined ? undefined : Number(m.split(" ").at(-1));
}

Deno.test("hostile clients: DNS rebinding is refused; with auth all the read-only token reads, never changes, and feeds Prometheus", async () => {
  using v = new VethPair(86);
  using home = new DaemonHome();
  const readFile = `${home.stateDir}/read-token`;
  await using d = new Daemon(
    v.b,
    ["--interface", v.b.dev, "--api.auth", "all", "--api.read-token-file", readFile],
    [],
    home,
  );
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined);
  const read = Deno.readTextFileSync(readFile).trim();
  assert.equal(Deno.statSync(readFile).mode! & 0o777, 0o600);

  // A page whose name resolves to the API's address: the Host says who it is.
  const rebound = d.request("/api/v1/flows", { header: ["Host: attacker.example:9477"] });
  assert.equal(rebound.status, 403);
  assert.match(rebound.body, /api\.allowed_hosts/);
  // Reads need a token; the read-only one reads and never changes anything.
  assert.equal(d.request("/metrics").status, 401);
  assert.equal(d.request("/api/v1/health", { token: read }).status, 200);
  assert.equal(d.request("/metrics", { token: read }).status, 200);
  const post = d.request("/api/v1/interfaces", {
    method: "POST",
    token: read,
    body: JSON.stringify({ name: "lo" }),
  });
  assert.equal(post.status, 403, post.body);
  assert.equal(d.request("/api/v1/interfaces", { token: d.token }).status, 200);
  // `status` as root reads with the token file.
  const st = d.cli(["status"]);
  assert.notEqual(st.code, 3, st.stderr);
  assert.match(st.stdout, new RegExp(v.b.dev));

  // A real Prometheus scrapes with the read-only token from its credentials_file; a job
  // without it gets nothing.
  const target = d.base.replace("http://", "");
  await using prom = new Prometheus(v.b.ns, 19390 + (Deno.pid % 500), (dir) => {
    Deno.writeTextFileSync(`${dir}/read-token`, read);
    return [
      "global:",
      "  scrape_interval: 1s",
      "scrape_configs:",
      "  - job_name: with_token",
      "    authorization:",
      `      credentials_file: ${dir}/read-token`,
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "  - job_name: without_token",
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n");
  });
  const up = await d.until("both jobs scraped", () => {
    const r = prom.query("up");
    return r && r.length === 2 ? r : undefined;
  }, 20_000);
  const byJob = Object.fromEntries(up.map((x) => [x.metric.job, x.value[1]]));
  assert.deepEqual(byJob, { with_token: "1", without_token: "0" });
  const build = await d.until("build_info through the token", () => {
    const r = prom.query('x0tta6bl4_build_info{job="with_token"}');
    return r?.length ? r : undefined;
  }, 20_000);
  assert.equal(build[0].value[1], "1");
});

Deno.test("hostile clients: an event-stream client that never reads loses only its own events; the ring buffer stays healthy", async () => {
  using v = new VethPair(85);
  // Small socket buffers in the namespace, so the client's backlog is in our queue, not the
  // kernel's (the default buffers would hold tens of thousands of events).
  v.run(v.b, "sysctl", [
    "-qw",
    "net.ipv4.tcp_rmem=4096 4096 4096",
    "net.ipv4.tcp_wmem=4096 4096 4096",
  ]);
  await using d = new Daemon(v.b, ["--interface", v.b.dev, "--datapath.event-rate", "1000000"]);
  await d.start();
  await d.until("ready", () => d.request("/readyz").status === 200 || undefined);
  // A client that reads one byte a second (a laptop asleep with the page open).
  const slow = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      v.b.ns,
      "curl",
      "-s",
      "-N",
      "--limit-rate",
      "1",
      `${d.base}/api/v1/events`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await d.until("the slow client connected", () => {
      const m = d.request("/metrics").body;
      return (metric(m, "x0tta6bl4_event_clients") ?? 0) >= 1 || undefined;
    });
    // Thousands of new flows, each one event: refused TCP connections to many ports.
    const out = trafficCommand(v.a.ns, "tcp-connect", v.b.ip4, "20000-24999", 5000).outputSync();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const m = await d.until("the slow client let go", () => {
      const m = d.request("/metrics").body;
      return (metric(m, "x0tta6bl4_event_clients_disconnected_total") ?? 0) >= 1 ? m : undefined;
    }, 20_000);
    assert.ok((metric(m, "x0tta6bl4_event_client_lost_events_total") ?? 0) >= 1000);
    assert.equal(metric(m, 'x0tta6bl4_ringbuf_events_total{outcome="lost_consumer"}'), 0);
    const h = d.json("/api/v1/health") as { components: { component: string; state: string }[] };
    assert.equal(h.components.find((c) => c.component === "ringbuf")?.state, "healthy");
    // An operator's check still says all is well, and a fresh client streams as before.
    const st = d.cli(["status"]);
    assert.equal(st.code, 0, st.stdout + st.stderr);
    assert.match(d.events(["Last-Event-ID: 0"], 1), /^event: hello$/m);
  } finally {
    slow.kill("SIGTERM");
    await slow.status;
  }
});
