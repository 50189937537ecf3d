/**
 * The API under hostile or careless clients, in-process (app.request): DNS rebinding (the Host
 * check), reads behind the token with a separate read-only token, event-stream clients that
 * never read or are too many, and a stream resumed with an id from an earlier run.
 */
import assert from "node:assert/strict";
import { hostPolicy } from "../../src/http/middleware.ts";
import { StateStore } from "../../src/state/store.ts";
import { Fakes, snapshot, SseReader, TOKEN } from "../helpers/api_fakes.ts";

const READ = "read-only-token-0123456789";
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function problemOf(
  res: Response,
): Promise<{ status: number; title: string; detail: string }> {
  assert.equal(res.headers.get("content-type"), "application/problem+json");
  return await res.json();
}

Deno.test("api security: on loopback, a request for another host name (DNS rebinding) is refused", async () => {
  const f = new Fakes();
  f.store.put(snapshot([]));
  const app = f.app({ allowedHost: hostPolicy("127.0.0.1", ["box.example"]) });
  for (
    const host of ["attacker.example", "attacker.example:9477", "10.0.0.1:9477", "localhost.evil"]
  ) {
    const res = await app.request("/api/v1/flows", { headers: { host } });
    assert.equal(res.status, 403, host);
    const p = await problemOf(res);
    assert.equal(p.title, "host not allowed");
    assert.match(p.detail, /api\.allowed_hosts/);
  }
  for (
    const host of [
      "localhost:9477",
      "127.0.0.1:9477",
      "[::1]:9477",
      "LOCALHOST",
      "box.example:9477",
    ]
  ) {
    const res = await app.request("/api/v1/flows", { headers: { host } });
    assert.equal(res.status, 200, host);
    await res.body?.cancel();
  }
  // Listening on another address: no check unless names are configured.
  assert.equal(hostPolicy("0.0.0.0", []), undefined);
  const lan = hostPolicy("10.0.0.1", ["box.example"])!;
  assert.ok(lan("box.example") && lan("10.0.0.1") && lan("fd00::1"));
  assert.ok(!lan("attacker.example"));
});

Deno.test("api security: with auth all, every read needs a token; the read-only token reads but never changes", async () => {
  const f = new Fakes();
  const app = f.app({ auth: "all", readToken: READ });
  for (
    const path of [
      "/metrics",
      "/api/v1/flows",
      "/api/v1/health",
      "/api/v1/interfaces",
      "/api/v1/events",
    ]
  ) {
    const res = await app.request(path);
    assert.equal(res.status, 401, path);
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="x0tta6bl4"');
    await res.body?.cancel();
    for (const t of [READ, TOKEN]) {
      const ok = await app.request(path, { headers: bearer(t) });
      assert.equal(ok.status, 200, `${path} with ${t}`);
      await ok.body?.cancel();
    }
    const wrong = await app.request(path, { headers: bearer("nope-nope-nope-nope") });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
  }
  // The probes and the page's own files stay open.
  for (const path of ["/livez", "/readyz", "/", "/ui/app.js", "/ui/style.css"]) {
    const res = await app.request(path);
    assert.notEqual(res.status, 401, path);
    await res.body?.cancel();
  }
  // A read-only token never changes anything.
  const watched = f.collector.watched();
  const post = await app.request("/api/v1/interfaces", {
    method: "POST",
    headers: { ...bearer(READ), "content-type": "application/json" },
    body: JSON.stringify({ name: "eth1" }),
  });
  assert.equal(post.status, 403);
  assert.equal((await problemOf(post)).title, "read-only token");
  assert.deepEqual(f.collector.watched(), watched);
  // EventSource cannot send a header: the stream also takes ?access_token=.
  const es = await app.request(`/api/v1/events?access_token=${READ}`);
  assert.equal(es.status, 200);
  await es.body?.cancel();
  const other = await app.request(`/api/v1/flows?access_token=${READ}`);
  assert.equal(other.status, 401, "only the stream takes a token in the query");
  await other.body?.cancel();
  // Default (auth: mutations): reads are open, and the read-only token still cannot change.
  const open = f.app({ readToken: READ });
  const r = await open.request("/api/v1/flows");
  assert.equal(r.status, 200);
  await r.body?.cancel();
  const del = await open.request("/api/v1/interfaces/eth0", {
    method: "DELETE",
    headers: bearer(READ),
  });
  assert.equal(del.status, 403);
  await del.body?.cancel();
});

