/**
 * The MAPE-K loop's HTTP routes: its status, its decisions (newest first, `limit` of them),
 * its actions (live ones, or `all=1` with those that ended) and revoking a live action, which
 * needs the token. Each is a 404 problem while the loop is off.
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import * as z from "zod";
import { parseQuery } from "../http/middleware.ts";
import { problem } from "../http/problem.ts";
import type { MapekLoop } from "./loop.ts";

const off = (c: Context) =>
  problem(c, 404, "MAPE-K not enabled", "set mapek.enabled to run the loop");

const DecisionsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(5000).default(100),
}).strict();

export function mapekRoutes(
  mapek: Pick<MapekLoop, "status" | "decisions" | "actions" | "revoke"> | undefined,
  auth: MiddlewareHandler,
): Hono {
  const r = new Hono();
  r.get("/api/v1/mapek", (c) => mapek ? c.json(mapek.status()) : off(c));
  r.get("/api/v1/mapek/decisions", (c) => {
    if (!mapek) return off(c);
    const q = parseQuery(c, DecisionsQuery);
    if (q instanceof Response) return q;
    return c.json({ decisions: mapek.decisions(q.limit) });
  });
  r.get("/api/v1/mapek/actions", (c) => {
    if (!mapek) return off(c);
    const all = c.req.query("all");
    if (all !== undefined && all !== "0" && all !== "1") {
      return problem(c, 400, "bad query", "all: expected 0 or 1");
    }
    return c.json({ actions: mapek.actions(all === "1") });
  });
  r.delete("/api/v1/mapek/actions/:id", auth, (c) => {
    if (!mapek) return off(c);
    const id = c.req.param("id");
    const a = mapek.revoke(id, "the API");
    if (!a) return problem(c, 404, "no such live action", `no active or observed action ${id}`);
    return c.json(a);
  });
  return r;
}
