/**
 * The HTTP API on Hono: one router per resource, composed here with the error handlers they
 * share. Handlers read the state store and call services; they never touch the kernel.
 * Each router names its routes in full, so a path in the OpenAPI document is found by grep.
 */
import { type Context, Hono } from "hono";
import * as z from "zod";
import type { ApiDeps } from "./deps.ts";
import { limitBody, parseQuery, requireToken } from "./middleware.ts";
import { problem, problemFor } from "./problem.ts";
import { eventRoutes } from "./routes/events.ts";
import { flowRoutes } from "./routes/flows.ts";
import { healthRoutes } from "./routes/health.ts";
import { interfaceRoutes } from "./routes/interfaces.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { openapiRoutes } from "./routes/openapi.ts";
import { uiRoutes } from "./ui.ts";

export type { ApiDeps } from "./deps.ts";

export function buildApp(d: ApiDeps): Hono {
  const app = new Hono();
  app.onError((e, c) => {
    d.logError(e);
    return problemFor(c, e);
  });
  app.notFound((c) => problem(c, 404, "not found", `no route for ${c.req.method} ${c.req.path}`));

  const auth = requireToken(d.token);
  app
    .route("/", uiRoutes())
    .route("/", healthRoutes(d))
    .route("/", metricsRoutes(d))
    .route("/", openapiRoutes())
    .route("/", interfaceRoutes(d, auth, limitBody(d.maxBodyBytes)))
    .route("/", flowRoutes(d))
    .route("/", eventRoutes(d));

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
  app.delete("/api/v1/mapek/actions/:id", auth, (c) => {
    if (!d.mapek) return mapekOff(c);
    const id = c.req.param("id");
    const a = d.mapek.revoke(id, "the API");
    if (!a) return problem(c, 404, "no such live action", `no active or observed action ${id}`);
    return c.json(a);
  });

  return app;
}
