/**
 * /api/v1/events: the live event log as Server-Sent Events. A client resumes with
 * Last-Event-ID (or ?last_event_id=) and is told of a gap when events it missed are gone;
 * ?summary=1 adds the status page's periodic summaries.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { LiveEvent } from "../../state/events.ts";
import type { ApiDeps } from "../deps.ts";
import { problem } from "../../http/problem.ts";

export function eventRoutes(d: Pick<ApiDeps, "store" | "summary">): Hono {
  const r = new Hono();
  r.get("/api/v1/events", (c) => {
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
  return r;
}
