/**
 * The HTTP API on Hono: health, interfaces, flows, live events (SSE), attach and detach,
 * /metrics and the OpenAPI document. Handlers read the state store and call the collector;
 * they never touch the kernel themselves.
 */
import { type Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import * as z from "zod";
import { enrichFlow } from "../cilium/cilium.ts";
import type { LiveEvent } from "../state/events.ts";
import { parseAddress } from "../net/address.ts";
import { flowSignals } from "../datapath/signals.ts";
import { CONTENT_TYPE } from "../metrics/exposition.ts";
import { OPENAPI } from "./openapi.ts";
import { mountUi } from "./ui.ts";
import { problem, problemFor } from "./problem.ts";
import type { ApiDeps } from "./deps.ts";
import { issues, limitBody, parseQuery, requireToken } from "./middleware.ts";

export type { ApiDeps } from "./deps.ts";

const PROTOCOLS = new Map([["tcp", 6], ["udp", 17], ["icmp", 1], ["icmpv6", 58]]);

const FlowQuery = z.object({
  sort: z.enum(["bytes", "packets", "recent"]).default("bytes"),
  limit: z.coerce.number().int().min(1).max(10000).default(100),
  interface: z.string().min(1).max(15).optional(),
  protocol: z.string().refine((p) => PROTOCOLS.has(p) || /^\d{1,3}$/.test(p) && Number(p) < 256, {
    message: "expected tcp, udp, icmp, icmpv6 or an IP protocol number 0-255",
  }).optional(),
  address: z.string().min(2).max(45).regex(/^[0-9a-fA-F.:]+$/, "expected an IPv4 or IPv6 address")
    .optional(),
  port: z.coerce.number().int().min(0).max(65535).optional(),
}).strict();

const AttachBody = z.object({
  name: z.string().regex(/^[^\s/]{1,15}$/, "expected an interface name (1-15 characters)"),
}).strict();

export function buildApp(d: ApiDeps): Hono {
  const app = new Hono();
  const authProblem = requireToken(d.token);
  const limit = limitBody(d.maxBodyBytes);

  app.onError((e, c) => {
    d.logError(e);
    return problemFor(c, e);
  });
  app.notFound((c) => problem(c, 404, "not found", `no route for ${c.req.method} ${c.req.path}`));

  mountUi(app);
  app.get("/livez", (c) => c.text("ok\n"));
  app.get("/readyz", (c) => {
    const r = d.ready();
    return c.text(`${r.ready ? "ready" : "not ready"}: ${r.reason}\n`, r.ready ? 200 : 503);
  });

  app.get("/metrics", (c) => c.body(d.metrics(), 200, { "content-type": CONTENT_TYPE }));

  app.get("/api/v1/openapi.json", (c) => c.json(OPENAPI));

  app.get("/api/v1/health", (c) => {
    const s = d.store;
    return c.json({
      status: s.health.overall(),
      mode: d.collector.mode,
      fallbackReason: d.collector.fallbackReason || undefined,
      snapshotAt: s.current ? new Date(s.current.takenAt).toISOString() : null,
      components: s.health.list().map((h) => ({ ...h, since: new Date(h.since).toISOString() })),
    });
  });

  app.get("/api/v1/interfaces", (c) => {
    const s = d.store.current;
    const watched = d.collector.watched();
    const seen = new Set(s?.interfaces.map((i) => i.name));
    return c.json({
      mode: d.collector.mode,
      interfaces: [
        ...(s?.interfaces ?? []).map((i) => ({ ...i, rates: d.store.rates(i) })),
        ...watched.filter((n) => !seen.has(n)).map((name) => ({ name, present: false })),
      ],
    });
  });

  app.get("/api/v1/flows", (c) => {
    const q = parseQuery(c, FlowQuery);
    if (q instanceof Response) return q;
    const { sort, limit, interface: iface, protocol, address, port } = q;
    const proto = protocol === undefined ? undefined : PROTOCOLS.get(protocol) ?? Number(protocol);
    const table = d.store.current?.flows;
    if (!table) return c.json({ total: 0, sort, flows: [] });
    let addr: { family: number; bytes: Uint8Array } | undefined;
    if (address !== undefined) {
      try {
        addr = parseAddress(address);
      } catch (e) {
        return problem(c, 400, "bad query", `address: ${(e as Error).message}`);
      }
    }
    const ifindexes = iface === undefined ? undefined : new Set(
      (d.store.current?.interfaces ?? []).filter((i) => i.name === iface).map((i) => i.ifindex),
    );
    const match = (i: number) =>
      (ifindexes === undefined || ifindexes.has(table.ifindex(i))) &&
      (proto === undefined || table.proto(i) === proto) &&
      (addr === undefined || table.hasAddress(i, addr.family, addr.bytes)) &&
      (port === undefined || ((table.proto(i) === 6 || table.proto(i) === 17) &&
        (table.port(i, "sport") === port || table.port(i, "dport") === port)));
    const filtered = iface !== undefined || proto !== undefined || addr !== undefined ||
      port !== undefined;
    const { total, flows } = table.top(
      sort === "recent" ? "lastSeenNs" : sort,
      limit,
      filtered ? match : undefined,
    );
    // Kernel signals of the flow (drops, TCP retransmits, RTT), where there are some.
    const sig = d.store.current?.signals?.flows;
    // And the Cilium endpoint identities of its addresses, when an agent answers.
    const withSignals = flows.map((f) => ({
      ...f,
      ...flowSignals(sig, f),
      cilium: d.cilium && enrichFlow(f, d.cilium),
    }));
    return c.json({ total, sort, flows: withSignals });
  });

  app.get("/api/v1/events", (c) => {
    const header = c.req.header("last-event-id") ?? c.req.query("last_event_id");
    const from = header === undefined ? undefined : Number(header);
    if (from !== undefined && !(Number.isInteger(from) && from >= 0)) {
      return problem(c, 400, "bad Last-Event-ID", "expected a non-negative integer");
    }
    const log = d.store.events;
    const summaries = c.req.query("summary") === "1";
    const sub = log.subscribe(1000, summaries);
    // Where the subscription starts: what comes after is queued for this client, so the
    // replay and the queue meet here, whatever happens while the stream opens.
    const start = log.lastId;
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => sub.close());
      const send = (e: LiveEvent) =>
        stream.writeSSE({
          id: e.id ? String(e.id) : undefined,
          event: e.type,
          data: JSON.stringify(e.id ? e : e.data),
        });
      await stream.writeSSE({ event: "hello", data: JSON.stringify({ lastId: start }) });
      if (summaries) {
        const now = d.summary();
        if (now) await stream.writeSSE({ event: "summary", data: JSON.stringify(now) });
      }
      let sentUpTo = from ?? start;
      if (from !== undefined) {
        const { events, gap } = log.since(from);
        if (gap) {
          await stream.writeSSE({ event: "gap", data: JSON.stringify({ after: from }) });
        }
        for (const e of events) await send(e);
        sentUpTo = events.at(-1)?.id ?? sentUpTo;
      }
      while (!sub.closed && !stream.aborted) {
        const batch = await sub.take(15_000);
        if (batch.length === 0) await stream.write(": keep-alive\n\n");
        for (const e of batch) {
          if (e.id !== 0 && e.id <= sentUpTo) continue;
          await send(e);
          if (e.id !== 0) sentUpTo = e.id;
        }
      }
    });
  });

  const meshOff = (c: Context) =>
    problem(c, 404, "mesh not enabled", "set mesh.enabled (and mesh.key_file) to join a mesh");
  app.get("/api/v1/mesh/status", (c) => {
    const m = d.mesh?.last;
    if (!d.mesh) return meshOff(c);
    const counts = { alive: 0, suspect: 0, dead: 0, left: 0 };
    for (const p of m?.peers ?? []) counts[p.state]++;
    return c.json({
      id: m?.id,
      name: m?.name,
      listen: m?.listen,
      peers: counts,
      datagrams: m?.datagrams,
      dropped: m?.dropped,
    });
  });
  app.get("/api/v1/mesh/peers", (c) => {
    if (!d.mesh) return meshOff(c);
    // A link a MAPE-K action marks degraded says so, for consumers of this list.
    const degraded = new Set(d.mapek?.degradedPeers() ?? []);
    return c.json({
      peers: (d.mesh.last?.peers ?? []).map((p) => ({
        ...p,
        since: new Date(p.since).toISOString(),
        degraded: degraded.has(p.name),
      })),
    });
  });
  app.get("/api/v1/mesh/sd", (c) => {
    if (!d.mesh) return meshOff(c);
    return c.json(d.mesh.discovery());
  });

  const mapekOff = (c: Context) =>
    problem(c, 404, "MAPE-K not enabled", "set mapek.enabled to run the loop");
  const Limit = z.object({
    limit: z.coerce.number().int().min(1).max(5000).default(100),
  }).strict();
  app.get("/api/v1/mapek", (c) => d.mapek ? c.json(d.mapek.status()) : mapekOff(c));
  app.get("/api/v1/mapek/decisions", (c) => {
    if (!d.mapek) return mapekOff(c);
    const q = parseQuery(c, Limit);
    if (q instanceof Response) return q;
    return c.json({ decisions: d.mapek.decisions(q.limit) });
  });
  app.get("/api/v1/mapek/actions", (c) => {
    if (!d.mapek) return mapekOff(c);
    const all = c.req.query("all");
    if (all !== undefined && all !== "0" && all !== "1") {
      return problem(c, 400, "bad query", "all: expected 0 or 1");
    }
    return c.json({ actions: d.mapek.actions(all === "1") });
  });
  app.delete("/api/v1/mapek/actions/:id", authProblem, (c) => {
    if (!d.mapek) return mapekOff(c);
    const id = c.req.param("id");
    const a = d.mapek.revoke(id, "the API");
    if (!a) return problem(c, 404, "no such live action", `no active or observed action ${id}`);
    return c.json(a);
  });

  app.post("/api/v1/interfaces", authProblem, limit, async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return problem(c, 400, "bad body", 'expected a JSON object like {"name": "eth0"}');
    }
    const b = AttachBody.safeParse(body);
    if (!b.success) return problem(c, 422, "invalid body", issues(b.error));
    try {
      d.collector.attach(b.data.name);
    } catch (e) {
      return problemFor(c, e);
    }
    return c.json({ attached: b.data.name, mode: d.collector.mode }, 201);
  });

  app.delete("/api/v1/interfaces/:name", authProblem, (c) => {
    const name = c.req.param("name");
    if (!d.collector.detach(name)) {
      return problem(c, 404, "not watched", `interface ${name} is not watched`);
    }
    return c.body(null, 204);
  });

  app.post("/api/v1/datapath/retry", authProblem, (c) => {
    const ok = d.collector.retry();
    return c.json(
      { mode: d.collector.mode, reason: d.collector.fallbackReason || undefined },
      ok ? 200 : 503,
    );
  });

  return app;
}
