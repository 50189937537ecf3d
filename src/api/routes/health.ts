/**
 * Health by status code for probes (/livez, /readyz) and per component for people and scripts
 * (/api/v1/health).
 */
import { Hono } from "hono";
import type { ApiDeps } from "../deps.ts";

export function healthRoutes(d: Pick<ApiDeps, "store" | "collector" | "ready">): Hono {
  const r = new Hono();
  r.get("/livez", (c) => c.text("ok\n"));
  r.get("/readyz", (c) => {
    const s = d.ready();
    return c.text(`${s.ready ? "ready" : "not ready"}: ${s.reason}\n`, s.ready ? 200 : 503);
  });
  r.get("/api/v1/health", (c) => {
    const s = d.store;
    return c.json({
      status: s.health.overall(),
      mode: d.collector.mode,
      fallbackReason: d.collector.fallbackReason || undefined,
      snapshotAt: s.current ? new Date(s.current.takenAt).toISOString() : null,
      components: s.health.list().map((h) => ({ ...h, since: new Date(h.since).toISOString() })),
    });
  });
  return r;
}
