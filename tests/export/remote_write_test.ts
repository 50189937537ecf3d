/**
 * The remote-write sender against stand-in receivers on loopback (Deno.serve on 127.0.0.1):
 * the protocol's headers and authentication, what is retried (5xx, 429, the network, no answer)
 * with back-off and what is not (4xx, redirects), hostile answers (endless bodies, garbage),
 * the bounded queue that drops the oldest, stop()'s grace period, and configurations that
 * cannot push. No BPF, no namespace.
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { defaultConfig } from "../../src/config/schema.ts";
import type { Exporter } from "../../src/export/exporter.ts";
import { type RemoteWriteOptions, RemoteWriter } from "../../src/export/remote_write.ts";
import { MetricsRenderer } from "../../src/metrics/exposition.ts";
import {
  BUILD,
  type DecodedSeries,
  decodeWriteRequest,
  flow,
  freePort,
  page,
  snapshot,
  testWriter,
  until,
} from "../helpers/remote_write.ts";

interface Received {
  at: number;
  headers: Headers;
  series: DecodedSeries[];
  samples: number;
}

/** A receiver on 127.0.0.1 that records every request and answers as `answer` says. */
class StandIn implements AsyncDisposable {
  readonly requests: Received[] = [];
  /** The answer to the n-th request (1-based); 204 unless set. */
  answer: (n: number) => Response | Promise<Response> = () => new Response(null, { status: 204 });
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  #release!: () => void;
  /** Resolved when the stand-in closes: a handler that hangs waits for it. */
  readonly released = new Promise<void>((r) => this.#release = r);

  constructor() {
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const body = new Uint8Array(await req.arrayBuffer());
      const series = decodeWriteRequest(body);
      this.requests.push({
        at: performance.now(),
        headers: req.headers,
        series,
        samples: series.reduce((n, s) => n + s.samples.length, 0),
      });
      return await this.answer(this.requests.length);
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/api/v1/write`;
  }

  /** An answer that never comes while the stand-in is open. */
  hang(): Promise<Response> {
    return this.released.then(() => new Response(null, { status: 503 }));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#release();
    await this.#server.shutdown();
  }
}

const logged: string[] = [];
const log = (level: string, msg: string) => logged.push(`${level} ${msg}`);

const writer = (url: string, over: Partial<RemoteWriteOptions> = {}) =>
  testWriter(url, { timeoutMs: 2000, minBackoffMs: 50, stopGraceMs: 1000, ...over }, log);

let clock = Date.now() - 60_000;
/** Offers a page at the next second of a clock of its own, and lets it be read. */
async function offer(w: Exporter, text: string): Promise<number> {
  clock += 1000;
  w.offer(snapshot([], { takenAt: clock }), () => text);
  await new Promise((r) => setTimeout(r, 0)); // the page is read in the background
  return clock;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("remote-write: a page pushed with the protocol's headers, bearer token and labels", async () => {
  await using rx = new StandIn();
  const dir = Deno.makeTempDirSync({ prefix: "x0t-rw-" });
  Deno.writeTextFileSync(`${dir}/token`, "s3cret-token\n");
  const w = writer(rx.url, {
    bearerTokenFile: `${dir}/token`,
    headers: ["X-Scope-OrgID: tenant-1"],
    externalLabels: ["site=lab"],
  });
  try {
    const r = new MetricsRenderer({
      topFlows: 5,
      interfaceAllow: [],
      interfaceDeny: [],
      processMetrics: false,
    });
    const s = snapshot([flow(53, 900)], { rxPackets: 25, takenAt: 1_700_000_123_456 });
    const text = r.renderSnapshot(s, [], BUILD);
    w.offer(s, () => text);
    await until("the request", () => w.status().sent > 0);
    assert.equal(rx.requests.length, 1);
    const { headers, series } = rx.requests[0];
    assert.equal(headers.get("content-encoding"), "snappy");
    assert.equal(headers.get("content-type"), "application/x-protobuf");
    assert.equal(headers.get("x-prometheus-remote-write-version"), "0.1.0");
    assert.match(headers.get("user-agent")!, /^x0tta6bl4\/\d+\.\d+\.\d+$/);
    assert.equal(headers.get("authorization"), "Bearer s3cret-token");
    assert.equal(headers.get("x-scope-orgid"), "tenant-1");
    const lines = text.split("\n").filter((l) => l && !l.startsWith("#"));
    assert.equal(series.length, lines.length, "one series per line of the page");
    const rxPackets = series.find((x) =>
      x.labels.__name__ === "x0tta6bl4_interface_packets_total" && x.labels.direction === "rx"
    )!;
    assert.deepEqual(rxPackets.labels, {
      __name__: "x0tta6bl4_interface_packets_total",
      direction: "rx",
      family: "ipv4",
      instance: hostname(),
      interface: "eth0",
      job: "x0tta6bl4",
      protocol: "udp",
      site: "lab",
      source: "ebpf",
    });
    assert.deepEqual(rxPackets.samples.map((x) => [x.value, x.timestamp]), [[
      25,
      1_700_000_123_456,
    ]]);
    const st = w.status();
    assert.deepEqual([st.state, st.sent, st.failed, st.dropped], ["healthy", lines.length, 0, 0]);
    assert.match(st.reason, new RegExp(`${lines.length} samples sent in 1 requests, 0 queued`));
    // What /metrics shows of it (src/export/metrics.ts): the URL without its query.
    assert.deepEqual([st.kind, st.destination, st.queued], ["remote_write", rx.url, 0]);
    assert.ok(st.lastSuccessAt! <= Date.now() && st.lastSuccessAt! > Date.now() - 10_000);
  } finally {
    await w.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("remote-write: basic auth from a password file", async () => {
  await using rx = new StandIn();
  const dir = Deno.makeTempDirSync({ prefix: "x0t-rw-" });
  Deno.writeTextFileSync(`${dir}/pw`, "pä:ss\n");
  const w = writer(rx.url, { basicAuthUser: "box-7", basicAuthPasswordFile: `${dir}/pw` });
  try {
    await offer(w, page(1));
    await until("the request", () => rx.requests.length === 1);
    const auth = rx.requests[0].headers.get("authorization")!;
    assert.match(auth, /^Basic /);
    const raw = Uint8Array.from(atob(auth.slice(6)), (c) => c.charCodeAt(0));
    assert.equal(new TextDecoder().decode(raw), "box-7:pä:ss");
  } finally {
    await w.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("remote-write: one page per interval, however often snapshots come", async () => {
  await using rx = new StandIn();
  const w = writer(rx.url, { intervalMs: 300 });
  try {
    for (let i = 0; i < 5; i++) await offer(w, page(3));
    await sleep(100);
    assert.equal(w.status().sent, 3, "the first offer only");
    await sleep(250);
    await offer(w, page(3));
    await until("the second page", () => w.status().sent === 6);
    assert.deepEqual(rx.requests.map((r) => r.samples), [3, 3]);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a page offered while the last is still read is not taken, and counted", async () => {
  await using rx = new StandIn();
  const w = writer(rx.url);
  try {
    w.offer(snapshot([], { takenAt: clock += 1000 }), () => page(2, 1));
    let rendered = false;
    w.offer(snapshot([], { takenAt: clock += 1000 }), () => {
      rendered = true;
      return page(2, 2);
    });
    assert.equal(rendered, false, "not even rendered");
    await until("the first page", () => w.status().sent === 2);
    assert.match(w.status().reason, /; 1 pages not taken \(the one before was still being read/);
    assert.deepEqual(rx.requests[0].series.map((s) => s.samples[0].value), [1, 1]);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a 400 is not retried: its samples are dropped and counted", async () => {
  await using rx = new StandIn();
  rx.answer = (n) =>
    n === 1
      ? new Response("out of order sample\n\u0007 for series m", { status: 400 })
      : new Response(null, { status: 204 });
  const w = writer(rx.url);
  try {
    await offer(w, page(7));
    await until("the refusal", () => w.status().dropped === 7);
    await sleep(300); // back-off would have retried by now (50 ms)
    assert.equal(rx.requests.length, 1);
    let st = w.status();
    assert.deepEqual([st.state, st.sent, st.failed, st.dropped], ["degraded", 0, 1, 7]);
    assert.equal(st.lastError, "HTTP 400: out of order sample for series m");
    assert.match(st.reason, /7 dropped \(0 queue full, 7 rejected, 0 at stop\)/);
    assert.deepEqual(st.droppedBy, { queue_full: 0, rejected: 7, stopped: 0 });
    assert.equal(st.lastSuccessAt, undefined);
    // It goes on with the next page.
    await offer(w, page(7, 2));
    await until("the next page", () => w.status().sent === 7);
    st = w.status();
    assert.equal(st.state, "degraded", "a drop in the last minute");
    assert.equal(rx.requests[1].series[0].samples[0].value, 2);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: 5xx and 429 are retried with exponential back-off until accepted", async () => {
  await using rx = new StandIn();
  const codes = [503, 429, 500, 502, 503];
  rx.answer = (n) =>
    n <= codes.length
      ? new Response("busy", { status: codes[n - 1] })
      : new Response(null, { status: 204 });
  const w = writer(rx.url, { minBackoffMs: 80, maxBackoffMs: 320 });
  try {
    await offer(w, page(4));
    await until("delivery", () => w.status().sent === 4, 10_000);
    assert.equal(rx.requests.length, codes.length + 1);
    // The same samples each time.
    for (const r of rx.requests) assert.deepEqual(r.series, rx.requests[0].series);
    // Waits: 80 ms doubled after each failure, capped at 320, each between half and all of it.
    const gaps = rx.requests.slice(1).map((r, i) => r.at - rx.requests[i].at);
    [80, 160, 320, 320, 320].forEach((d, i) => {
      assert.ok(gaps[i] >= d / 2 - 5 && gaps[i] <= d + 100, `wait ${i}: ${gaps[i]} ms for ${d}`);
    });
    const st = w.status();
    assert.deepEqual([st.state, st.sent, st.failed, st.dropped], ["healthy", 4, 5, 0]);
    assert.equal(st.lastError, "HTTP 503: busy");
    assert.ok(logged.includes("warn remote-write failed: retrying with back-off"));
    assert.ok(logged.includes("info remote-write delivers again"));
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a receiver that does not answer times out and is retried; offer never waits", async () => {
  await using rx = new StandIn();
  rx.answer = () => rx.hang();
  const w = writer(rx.url, { timeoutMs: 200, minBackoffMs: 20, maxBackoffMs: 40 });
  try {
    let slowest = 0;
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      w.offer(snapshot([], { takenAt: clock += 1000 }), () => page(50));
      slowest = Math.max(slowest, performance.now() - t0);
      await sleep(0);
    }
    assert.ok(slowest < 50, `offer took ${slowest} ms: it should only hand the page over`);
    await until("two timeouts", () => w.status().failed >= 2);
    const st = w.status();
    assert.equal(st.state, "degraded");
    assert.equal(st.lastError, "no answer within 0.2 s");
    assert.match(st.reason, /retrying after \d+ failed attempts: no answer within 0.2 s/);
    assert.match(st.reason, /1000 queued/);
  } finally {
    const t = performance.now();
    await w.stop();
    // Grace 1 s: then the request in flight is cut and what is left is counted.
    assert.ok(performance.now() - t < 1500, "stop is bounded");
    const st = w.status();
    assert.equal(st.dropped, 1000);
    assert.match(st.reason, /1000 at stop/);
    assert.deepEqual([st.droppedBy, st.queued], [{ queue_full: 0, rejected: 0, stopped: 1000 }, 0]);
  }
});

Deno.test("remote-write: nobody listening is a network error, retried", async () => {
  const w = writer(`http://127.0.0.1:${freePort()}/api/v1/write`, { stopGraceMs: 100 });
  try {
    await offer(w, page(2));
    await until("failures", () => w.status().failed >= 2);
    assert.match(w.status().lastError!, /connect|refused/i);
    assert.equal(w.status().sent, 0);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a redirect is not followed (no credentials to another address)", async () => {
  await using elsewhere = new StandIn();
  await using rx = new StandIn();
  rx.answer = () =>
    new Response(null, { status: 307, headers: { location: `${elsewhere.url}?steal=1` } });
  const dir = Deno.makeTempDirSync({ prefix: "x0t-rw-" });
  Deno.writeTextFileSync(`${dir}/token`, "tok");
  const w = writer(rx.url, { bearerTokenFile: `${dir}/token` });
  try {
    await offer(w, page(3));
    await until("the drop", () => w.status().dropped === 3);
    await sleep(200);
    assert.equal(rx.requests.length, 1);
    assert.equal(elsewhere.requests.length, 0);
    assert.match(
      w.status().lastError!,
      /^HTTP 307: redirect to http:\/\/127\.0\.0\.1:\d+\/api\/v1\/write\?steal=1 not followed/,
    );
  } finally {
    await w.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("remote-write: endless or garbage answers are read only so far", async () => {
  await using rx = new StandIn();
  let chunks = 0, cancelled = false;
  const endless = (status: number) =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (++chunks > 100_000) return c.close(); // bounded, even if nobody cancels
          c.enqueue(crypto.getRandomValues(new Uint8Array(1024)));
        },
        cancel() {
          cancelled = true;
        },
      }),
      { status },
    );
  rx.answer = (n) => endless(n === 1 ? 500 : 200);
  const w = writer(rx.url);
  try {
    await offer(w, page(5));
    await until("delivery", () => w.status().sent === 5);
    assert.equal(rx.requests.length, 2);
    const err = w.status().lastError!;
    assert.match(err, /^HTTP 500: /);
    assert.ok(err.length <= 220, `excerpt of ${err.length} chars`);
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(err, /[\u0000-\u001f]/);
    await until("the endless bodies cancelled", () => cancelled);
    // Cut off: what the stand-in wrote before it noticed is what the sockets buffered.
    assert.ok(chunks < 20_000, `wrote ${chunks} KiB`);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a success whose body never ends is not waited for", async () => {
  await using rx = new StandIn();
  rx.answer = () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(c) {
          c.enqueue(new Uint8Array([0x7b]));
          await rx.released; // nothing more until the stand-in closes
        },
      }),
      { status: 200 },
    );
  const w = writer(rx.url, { timeoutMs: 300 });
  try {
    await offer(w, page(3));
    await until("delivery", () => w.status().sent === 3);
    await sleep(500); // past the timeout: no failure, no retry
    assert.deepEqual([rx.requests.length, w.status().failed], [1, 0]);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a full queue drops the oldest samples and counts them", async () => {
  await using rx = new StandIn();
  let down = true;
  rx.answer = () => new Response(null, { status: down ? 503 : 204 });
  // 1000 samples at most; requests of 250 (a quarter).
  const w = writer(rx.url, { queueMaxSamples: 1000, minBackoffMs: 20, maxBackoffMs: 40 });
  try {
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      times.push(await offer(w, page(300, i)));
      await sleep(15);
    }
    let st = w.status();
    assert.equal(st.dropped, 2000);
    assert.match(st.reason, /1000 queued, 2000 dropped \(2000 queue full, 0 rejected, 0 at stop\)/);
    assert.equal(st.state, "degraded");
    down = false;
    await until("the queue sent", () => w.status().sent === 1000);
    st = w.status();
    assert.match(st.reason, /0 queued/);
    // Delivered: the request that was being retried (the first 250 of page 0), then the newest
    // 750: the last 150 of page 7, pages 8 and 9.
    const delivered = rx.requests.slice(-4).flatMap((r) =>
      r.series.flatMap((s) => s.samples.map((x) => `${x.timestamp}:${x.value}`))
    );
    const count = (t: number, v: number) => delivered.filter((d) => d === `${t}:${v}`).length;
    assert.deepEqual(
      [count(times[0], 0), count(times[7], 7), count(times[8], 8), count(times[9], 9)],
      [250, 150, 300, 300],
    );
    assert.equal(delivered.length, 1000);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: stop sends what is queued within its grace period", async () => {
  await using rx = new StandIn();
  rx.answer = async () => {
    await sleep(50);
    return new Response(null, { status: 204 });
  };
  const w = writer(rx.url, { maxSamplesPerRequest: 100, stopGraceMs: 5000 });
  for (let i = 0; i < 3; i++) await offer(w, page(300, i));
  await w.stop();
  const st = w.status();
  assert.deepEqual([st.sent, st.dropped], [900, 0]);
  assert.equal(rx.requests.length, 9);
  // Stopped: nothing more is taken.
  await offer(w, page(1));
  await sleep(50);
  assert.equal(rx.requests.length, 9);
});