Deno.test("api security: a client that never reads loses only its own events, is counted, and is let go", async () => {
  const f = new Fakes();
  const app = f.app();
  const slow = await app.request("/api/v1/events");
  const fast = new SseReader((await app.request("/api/v1/events")).body!);
  try {
    assert.equal((await fast.next()).event, "hello");
    assert.equal(f.store.events.subscribers, 2);
    // The slow one never reads: its queue (1000) fills, then it loses a whole queue's worth.
    for (let i = 0; i < 2100; i++) {
      f.store.events.append("flow", { n: i });
      if (i % 100 === 99) {
        // The fast one keeps up.
        for (let k = 0; k < 100; k++) {
          let frame = await fast.next();
          while (frame.event === "hello") frame = await fast.next();
          assert.equal(frame.event, "flow");
        }
      }
    }
    await new Promise((r) => setTimeout(r, 50));
    const log = f.store.events;
    assert.equal(log.clientsLetGo, 1, "the slow client was let go");
    assert.ok(log.clientLost >= 1000, `${log.clientLost}`);
    assert.equal(log.subscribers, 1, "the fast one goes on");
    // Its stream was cut: reading it now ends.
    const text = await slow.text();
    assert.ok(text.length < 200_000, "not everything was buffered for it");
  } finally {
    await fast.close();
  }
});

Deno.test("api security: a client that falls behind is told how many it lost, in a gap event", async () => {
  const f = new Fakes();
  const sse = new SseReader((await f.app().request("/api/v1/events")).body!);
  try {
    assert.equal((await sse.next()).event, "hello");
    // 1200 events before it reads anything: 1000 fit its queue, 200 are lost (it stays on).
    for (let i = 0; i < 1200; i++) f.store.events.append("flow", { n: i });
    const gap = await sse.next();
    assert.equal(gap.event, "gap");
    assert.deepEqual(JSON.parse(gap.data!), { lost: 200, slow: true });
    const first = await sse.next();
    assert.equal(JSON.parse(first.data!).data.n, 200);
  } finally {
    await sse.close();
  }
});

Deno.test("api security: at most max_event_clients streams; the next gets 503", async () => {
  const f = new Fakes();
  const app = f.app({ maxEventClients: 2 });
  const a = new SseReader((await app.request("/api/v1/events")).body!);
  const b = new SseReader((await app.request("/api/v1/events")).body!);
  try {
    await a.next();
    await b.next();
    const third = await app.request("/api/v1/events");
    assert.equal(third.status, 503);
    assert.match((await problemOf(third)).detail, /api\.max_event_clients/);
  } finally {
    await a.close();
    await b.close();
  }
  await new Promise((r) => setTimeout(r, 20));
  const again = await app.request("/api/v1/events");
  assert.equal(again.status, 200, "room again once they left");
  await again.body?.cancel();
});

Deno.test("api security: a Last-Event-ID from before a restart starts afresh with a reset event", async () => {
  // This run's ids start at 5000 (the appliance starts them at its start time in µs).
  const f = new Fakes();
  const store = new StateStore(5000);
  const app = f.app({ store });
  store.events.append("attach", "eth0");
  store.events.append("detach", "eth0");
  for (const old of ["3", "7", "99999"]) {
    const lastId = store.events.lastId;
    const sse = new SseReader(
      (await app.request("/api/v1/events", { headers: { "last-event-id": old } })).body!,
    );
    try {
      assert.deepEqual(JSON.parse((await sse.next()).data!), { lastId });
      const reset = await sse.next();
      assert.equal(reset.event, "reset");
      assert.deepEqual(JSON.parse(reset.data!), { lastEventId: Number(old), lastId });
      // Then live events, not a replay of this run's as if they were the old run's.
      const e = store.events.append("mode", "ebpf");
      assert.equal((await sse.next()).id, String(e.id));
    } finally {
      await sse.close();
    }
  }
  // 0 asks for everything kept; an id of this run resumes after it.
  for (const [from, first] of [["0", 5000], ["5000", 5001]]) {
    const sse = new SseReader(
      (await app.request("/api/v1/events", { headers: { "last-event-id": String(from) } })).body!,
    );
    try {
      await sse.next();
      assert.equal((await sse.next()).id, String(first));
    } finally {
      await sse.close();
    }
  }
});
