/**
 * The HTTP API on Hono: one router per resource, composed here with the error handlers they
 * share. Handlers read the state store and call services; they never touch the kernel.
 * Each router names its routes in full, so a path in the OpenAPI document is found by grep.
 */
import { Hono } from "hono";
import { mapekRoutes } from "../mapek/routes.ts";
import { meshRoutes } from "../mesh/routes.ts";
import type { ApiDeps } from "./deps.ts";
import { checkHost, limitBody, requireToken } from "../http/middleware.ts";
import { problem, problemFor } from "../http/problem.ts";
import { eventRoutes } from "./routes/events.ts";
import { flowRoutes } from "./routes/flows.ts";
import { healthRoutes } from "./routes/health.ts";
import { interfaceRoutes } from "./routes/interfaces.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { openapiRoutes } from "./routes/openapi.ts";
import { UI_PATHS, uiRoutes } from "./ui.ts";

export type { ApiDeps } from "./deps.ts";

export function buildApp(d: ApiDeps): Hono {
  const app = new Hono();
  app.onError((e, c) => {
    d.logError(e);
    return problemFor(c, e);
  });
  app.notFound((c) => problem(c, 404, "not found", `no route for ${c.req.method} ${c.req.path}`));

  const tokens = { admin: d.token, read: d.readToken };
  const auth = requireToken(tokens);
  if (d.allowedHost) app.use("*", checkHost(d.allowedHost));
  if (d.auth === "all") {
    // Every read too, but the probes and the page's own files (they hold no data; the page
    // asks for the token before it reads anything).
    const open = new Set(["/livez", "/readyz", ...UI_PATHS]);
    const read = requireToken(tokens, { read: true });
    const stream = requireToken(tokens, { read: true, query: true });
    app.use("*", (c, next) => {
      if (open.has(c.req.path)) return next();
      return (c.req.path === "/api/v1/events" ? stream : read)(c, next);
    });
  }
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
