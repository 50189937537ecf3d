/**
 * The watched interfaces: listed with their rates, attached and detached on request, and the
 * eBPF datapath retried after a fallback. Every change needs the token.
 */
import { Hono, type MiddlewareHandler } from "hono";
import * as z from "zod";
import type { ApiDeps } from "../deps.ts";
import { issues } from "../../http/middleware.ts";
import { problem, problemFor } from "../../http/problem.ts";

const AttachBody = z.object({
  name: z.string().regex(/^[^\s/]{1,15}$/, "expected an interface name (1-15 characters)"),
}).strict();

export function interfaceRoutes(
  d: Pick<ApiDeps, "store" | "collector">,
  auth: MiddlewareHandler,
  limit: MiddlewareHandler,
): Hono {
  const r = new Hono();
  r.get("/api/v1/interfaces", (c) => {
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

  r.post("/api/v1/interfaces", auth, limit, async (c) => {
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

  r.delete("/api/v1/interfaces/:name", auth, (c) => {
    const name = c.req.param("name");
    if (!d.collector.detach(name)) {
      return problem(c, 404, "not watched", `interface ${name} is not watched`);
    }
    return c.body(null, 204);
  });

  r.post("/api/v1/datapath/retry", auth, (c) => {
    const ok = d.collector.retry();
    return c.json(
      { mode: d.collector.mode, reason: d.collector.fallbackReason || undefined },
      ok ? 200 : 503,
    );
  });
  return r;
}
