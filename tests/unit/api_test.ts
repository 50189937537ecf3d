/**
 * The HTTP API driven in-process with `app.request()` against fakes (tests/helpers/api_fakes.ts):
 * validation, filters, auth, problem details and the event stream's framing, without root.
 * tests/api asks the same things of a real daemon over real HTTP.
 */
import assert from "node:assert/strict";
import { KernelError } from "../../src/datapath/errors.ts";
import { OPENAPI } from "../../src/api/openapi.ts";
import { PROTOCOL_NAMES } from "../../src/net/protocol.ts";
import {
  FakeMapek,
  FakeMesh,
  Fakes,
  flow,
  iface,
  snapshot,
  SseReader,
  TOKEN,
} from "../helpers/api_fakes.ts";

const AUTH = { authorization: `Bearer ${TOKEN}` };

/** Asserts a problem+json response (RFC 9457) and returns its body. */
async function assertProblem(
  res: Response,
  status: number,
  title: string,
  detail?: string,
): Promise<Record<string, unknown>> {
  const body = await res.json();
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(res.headers.get("content-type"), "application/problem+json");
  assert.equal(body.type, "about:blank");
  assert.equal(body.status, status);
  assert.equal(body.title, title);
  if (detail !== undefined) assert.equal(body.detail, detail);
  assert.doesNotMatch(JSON.stringify(body), /\.ts:\d+|at [A-Za-z]+ \(/, "no stack trace");
  return body;
}

// Four flows: A and B on eth0 (ifindex 2), C (ICMP) on eth1 (ifindex 3), D (IPv6) on eth0.
const A = flow({ bytes: 100, packets: 1, lastSeenNs: 2 });
const B = flow({ proto: 6, sport: 22, dport: 5555, bytes: 500, packets: 3, lastSeenNs: 1 });
const C = flow({
  ifindex: 3,
  interface: "eth1",
  proto: 1,
  saddr: "10.0.0.2",
  sport: 8,
  dport: 0,
  bytes: 50,
  packets: 9,
  lastSeenNs: 9,
});
const D = flow({
  family: 6,
  saddr: "2001:db8::1",
  daddr: "2001:db8::2",
  sport: 53,
  dport: 4000,
  bytes: 70,
  packets: 2,
  lastSeenNs: 5,
});
/** Flows are told apart by their source address and port. */
const NAMES = new Map(Object.entries({ A, B, C, D }).map(([n, f]) => [`${f.saddr}:${f.sport}`, n]));

function withFlows(): Fakes {
  const f = new Fakes();
  f.store.put(snapshot([A, B, C, D]));
  return f;
}

Deno.test("api: the routers compose into every route, and the OpenAPI document lists each", async () => {
  const f = new Fakes();
  const app = f.app();
  const routes = [...new Set(app.routes.map((r) => `${r.method} ${r.path}`))].sort();
  assert.deepEqual(routes, [
    "DELETE /api/v1/interfaces/:name",
    "DELETE /api/v1/mapek/actions/:id",
    "GET /",
    "GET /api/v1/events",
    "GET /api/v1/flows",
    "GET /api/v1/health",
    "GET /api/v1/interfaces",
    "GET /api/v1/mapek",
    "GET /api/v1/mapek/actions",
    "GET /api/v1/mapek/decisions",
    "GET /api/v1/mesh/peers",
    "GET /api/v1/mesh/sd",
    "GET /api/v1/mesh/status",
    "GET /api/v1/openapi.json",
    "GET /livez",
    "GET /metrics",
    "GET /readyz",
    "GET /ui/app.js",
    "GET /ui/style.css",
    "POST /api/v1/datapath/retry",
    "POST /api/v1/interfaces",
  ]);
  const paths = OPENAPI.paths as Record<string, Record<string, unknown>>;
  for (const r of routes.filter((r) => !r.includes(" /ui/"))) {
    const [method, path] = r.split(" ");
    const documented = path.replace(/:(\w+)/g, "{$1}");
    assert.ok(paths[documented]?.[method.toLowerCase()], `${r} is in the OpenAPI document`);
  }
  const doc = await app.request("/api/v1/openapi.json");
  assert.equal(doc.status, 200);
  assert.deepEqual(await doc.json(), JSON.parse(JSON.stringify(OPENAPI)));
  const page = await app.request("/");
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(page.headers.get("content-security-policy")!, /default-src 'self'/);
  assert.match(await page.text(), /<html/i);
});

Deno.test("api: a bad flows query is a 400 problem that says what is wrong, word for word", async () => {
  const app = withFlows().app();
  const proto = "protocol: expected tcp, udp, icmp, icmpv6 or an IP protocol number 0-255";
  const cases: [string, string][] = [
    ["sort=size", 'sort: Invalid option: expected one of "bytes"|"packets"|"recent"'],
    ["limit=0", "limit: Too small: expected number to be >=1"],
    ["limit=10001", "limit: Too big: expected number to be <=10000"],
    ["limit=abc", "limit: Invalid input: expected number, received NaN"],
    ["protocol=constructor", proto],
    ["protocol=__proto__", proto],
    ["protocol=256", proto],
    ["protocol=TCP", proto],
    ["address=x;y", "address: expected an IPv4 or IPv6 address"],
    ["address=1", "address: Too small: expected string to have >=2 characters"],
    ["address=1.2.3", "address: not an IPv4 address: 1.2.3"],
    ["address=::1::2", "address: not an IPv6 address: ::1::2"],
    ["port=70000", "port: Too big: expected number to be <=65535"],
    ["port=-1", "port: Too small: expected number to be >=0"],
    ["port=ab", "port: Invalid input: expected number, received NaN"],
    ["interface=abcdefghijklmnop", "interface: Too big: expected string to have <=15 characters"],
    ["colour=red", '(body): Unrecognized key: "colour"'],
    [
      "sort=size&limit=0",
      'sort: Invalid option: expected one of "bytes"|"packets"|"recent"; ' +
      "limit: Too small: expected number to be >=1",
    ],
  ];
  for (const [query, detail] of cases) {
    await assertProblem(await app.request(`/api/v1/flows?${query}`), 400, "bad query", detail);
  }
  // The message names every protocol the filter accepts by name, and no other.
  const named = proto.match(/expected (.*) or an IP/)![1].split(", ");
  assert.deepEqual([...named].sort(), [...PROTOCOL_NAMES].sort());
});

Deno.test("api: flows are filtered by interface, protocol, address and port, sorted and limited", async () => {
  const app = withFlows().app();
  const get = async (query: string) => {
    const res = await app.request(`/api/v1/flows?${query}`);
    assert.equal(res.status, 200, query);
    const body = await res.json() as {
      total: number;
      sort: string;
      flows: { saddr: string; sport: number }[];
    };
    return [body.total, body.sort, body.flows.map((f) => NAMES.get(`${f.saddr}:${f.sport}`))];
  };
  assert.deepEqual(await get(""), [4, "bytes", ["B", "A", "D", "C"]]);
  assert.deepEqual(await get("sort=packets&limit=2"), [4, "packets", ["C", "B"]]);
  assert.deepEqual(await get("sort=recent&limit=10000"), [4, "recent", ["C", "D", "A", "B"]]);
  assert.deepEqual(await get("interface=eth1"), [1, "bytes", ["C"]]);
  assert.deepEqual(await get("interface=eth0&limit=1"), [3, "bytes", ["B"]]);
  assert.deepEqual(await get("interface=nope"), [0, "bytes", []]);
  assert.deepEqual(await get("protocol=tcp"), [1, "bytes", ["B"]]);
  assert.deepEqual(await get("protocol=1"), [1, "bytes", ["C"]]);
  assert.deepEqual(await get("protocol=icmpv6"), [0, "bytes", []]);
  assert.deepEqual(await get("address=2001:db8:0::1"), [1, "bytes", ["D"]]);
  assert.deepEqual(await get("address=192.0.2.1&sort=packets"), [3, "packets", ["C", "B", "A"]]);
  assert.deepEqual(await get("port=53"), [2, "bytes", ["A", "D"]]);
  // An ICMP type travels in the source port's place: it is no port.
  assert.deepEqual(await get("port=8"), [0, "bytes", []]);
  assert.deepEqual(await get("protocol=udp&address=10.0.0.1&port=53"), [1, "bytes", ["A"]]);

  const none = await new Fakes().app().request("/api/v1/flows?sort=recent");
  assert.deepEqual(await none.json(), { total: 0, sort: "recent", flows: [] });
});

Deno.test("api: flows carry their kernel signals and Cilium identities", async () => {
  const f = withFlows();
  f.store.current!.signals = {
    drops: [],
    flows: new Map([["4/17/10.0.0.1/1000/192.0.2.1/53", {
      drops: 3,
      retransmits: 1,
      rttSamples: 2,
      srttUs: 250,
      ifindex: 2,
      lastDropReason: 2,
    }]]),
    rtt: [],
    retransmitsByInterface: {},
    unavailable: {},
  };
  const identity = { identity: 5, labels: ["k8s:app=web"], endpointId: 12, pod: "web-0" };
  const app = f.app({ cilium: { lookup: (a) => a === "192.0.2.1" ? identity : undefined } });
  const res = await app.request("/api/v1/flows?protocol=udp");
  const { flows } = await res.json();
  assert.deepEqual(flows.map((x: Record<string, unknown>) => [x.drops, x.srttUs, x.cilium]), [
    [3, 250, { dst: identity }],
    [undefined, undefined, undefined],
  ]);
});

/** The four mutating calls, and the status each answers with the right token. */
const MUTATIONS: [string, string, string | undefined, number][] = [
  ["POST", "/api/v1/interfaces", '{"name":"eth9"}', 201],
  ["DELETE", "/api/v1/interfaces/eth0", undefined, 204],
  ["POST", "/api/v1/datapath/retry", undefined, 200],
  ["DELETE", "/api/v1/mapek/actions/a-1", undefined, 200],
];

Deno.test("api: every mutating call needs the bearer token", async () => {
  const f = new Fakes();
  const mapek = new FakeMapek();
  const app = f.app({ mapek });
  const refused: [Record<string, string>, number, string][] = [
    [{}, 401, "a bearer token is required for this call (Authorization: Bearer TOKEN)"],
    [{ authorization: "Bearer wrong-token-123456" }, 401, "wrong token"],
    [{ authorization: `Basic ${TOKEN}` }, 400, "malformed Authorization header"],
    [{ authorization: "Bearer" }, 400, "malformed Authorization header"],
  ];
  // What the calls change: watched interfaces, retries, live MAPE-K actions.
  const state = () => [f.collector.watched().join(), f.collector.retries, mapek.live.length];
  for (const [method, path, body, ok] of MUTATIONS) {
    const before = state();
    for (const [headers, status, detail] of refused) {
      const res = await app.request(path, { method, body, headers });
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="x0tta6bl4"', path);
      await assertProblem(res, status, "unauthorized", detail);
    }
    assert.deepEqual(state(), before, `nothing happened without the token: ${method} ${path}`);
    const res = await app.request(path, { method, body, headers: AUTH });
    assert.equal(res.status, ok, `${method} ${path}`);
    await res.body?.cancel();
    assert.notDeepEqual(state(), before, `the call did its work: ${method} ${path}`);
  }
  assert.deepEqual(state(), ["eth9", 1, 1]);
  assert.deepEqual(mapek.revokedBy, ["the API"]);
});

Deno.test("api: interfaces: listed with rates, attached, detached, retried", async () => {
  const f = new Fakes();
  f.store.put(snapshot([], [iface(2, "eth0")]));
  f.store.put({ ...snapshot([], [iface(2, "eth0")]), takenAt: f.store.current!.takenAt + 2000 });
  f.store.current!.interfaces[0].traffic[0].bytes += 1000;
  f.collector.attached.add("eth7");
  const app = f.app({ maxBodyBytes: 64 });
  const list = await (await app.request("/api/v1/interfaces")).json();
  assert.equal(list.mode, "ebpf");
  assert.deepEqual(list.interfaces.map((i: { name: string }) => i.name), ["eth0", "eth7"]);
  assert.deepEqual(list.interfaces[0].rates.rx, { bitsPerSecond: 4000, packetsPerSecond: 0 });
  assert.deepEqual(list.interfaces[1], { name: "eth7", present: false });

  const post = (body: string) =>
    app.request("/api/v1/interfaces", { method: "POST", body, headers: AUTH });
  const refused: [string, number, string, string][] = [
    ["{nope", 400, "bad body", 'expected a JSON object like {"name": "eth0"}'],
    ['{"name":"a/b"}', 422, "invalid body", "name: expected an interface name (1-15 characters)"],
    ['{"name":"eth0","x":1}', 422, "invalid body", '(body): Unrecognized key: "x"'],
    [`{"name":"${"x".repeat(100)}"}`, 413, "request body too large", "the limit is 64 bytes"],
  ];
  for (const [body, status, title, detail] of refused) {
    await assertProblem(await post(body), status, title, detail);
  }
  assert.deepEqual(f.collector.watched(), ["eth0", "eth7"]);
  f.collector.attachError = new KernelError("attach eth9", 19);
  const nodev = await assertProblem(await post('{"name":"eth9"}'), 404, "attach eth9");
  assert.equal(nodev.errno, "ENODEV");
  assert.match(nodev.detail as string, /^attach eth9: ENODEV/);
  f.collector.attachError = undefined;
  const ok = await post('{"name":"eth9"}');
  assert.equal(ok.status, 201);
  assert.deepEqual(await ok.json(), { attached: "eth9", mode: "ebpf" });

  const del = await app.request("/api/v1/interfaces/eth9", { method: "DELETE", headers: AUTH });
  assert.equal(del.status, 204);
  assert.equal(await del.text(), "");
  await assertProblem(
    await app.request("/api/v1/interfaces/eth9", { method: "DELETE", headers: AUTH }),
    404,
    "not watched",
    "interface eth9 is not watched",
  );

  const retry = () => app.request("/api/v1/datapath/retry", { method: "POST", headers: AUTH });
  assert.deepEqual(await (await retry()).json(), { mode: "ebpf" });
  f.collector.mode = "fallback";
  f.collector.fallbackReason = "EPERM: no CAP_BPF";
  f.collector.retryWorks = false;
  const failed = await retry();
  assert.equal(failed.status, 503);
  assert.deepEqual(await failed.json(), { mode: "fallback", reason: "EPERM: no CAP_BPF" });
});

Deno.test("api: unknown routes and failures are problems; the client never sees a stack", async () => {
  const f = new Fakes();
  const app = f.app({
    metrics: () => {
      throw new Error("render failed at render (/src/metrics/writer.ts:12:3)");
    },
  });
  await assertProblem(
    await app.request("/api/v1/nowhere"),
    404,
    "not found",
    "no route for GET /api/v1/nowhere",
  );
  await assertProblem(
    await app.request("/api/v1/flows", { method: "POST" }),
    404,
    "not found",
    "no route for POST /api/v1/flows",
  );
  await assertProblem(
    await app.request("/metrics"),
    500,
    "internal error",
    "the appliance logged the details",
  );
  assert.equal(f.errors.length, 1);
  assert.match(String(f.errors[0]), /render failed/);
});

Deno.test("api: liveness, readiness, metrics and health", async () => {
  const f = new Fakes();
  const app = f.app();
  const livez = await app.request("/livez");
  assert.deepEqual([livez.status, await livez.text()], [200, "ok\n"]);
  const readyz = await app.request("/readyz");
  assert.deepEqual([readyz.status, await readyz.text()], [200, "ready: eBPF datapath\n"]);
  f.readiness = { ready: false, reason: "no snapshot yet" };
  const notReady = await app.request("/readyz");
  assert.deepEqual([notReady.status, await notReady.text()], [503, "not ready: no snapshot yet\n"]);

  const metrics = await app.request("/metrics");
  assert.equal(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.equal(await metrics.text(), f.metricsText);

  const empty = await (await app.request("/api/v1/health")).json();
  assert.deepEqual(empty, { status: "healthy", mode: "ebpf", snapshotAt: null, components: [] });
  f.store.put(snapshot([]));
  f.store.health.set("fallback", "degraded", "EPERM", Date.UTC(2026, 0, 2));
  f.collector.mode = "fallback";
  f.collector.fallbackReason = "EPERM";
  assert.deepEqual(await (await app.request("/api/v1/health")).json(), {
    status: "degraded",
    mode: "fallback",
    fallbackReason: "EPERM",
    snapshotAt: "2026-01-01T00:00:00.000Z",
    components: [{
      component: "fallback",
      state: "degraded",
      reason: "EPERM",
      since: "2026-01-02T00:00:00.000Z",
    }],
  });
});

Deno.test("api: mesh routes answer 404 problems when the mesh is off, and the mesh when on", async () => {
  const off = new Fakes().app();
  for (const path of ["/api/v1/mesh/status", "/api/v1/mesh/peers", "/api/v1/mesh/sd"]) {
    await assertProblem(
      await off.request(path),
      404,
      "mesh not enabled",
      "set mesh.enabled (and mesh.key_file) to join a mesh",
    );
  }
  const mesh = new FakeMesh();
  const app = new Fakes().app({ mesh, mapek: new FakeMapek() });
  assert.deepEqual(await (await app.request("/api/v1/mesh/status")).json(), {
    id: "id-self",
    name: "self",
    listen: "0.0.0.0:7946",
    peers: { alive: 2, suspect: 1, dead: 0, left: 0 },
    datagrams: mesh.last!.datagrams,
    dropped: { bad_mac: 2 },
  });
  const { peers } = await (await app.request("/api/v1/mesh/peers")).json();
  // Peer b's link is marked degraded by a live MAPE-K action.
  assert.deepEqual(peers.map((p: { name: string; degraded: boolean }) => [p.name, p.degraded]), [
    ["a", false],
    ["b", true],
    ["c", false],
  ]);
  assert.equal(peers[0].since, "2026-01-01T00:00:00.000Z");
  assert.deepEqual(await (await app.request("/api/v1/mesh/sd")).json(), mesh.discovery());
  // Without MAPE-K no link is degraded.
  const alone = await new Fakes().app({ mesh }).request("/api/v1/mesh/peers");
  assert.ok((await alone.json()).peers.every((p: { degraded: boolean }) => !p.degraded));
});

Deno.test("api: MAPE-K routes: off, status, decisions with a limit, actions, revoke", async () => {
  const off = new Fakes().app();
  const offRequests: [string, RequestInit?][] = [
    ["/api/v1/mapek"],
    ["/api/v1/mapek/decisions"],
    ["/api/v1/mapek/actions"],
    ["/api/v1/mapek/actions/a-1", { method: "DELETE", headers: AUTH }],
  ];
  for (const [path, init] of offRequests) {
    await assertProblem(
      await off.request(path, init),
      404,
      "MAPE-K not enabled",
      "set mapek.enabled to run the loop",
    );
  }

  const mapek = new FakeMapek();
  const app = new Fakes().app({ mapek });
  assert.deepEqual(await (await app.request("/api/v1/mapek")).json(), mapek.status());
  const decisions = async (query: string) =>
    (await (await app.request(`/api/v1/mapek/decisions${query}`)).json()).decisions;
  assert.equal((await decisions("")).length, 100);
  assert.deepEqual((await decisions("?limit=3")).map((d: { id: string }) => d.id), [
    "d-250",
    "d-249",
    "d-248",
  ]);
  assert.equal((await decisions("?limit=5000")).length, 250);
  assert.deepEqual(mapek.asked, [100, 3, 5000]);
  const bad: [string, string][] = [
    ["limit=0", "limit: Too small: expected number to be >=1"],
    ["limit=5001", "limit: Too big: expected number to be <=5000"],
    ["limit=1.5", "limit: Invalid input: expected int, received number"],
    ["before=3", '(body): Unrecognized key: "before"'],
  ];
  for (const [query, detail] of bad) {
    const res = await app.request(`/api/v1/mapek/decisions?${query}`);
    await assertProblem(res, 400, "bad query", detail);
  }
  assert.deepEqual(mapek.asked, [100, 3, 5000]);

  const actions = async (query: string) =>
    (await (await app.request(`/api/v1/mapek/actions${query}`)).json()).actions
      .map((a: { id: string }) => a.id);
  assert.deepEqual(await actions(""), ["a-1", "a-2"]);
  assert.deepEqual(await actions("?all=0"), ["a-1", "a-2"]);
  assert.deepEqual(await actions("?all=1"), ["a-1", "a-2", "a-0"]);
  for (const all of ["yes", "", "2"]) {
    await assertProblem(
      await app.request(`/api/v1/mapek/actions?all=${all}`),
      400,
      "bad query",
      "all: expected 0 or 1",
    );
  }

  const revoke = () =>
    app.request("/api/v1/mapek/actions/a-1", { method: "DELETE", headers: AUTH });
  const revoked = await revoke();
  assert.equal(revoked.status, 200);
  assert.deepEqual(
    [(await revoked.json()).state, mapek.revokedBy],
    ["revoked", ["the API"]],
  );
  await assertProblem(
    await revoke(),
    404,
    "no such live action",
    "no active or observed action a-1",
  );
});

Deno.test("api: events: hello first, then each appended event as an id/event/data frame", async () => {
  const f = new Fakes();
  f.store.events.append("attach", { name: "eth0" }, 1);
  const res = await f.app().request("/api/v1/events");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  const sse = new SseReader(res.body!);
  try {
    assert.equal((await sse.next()).raw, 'event: hello\ndata: {"lastId":1}');
    const detach = f.store.events.append("detach", { name: "eth0" }, 2);
    const flowEvent = f.store.events.append("flow", { saddr: "10.0.0.1" }, 3);
    for (const e of [detach, flowEvent]) {
      const frame = await sse.next();
      assert.equal(frame.raw, `event: ${e.type}\ndata: ${JSON.stringify(e)}\nid: ${e.id}`);
      assert.deepEqual(JSON.parse(frame.data!), e);
    }
  } finally {
    await sse.close();
  }
});

Deno.test("api: events resume after Last-Event-ID (header or query) without repeating", async () => {
  const f = new Fakes();
  const app = f.app();
  const [, second, third] = ["a", "b", "c"].map((n, i) => f.store.events.append("attach", n, i));
  const resumed = new SseReader(
    (await app.request("/api/v1/events", {
      headers: { "last-event-id": "1" },
    })).body!,
  );
  try {
    assert.deepEqual(JSON.parse((await resumed.next()).data!), { lastId: 3 });
    assert.deepEqual(JSON.parse((await resumed.next()).data!), second);
    assert.deepEqual(JSON.parse((await resumed.next()).data!), third);
    const fourth = f.store.events.append("detach", "a", 4);
    assert.equal((await resumed.next()).id, String(fourth.id));
  } finally {
    await resumed.close();
  }
  const byQuery = new SseReader((await app.request("/api/v1/events?last_event_id=3")).body!);
  try {
    assert.equal((await byQuery.next()).event, "hello");
    assert.equal((await byQuery.next()).id, "4");
  } finally {
    await byQuery.close();
  }
});

Deno.test("api: events say when the events to resume from are gone", async () => {
  const f = new Fakes();
  const capacity = f.store.events.capacity;
  for (let i = 0; i < capacity + 2; i++) f.store.events.append("flow", i, i);
  const sse = new SseReader(
    (await f.app().request("/api/v1/events", {
      headers: { "last-event-id": "1" },
    })).body!,
  );
  try {
    assert.equal((await sse.next()).event, "hello");
    assert.equal((await sse.next()).raw, 'event: gap\ndata: {"after":1}');
    assert.equal((await sse.next()).id, "3");
  } finally {
    await sse.close();
  }
});

Deno.test("api: events: summaries on request, unnumbered; the client's going ends its subscription", async () => {
  const f = new Fakes();
  f.summaryValue = { flows: 7 };
  const res = await f.app().request("/api/v1/events?summary=1");
  const sse = new SseReader(res.body!);
  try {
    assert.equal(f.store.events.summaryListeners, 1);
    assert.equal((await sse.next()).event, "hello");
    assert.equal((await sse.next()).raw, 'event: summary\ndata: {"flows":7}');
    f.store.events.broadcast("summary", { flows: 8 });
    assert.equal((await sse.next()).raw, 'event: summary\ndata: {"flows":8}');
  } finally {
    await sse.close();
  }
  assert.equal(f.store.events.summaryListeners, 0);
});

Deno.test("api: a bad Last-Event-ID is a 400 problem and subscribes nobody", async () => {
  const f = new Fakes();
  const app = f.app();
  for (const id of ["-4", "1.5", "abc"]) {
    await assertProblem(
      await app.request("/api/v1/events?summary=1", { headers: { "last-event-id": id } }),
      400,
      "bad Last-Event-ID",
      "expected a non-negative integer",
    );
  }
  await assertProblem(
    await app.request("/api/v1/events?summary=1&last_event_id=x"),
    400,
    "bad Last-Event-ID",
  );
  assert.equal(f.store.events.summaryListeners, 0);
});