Deno.test("remote-write: stop cuts a long back-off short and tries once more", async () => {
  await using rx = new StandIn();
  rx.answer = (n) => new Response(null, { status: n === 1 ? 503 : 204 });
  const w = writer(rx.url, { minBackoffMs: 60_000, maxBackoffMs: 60_000, stopGraceMs: 5000 });
  await offer(w, page(4));
  await until("the first failure", () => w.status().failed === 1);
  const t = performance.now();
  await w.stop();
  assert.ok(performance.now() - t < 1000, "not the minute of back-off, nor the grace period");
  assert.deepEqual([w.status().sent, w.status().dropped, rx.requests.length], [4, 0, 2]);
});

Deno.test("remote-write: what is wrong with a page is shown; an older snapshot is skipped", async () => {
  await using rx = new StandIn();
  const w = writer(rx.url);
  try {
    w.offer(snapshot([], { takenAt: clock += 1000 }), () => {
      throw new Error("renderer broke");
    });
    assert.equal(w.status().lastError, "rendering /metrics failed: renderer broke");
    await offer(w, "ok 1\nnot a sample\n");
    await until("the page", () => w.status().sent === 1);
    assert.match(
      w.status().lastError!,
      /^1 line\(s\) of \/metrics skipped: no value: "not a sample"/,
    );
    w.offer(snapshot([], { takenAt: clock - 5000 }), () => "ok 2\n");
    assert.match(w.status().lastError!, /the clock went back/);
    await sleep(100);
    assert.equal(rx.requests.length, 1);
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: configurations that cannot push say why and send nothing", async () => {
  await using rx = new StandIn();
  const dir = Deno.makeTempDirSync({ prefix: "x0t-rw-" });
  Deno.writeTextFileSync(`${dir}/empty`, "\n");
  Deno.writeTextFileSync(`${dir}/tok`, "t");
  const u = new URL(rx.url);
  const cases: [Partial<RemoteWriteOptions>, RegExp][] = [
    [{ bearerTokenFile: `${dir}/missing` }, /cannot read bearer_token_file .*missing/],
    [{ bearerTokenFile: `${dir}/empty` }, /bearer_token_file .*empty is empty/],
    [{ bearerTokenFile: `${dir}/tok`, basicAuthUser: "u" }, /both a bearer token and basic auth/],
    [{ basicAuthPasswordFile: `${dir}/tok` }, /without basic_auth_user/],
    [{ basicAuthUser: "u", basicAuthPasswordFile: `${dir}/missing` }, /cannot read basic_auth/],
    [{ headers: ["Content-Type: text/plain"] }, /header Content-Type is set by the writer/],
    [{ headers: ["Authorization: Bearer x"] }, /header Authorization is set by the writer/],
    [{ headers: ["X-A: a\u0000b"] }, /header X-A: not a valid HTTP header/],
    [{ url: `${u.protocol}//user:pw@${u.host}${u.pathname}` }, /credentials in the URL/],
  ];
  try {
    for (const [over, why] of cases) {
      const w = writer(rx.url, over);
      await offer(w, page(1));
      const st = w.status();
      await w.stop();
      assert.equal(st.state, "unhealthy", JSON.stringify(over));
      assert.match(st.reason, why);
      assert.doesNotMatch(st.reason, /pw@/, "no credentials shown");
    }
    await sleep(50);
    assert.equal(rx.requests.length, 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("remote-write: fromConfig is off without a URL, and pushes as configured", async () => {
  const c = defaultConfig();
  assert.equal(RemoteWriter.fromConfig(c, log), undefined);
  await using rx = new StandIn();
  const rw = c.export.remote_write;
  rw.url = rx.url;
  rw.external_labels = ["instance=box-a", "region=eu", "drop=me", "drop="];
  rw.headers = ["X-Scope-OrgID: fleet"];
  c.mesh.name = "branch-7";
  const w = RemoteWriter.fromConfig(c, log)!;
  try {
    assert.equal(w.name, "remote_write");
    await offer(w, page(1));
    await offer(w, page(1)); // within interval_s (15 s): not taken
    await until("the request", () => rx.requests.length === 1);
    await sleep(50);
    assert.equal(rx.requests.length, 1);
    assert.equal(rx.requests[0].headers.get("x-scope-orgid"), "fleet");
    assert.deepEqual(rx.requests[0].series[0].labels, {
      __name__: "m",
      i: "0",
      instance: "box-a",
      job: "x0tta6bl4",
      region: "eu",
      x0tta6bl4_node: "branch-7", // the mesh name, as the mesh's service discovery labels it
    });
  } finally {
    await w.stop();
  }
});

Deno.test("remote-write: a credential file that cannot be read is an unhealthy status", async () => {
  const c = defaultConfig();
  c.export.remote_write.url = "http://127.0.0.1:9/api/v1/write";
  c.export.remote_write.bearer_token_file = "/nonexistent/x0t-token";
  const said: string[] = [];
  const w = RemoteWriter.fromConfig(c, (level, msg) => said.push(`${level} ${msg}`))!;
  try {
    const st = w.status();
    assert.equal(st.state, "unhealthy");
    assert.match(st.reason, /cannot read bearer_token_file \/nonexistent\/x0t-token/);
    assert.deepEqual(said, ["warn remote-write cannot push"]);
    // It takes nothing: offer returns without rendering the page.
    let rendered = false;
    w.offer(snapshot([]), () => {
      rendered = true;
      return "";
    });
    assert.equal(rendered, false);
  } finally {
    await w.stop();
  }
});
