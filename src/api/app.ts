/**
 * The HTTP API on Hono: one router per resource, composed here with the error handlers they
 * share. Handlers read the state store and call services; they never touch the kernel.
 * Each router names its routes in full, so a path in the OpenAPI document is found by grep.
 */
import { Hono } from "hono";
import { mapekRoutes } from "../mapek/routes.ts";
import { meshRoutes } from "../mesh/routes.ts";
import type { ApiDeps } from "./deps.ts";
import { limitBody, requireToken } from "../http/middleware.ts";
import { problem, problemFor } from "../http/problem.ts";
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
  return app
    .route("/", uiRoutes())
    .route("/", healthRoutes(d))
    .route("/", metricsRoutes(d))
    .route("/", openapiRoutes())
    .route("/", interfaceRoutes(d, auth, limitBody(d.maxBodyBytes)))
    .route("/", flowRoutes(d))
    .route("/", eventRoutes(d))
    .route("/", meshRoutes(d.mesh, () => d.mapek?.degradedPeers() ?? []))
    .route("/", mapekRoutes(d.mapek, auth));
}
