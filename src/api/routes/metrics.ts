/** /metrics: the Prometheus text exposition, as the appliance renders it. */
import { Hono } from "hono";
import { CONTENT_TYPE } from "../../metrics/exposition.ts";
import type { ApiDeps } from "../deps.ts";

export function metricsRoutes(d: Pick<ApiDeps, "metrics">): Hono {
  const r = new Hono();
  r.get("/metrics", (c) => c.body(d.metrics(), 200, { "content-type": CONTENT_TYPE }));
  return r;
}
