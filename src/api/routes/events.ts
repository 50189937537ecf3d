/**
 * /api/v1/events: the live event log as Server-Sent Events. A client resumes with
 * Last-Event-ID (or ?last_event_id=) and is told of a gap when events it missed are gone; an
 * id this run never issued (one from before a restart) starts it afresh with a `reset` event.
 * ?summary=1 adds the status page's periodic summaries. A client that reads too slowly loses
 * only its own events, is told how many in a `gap`, and is let go a whole queue behind; at
 * most `maxEventClients` stream at once.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { LiveEvent } from "../../state/events.ts";
import type { ApiDeps } from "../deps.ts";
import { problem } from "../../http/problem.ts";

/** Events queued per client before it loses the oldest. */
const CLIENT_QUEUE = 1000;

export function eventRoutes(d: Pick<ApiDeps, "store" | "summary" | "maxEventClients">): Hono {
  const r = new Hono();
  r.get("/api/v1/events", (c) => {
    const header = c.req.header("last-event-id") ?? c.req.query("last_event_id");
    const from = header === undefined ? undefined : Number(header);
    if (from !== undefined && !(Number.isInteger(from) && from >= 0)) {
      return problem(c, 400, "bad Last-Event-ID", "expected a non-negative integer");
    }
    const log = d.store.events;
    const max = d.maxEventClients ?? 16;
    if (log.subscribers >= max) {
      return problem(
        c,
        503,
        "too many event clients",
        `${max} clients already stream events (api.max_event_clients); try again later`,
      );
    }
    const summaries = c.req.query("summary") === "1";
    const sub = log.subscribe(CLIENT_QUEUE, summaries);
    // Where the subscription starts: what comes after is queued for this client, so the
    // replay and the queue meet here, whatever happens while the stream opens.
    const start = log.lastId;
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => sub.close());
      // A client that does not read is cut, not waited for: its writes would never finish.
      sub.onLetGo = () => stream.abort();
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
      const known = from === undefined || log.issued(from);
      if (!known) {
        await stream.writeSSE({
          event: "reset",
          data: JSON.stringify({ lastEventId: from, lastId: start }),
        });
      }
      let sentUpTo = known ? from ?? start : start;
      if (from !== undefined && known) {
        // 0 asks for everything this run still keeps.
        const { events, gap } = log.since(from === 0 ? log.firstId - 1 : from);
        if (gap) {
          await stream.writeSSE({ event: "gap", data: JSON.stringify({ after: from }) });
        }
        for (const e of events) await send(e);
        sentUpTo = events.at(-1)?.id ?? sentUpTo;
      }
      while (!sub.closed && !stream.aborted) {
        const batch = await sub.take(15_000);
        const lost = sub.takeLost();
        if (lost) {
          await stream.writeSSE({ event: "gap", data: JSON.stringify({ lost, slow: true }) });
        }
        if (batch.length === 0 && !lost) await stream.write(": keep-alive\n\n");
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
