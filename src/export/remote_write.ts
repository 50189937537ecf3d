/**
 * Prometheus remote-write (protocol 1.0): the box pushes its /metrics series to a central
 * Prometheus, Mimir, Thanos Receive or VictoriaMetrics that cannot reach it (NAT).
 *
 * Every `interval_s`, `offer` renders the /metrics page (the same series and bounds as a scrape)
 * and hands it over: that is all it does on the snapshot loop. In the background, a reader turns
 * the page into samples at the snapshot's time (remote_write_series.ts), a slice of lines at a
 * time so that a large page never holds the event loop for long, and queues them; a page offered
 * while the last is still being read is not taken (counted). A sender posts the oldest samples, at
 * most `MAX_SAMPLES_PER_REQUEST` a request, one request at a time so that every series reaches
 * the receiver in time order (Prometheus refuses a sample older than one it has). A request that
 * fails on the network, times out (`timeout_s`) or is answered 5xx or 429 is sent again after an
 * exponential back-off with jitter and a cap; any other answer but 2xx (4xx, and redirects,
 * which are not followed: credentials never go to another address) drops its samples, counted,
 * with the status and an excerpt of the body as the last error.
 *
 * The queue holds at most `queue_max_samples`, the request being sent included; beyond it the
 * oldest queued samples are dropped and counted. The request being sent is at most a quarter of
 * the queue, so a receiver that is down keeps the oldest request and the newest samples.
 */
import { hostname } from "node:os";
import type { Config } from "../config/schema.ts";
import type { Snapshot } from "../state/snapshot.ts";
import { VERSION } from "../version.ts";
import type { Exporter, ExportStatus } from "./exporter.ts";
import { type Page, PageSampler, type Series } from "./remote_write_series.ts";
import {
  encodeWriteRequest,
  REMOTE_WRITE_HEADERS,
  type TimeSeries,
  valueBits,
} from "./remote_write_wire.ts";

/** What the writer needs of the appliance's log (src/app/log.ts's Log is one). */
export type WriterLog = (
  level: "info" | "warn",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

export interface RemoteWriteOptions {
  /** The receiver, `http(s)://HOST[:PORT]/PATH`. */
  url: string;
  /** How often the page is sampled, in ms. */
  intervalMs: number;
  /** Time allowed for one request, answer included, in ms. */
  timeoutMs: number;
  /** Samples waiting for the receiver, the request being sent included. */
  queueMaxSamples: number;
  /**
   * `name=value`: labels every series gets unless it has them (a later one wins; an empty
   * value: none); `instance` (the host name) and `job` (x0tta6bl4) unless given.
   */
  externalLabels: readonly string[];
  /** `Name: value`: extra request headers. */
  headers: readonly string[];
  /** Files read at the start: a bearer token, or the password of `basicAuthUser`; "": none. */
  bearerTokenFile: string;
  basicAuthUser: string;
  basicAuthPasswordFile: string;
  /** Samples in one request at most (default MAX_SAMPLES_PER_REQUEST). */
  maxSamplesPerRequest?: number;
  /** The back-off after the first failed attempt, doubled after each (default 500 ms). */
  minBackoffMs?: number;
  /** The longest back-off (default 30 s). */
  maxBackoffMs?: number;
  /** How long stop() goes on sending what is queued (default 5 s). */
  stopGraceMs?: number;
}

const MAX_SAMPLES_PER_REQUEST = 5000;
/** Dropped samples keep the status degraded this long, in ms. */
const DROP_MEMORY_MS = 60_000;
/** Bytes of an error answer's body kept for the last error. */
const EXCERPT_BYTES = 512;
const EXCERPT_CHARS = 200;
/** The longest token or password taken from a file. */
const MAX_SECRET_CHARS = 4096;
/** Headers the protocol or the writer sets, which `headers` may not override. */
const RESERVED_HEADERS = new Set(
  [
    ...Object.keys(REMOTE_WRITE_HEADERS),
    "authorization",
    "content-length",
    "host",
    "user-agent",
    "connection",
    "transfer-encoding",
  ].map((h) => h.toLowerCase()),
);

/** The samples of one page still queued: series[start..] with their values. */
interface Chunk {
  readonly page: Page;
  start: number;
}

/** One request: its samples' count and its body, kept for retries. */
interface Batch {
  readonly samples: number;
  readonly body: Uint8Array<ArrayBuffer>;
}

type Outcome = "sent" | "rejected" | "retry" | "aborted";

/** Text from a peer, made safe for one line of status: printable, collapsed and short. */
function excerpt(text: string): string {
  // deno-lint-ignore no-control-regex
  const s = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").replace(/\s+/g, " ").trim();
  return s.length > EXCERPT_CHARS ? `${s.slice(0, EXCERPT_CHARS)}…` : s;
}

/** At most EXCERPT_BYTES of a body, then the rest is cancelled (a receiver may answer forever). */
async function readExcerpt(res: Response): Promise<string> {
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    while (n < EXCERPT_BYTES) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      n += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(n);
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  return excerpt(new TextDecoder().decode(all.subarray(0, EXCERPT_BYTES)));
}

/** An error's message and its causes' (fetch says "fetch failed", its cause says why). */
function errorText(e: unknown): string {
  const parts: string[] = [];
  for (let c = e, depth = 0; c !== undefined && depth < 4; depth++) {
    parts.push(c instanceof Error ? c.message : String(c));
    c = c instanceof Error ? c.cause : undefined;
  }
  return parts.join(": ");
}

/** A file's text, trimmed; a string error says why it cannot be used. */
function readSecret(path: string, what: string): { value: string } | { error: string } {
  try {
    const value = Deno.readTextFileSync(path).trim();
    if (value.length > MAX_SECRET_CHARS) return { error: `${what} ${path} is too long` };
    return value ? { value } : { error: `${what} ${path} is empty` };
  } catch (e) {
    return { error: `cannot read ${what} ${path}: ${(e as Error).message}` };
  }
}

/** Sets a header; false if the name or value cannot be one (the value is not repeated). */
function trySet(h: Headers, name: string, value: string): boolean {
  try {
    h.set(name, value);
    return true;
  } catch {
    return false;
  }
}

export class RemoteWriter implements Exporter {
  readonly name = "remote_write";
  readonly #url: string;
  /** The receiver without credentials or query, for status and logs. */
  readonly #where: string;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #queueMax: number;
  readonly #perRequest: number;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #stopGraceMs: number;
  readonly #log: WriterLog;
  readonly #headers: Headers = new Headers();
  /** Why nothing is pushed at all: a configuration or credential problem found at the start. */
  readonly #configError: string | undefined;
  readonly #sampler: PageSampler;
  readonly #client: Deno.HttpClient | undefined;
  /** Aborted when stop()'s grace period ends: reading, the request and the back-off end. */
  readonly #abort = new AbortController();
  /** The reader's and the sender's tasks. */
  readonly #tasks: Promise<void>[] = [];

  /** The page being turned into samples, from offer() until the reader has queued it. */
  #page: { text: string; timestamp: number } | undefined;
  #wakeReader: (() => void) | undefined;
  #chunks: Chunk[] = [];
  #queued = 0;
  #inflight: Batch | undefined;
  #wakeSender: (() => void) | undefined;
  #wakePause: (() => void) | undefined;
  #nextAt = -Infinity;
  #lastTimestamp = -Infinity;
  #stopping = false;
  #stopped: Promise<void> | undefined;

  #sent = 0;
  #requests = 0;
  #failed = 0;
  #droppedQueueFull = 0;
  #droppedRejected = 0;
  #droppedAtStop = 0;
  /** Pages not taken: the one before was still being read, or stop() ended reading one. */
  #skipped = 0;
  #lastDropAt = -Infinity;
  #failuresInARow = 0;
  #lastError: string | undefined;
  #lastRejectLogAt = -Infinity;
  #lastSuccessAt: number | undefined;

  constructor(o: RemoteWriteOptions, log: WriterLog) {
    this.#log = log;
    this.#intervalMs = o.intervalMs;
    this.#timeoutMs = o.timeoutMs;
    this.#queueMax = o.queueMaxSamples;
    this.#perRequest = Math.max(
      1,
      Math.min(
        o.maxSamplesPerRequest ?? MAX_SAMPLES_PER_REQUEST,
        Math.floor(o.queueMaxSamples / 4),
      ),
    );
    this.#minBackoffMs = o.minBackoffMs ?? 500;
    this.#maxBackoffMs = o.maxBackoffMs ?? 30_000;
    this.#stopGraceMs = o.stopGraceMs ?? 5000;
    this.#url = o.url;
    let where = o.url;
    try {
      const u = new URL(o.url);
      where = `${u.protocol}//${u.host}${u.pathname}`;
    } catch { /* reported below */ }
    this.#where = where;

    const external = new Map([["instance", hostname()], ["job", "x0tta6bl4"]]);
    for (const l of o.externalLabels) {
      const eq = l.indexOf("=");
      external.set(l.slice(0, eq), l.slice(eq + 1));
    }
    this.#sampler = new PageSampler([...external].map(([name, value]) => ({ name, value })));

    this.#configError = this.#setHeaders(o);
    if (this.#configError !== undefined) {
      log("warn", "remote-write cannot push", { url: this.#where, error: this.#configError });
      return;
    }
    this.#client = Deno.createHttpClient({});
    this.#tasks.push(this.#read(), this.#send());
  }

  /**
   * The writer of a configuration's `export.remote_write`, or undefined when no URL is set. A
   * bad credential file does not throw: the writer's status says what is wrong. Series also get
   * `x0tta6bl4_node`, this box's mesh name (the host name unless mesh.name is set), the label
   * the mesh's service discovery gives scraped series, which the dashboard and alerts select by.
   */
  static fromConfig(c: Config, log: WriterLog): Exporter | undefined {
    const rw = c.export.remote_write;
    if (rw.url === "") return undefined;
    return new RemoteWriter({
      url: rw.url,
      intervalMs: rw.interval_s * 1000,
      timeoutMs: rw.timeout_s * 1000,
      queueMaxSamples: rw.queue_max_samples,
      externalLabels: [`x0tta6bl4_node=${c.mesh.name || hostname()}`, ...rw.external_labels],
      headers: rw.headers,
      bearerTokenFile: rw.bearer_token_file,
      basicAuthUser: rw.basic_auth_user,
      basicAuthPasswordFile: rw.basic_auth_password_file,
    }, log);
  }

  /** The request headers; a string says why the writer cannot push. */
  #setHeaders(o: RemoteWriteOptions): string | undefined {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      return `not a URL: ${o.url}`;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") return "not an http or https URL";
    if (u.username || u.password) {
      return "credentials in the URL: use basic_auth_user and basic_auth_password_file";
    }
    const h = this.#headers;
    for (const line of o.headers) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon);
      if (RESERVED_HEADERS.has(name.toLowerCase())) {
        return `header ${name} is set by the writer and cannot be given in headers`;
      }
      if (!trySet(h, name, line.slice(colon + 1).trim())) {
        return `header ${name}: not a valid HTTP header`;
      }
    }
    for (const [name, value] of Object.entries(REMOTE_WRITE_HEADERS)) h.set(name, value);
    h.set("User-Agent", `x0tta6bl4/${VERSION}`);
    if (o.bearerTokenFile && (o.basicAuthUser || o.basicAuthPasswordFile)) {
      return "both a bearer token and basic auth are configured: choose one";
    }
    if (o.bearerTokenFile) {
      const t = readSecret(o.bearerTokenFile, "bearer_token_file");
      if ("error" in t) return t.error;
      if (!trySet(h, "Authorization", `Bearer ${t.value}`)) {
        return `bearer_token_file ${o.bearerTokenFile}: the token is not valid in a header`;
      }
    } else if (o.basicAuthPasswordFile && !o.basicAuthUser) {
      return "basic_auth_password_file is set without basic_auth_user";
    } else if (o.basicAuthUser) {
      let password = "";
      if (o.basicAuthPasswordFile) {
        const p = readSecret(o.basicAuthPasswordFile, "basic_auth_password_file");
        if ("error" in p) return p.error;
        password = p.value;
      }
      const pair = new TextEncoder().encode(`${o.basicAuthUser}:${password}`);
      h.set("Authorization", `Basic ${btoa(String.fromCharCode(...pair))}`); // base64: valid
    }
    return undefined;
  }

  /**
   * Every `intervalMs`: the page rendered at the snapshot's time, for the reader to turn into
   * samples in the background. Returns at once; a page that cannot be rendered is skipped and
   * shown as the last error, and so is one while the last is still being read (a large page on
   * a busy box), as a scrape that would overlap the one before.
   */
  offer(s: Snapshot, metrics: () => string): void {
    if (this.#configError !== undefined || this.#stopping) return;
    const now = performance.now();
    if (now < this.#nextAt) return;
    // On a fixed grid while snapshots keep up; after a gap, a full interval from now.
    const next = this.#nextAt + this.#intervalMs;
    this.#nextAt = next > now ? next : now + this.#intervalMs;
    const timestamp = Math.round(s.takenAt);
    if (timestamp <= this.#lastTimestamp) {
      // The receiver would refuse the request (out of order): skip until the clock is past it.
      this.#lastError = `the clock went back: snapshot at ${new Date(timestamp).toISOString()} ` +
        `is not after the last sample's (${new Date(this.#lastTimestamp).toISOString()}); skipped`;
      return;
    }
    if (this.#page !== undefined) {
      this.#skipped++;
      return;
    }
    let text: string;
    try {
      text = metrics();
    } catch (e) {
      this.#lastError = `rendering /metrics failed: ${(e as Error).message}`;
      return;
    }
    this.#page = { text, timestamp };
    this.#lastTimestamp = timestamp;
    this.#wakeReader?.();
  }

  /**
   * The reader: each page offered, turned into samples a slice of lines at a time (the event
   * loop has a turn between slices), then queued.
   */
  async #read(): Promise<void> {
    const abort = this.#abort.signal;
    while (!abort.aborted) {
      const p = this.#page;
      if (p === undefined) {
        if (this.#stopping) return;
        await new Promise<void>((resolve) => this.#wakeReader = resolve);
        this.#wakeReader = undefined;
        continue;
      }
      let page: Page | undefined;
      try {
        const reading = this.#sampler.sample(p.text, p.timestamp);
        let step = reading.next();
        while (!step.done && !abort.aborted) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          step = reading.next();
        }
        page = step.done ? step.value : undefined; // undefined: stop()'s grace ended first
      } catch (e) {
        this.#lastError = `reading /metrics failed: ${(e as Error).message}`;
      }
      this.#page = undefined;
      if (page === undefined) {
        this.#skipped++;
        continue;
      }
      if (page.firstError !== undefined) {
        this.#lastError = `${page.errors} line(s) of /metrics skipped: ${page.firstError}`;
      }
      this.#enqueue(page);
      this.#wakeSender?.();
    }
  }

  #enqueue(page: Page): void {
    const n = page.series.length;
    if (n === 0) return;
    this.#chunks.push({ page, start: 0 });
    this.#queued += n;
    let over = this.#queued + (this.#inflight?.samples ?? 0) - this.#queueMax;
    if (over > 0) {
      this.#droppedQueueFull += over;
      this.#lastDropAt = performance.now();
    }
    while (over > 0) {
      const c = this.#chunks[0];
      const k = Math.min(over, c.page.series.length - c.start);
      c.start += k;
      this.#queued -= k;
      over -= k;
      if (c.start === c.page.series.length) this.#chunks.shift();
    }
  }

  /** The oldest queued samples, at most #perRequest, out of the queue, grouped by series. */
  #take(): { samples: number; series: TimeSeries[] } {
    const bySeries = new Map<Series, TimeSeries>();
    let n = 0;
    while (n < this.#perRequest && this.#chunks.length > 0) {
      const c = this.#chunks[0];
      const { series, values, timestamp } = c.page;
      const words = new Uint32Array(values.buffer, values.byteOffset, values.length * 2);
      const end = Math.min(series.length, c.start + this.#perRequest - n);
      for (let i = c.start; i < end; i++) {
        let ts = bySeries.get(series[i]);
        if (ts === undefined) {
          bySeries.set(series[i], ts = { labels: series[i].labels, samples: [] });
        }
        ts.samples.push({ value: valueBits(words, i), timestamp });
      }
      n += end - c.start;
      this.#queued -= end - c.start;
      c.start = end;
      if (end === series.length) this.#chunks.shift();
    }
    return { samples: n, series: [...bySeries.values()] };
  }

  /** The sender: one request at a time, oldest first, until stop() and its grace end. */
  async #send(): Promise<void> {
    const abort = this.#abort.signal;
    while (!abort.aborted) {
      if (this.#inflight === undefined) {
        if (this.#queued === 0) {
          if (this.#stopping && this.#page === undefined) return;
          await new Promise<void>((resolve) => this.#wakeSender = resolve);
          this.#wakeSender = undefined;
          continue;
        }
        const { samples, series } = this.#take();
        try {
          this.#inflight = { samples, body: encodeWriteRequest(series) };
        } catch (e) {
          this.#lastError = `cannot encode ${samples} samples: ${(e as Error).message}`;
          this.#drop(samples);
          continue;
        }
      }
      const outcome = await this.#attempt(this.#inflight);
      if (outcome === "sent" || outcome === "rejected") this.#inflight = undefined;
      else if (outcome === "retry") await this.#pause(this.#backoffMs());
    }
  }

  /** Samples given up (refused, or not encodable): counted; logged at most once a minute. */
  #drop(samples: number): void {
    this.#droppedRejected += samples;
    this.#lastDropAt = performance.now();
    if (performance.now() - this.#lastRejectLogAt >= DROP_MEMORY_MS) {
      this.#lastRejectLogAt = performance.now();
      this.#log("warn", "remote-write dropped samples it cannot deliver", {
        url: this.#where,
        samples,
        error: this.#lastError,
      });
    }
  }

  /**
   * Waits `ms`, or less: when stop() begins (one more try at once, within the grace period) or
   * when its grace period ends.
   */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.#abort.signal;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wakePause = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done);
      this.#wakePause = done;
    });
  }

  /** Exponential in the failures in a row, capped, with jitter: half of it, or up to all. */
  #backoffMs(): number {
    const exp = Math.min(30, this.#failuresInARow - 1);
    const d = Math.min(this.#maxBackoffMs, this.#minBackoffMs * 2 ** exp);
    return d / 2 + Math.random() * d / 2;
  }

  async #attempt(b: Batch): Promise<Outcome> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#timeoutMs);
    let status: number, body: string, location: string | null;
    try {
      const res = await fetch(this.#url, {
        method: "POST",
        headers: this.#headers,
        body: b.body,
        redirect: "manual",
        client: this.#client,
        signal: AbortSignal.any([timeout.signal, this.#abort.signal]),
      });
      status = res.status;
      location = res.headers.get("location");
      // A success's body says nothing more: not waited for (it may never end).
      if (status >= 200 && status < 300) {
        await res.body?.cancel().catch(() => {});
        body = "";
      } else body = await readExcerpt(res);
    } catch (e) {
      if (this.#abort.signal.aborted) return "aborted";
      return this.#failure(
        timeout.signal.aborted
          ? `no answer within ${this.#timeoutMs / 1000} s`
          : excerpt(errorText(e)),
      );
    } finally {
      clearTimeout(timer);
    }
    if (status >= 200 && status < 300) {
      if (this.#failuresInARow > 0) {
        this.#log("info", "remote-write delivers again", {
          url: this.#where,
          failedAttempts: this.#failuresInARow,
        });
      }
      this.#failuresInARow = 0;
      this.#sent += b.samples;
      this.#requests++;
      this.#lastSuccessAt = Date.now();
      return "sent";
    }
    if (status === 429 || status >= 500) return this.#failure(`HTTP ${status}: ${body}`);
    // Refused (4xx), or sent elsewhere (3xx): the same request would fare no better.
    this.#failed++;
    this.#failuresInARow = 0;
    this.#lastError = status >= 300 && status < 400
      ? `HTTP ${status}: redirect to ${excerpt(location ?? "nowhere")} not followed ` +
        "(set export.remote_write.url to the final address)"
      : `HTTP ${status}: ${body}`;
    this.#drop(b.samples);
    return "rejected";
  }

  /** A failed attempt to retry: counted, and the first of a run of them logged. */
  #failure(error: string): Outcome {
    this.#failed++;
    this.#lastError = error;
    if (this.#failuresInARow++ === 0) {
      this.#log("warn", "remote-write failed: retrying with back-off", { url: this.#where, error });
    }
    return "retry";
  }

  status(): ExportStatus {
    const dropped = this.#droppedQueueFull + this.#droppedRejected + this.#droppedAtStop;
    const queued = this.#queued + (this.#inflight?.samples ?? 0);
    const counts = {
      kind: "remote_write" as const,
      destination: this.#where,
      sent: this.#sent,
      failed: this.#failed,
      dropped,
      droppedBy: {
        queue_full: this.#droppedQueueFull,
        rejected: this.#droppedRejected,
        stopped: this.#droppedAtStop,
      },
      queued,
      ...(this.#lastSuccessAt === undefined ? {} : { lastSuccessAt: this.#lastSuccessAt }),
    };
    if (this.#configError !== undefined) {
      return {
        state: "unhealthy",
        reason: `not pushing to ${this.#where}: ${this.#configError}`,
        ...counts,
        lastError: this.#configError,
      };
    }
    let reason = `to ${this.#where}: ${this.#sent} samples sent in ${this.#requests} ` +
      `requests, ${queued} queued, ${dropped} dropped (${this.#droppedQueueFull} queue full, ` +
      `${this.#droppedRejected} rejected, ${this.#droppedAtStop} at stop)`;
    if (this.#skipped > 0) {
      reason += `; ${this.#skipped} pages not taken (the one before was still being read, ` +
        "or the stop came first)";
    }
    if (this.#failuresInARow > 0) {
      reason += `; retrying after ${this.#failuresInARow} failed attempts: ${this.#lastError}`;
    } else if (this.#lastError !== undefined) reason += `; last error: ${this.#lastError}`;
    const recentDrop = performance.now() - this.#lastDropAt < DROP_MEMORY_MS;
    return {
      state: this.#failuresInARow > 0 || recentDrop ? "degraded" : "healthy",
      reason,
      ...counts,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  /**
   * Stops sampling, sends what is queued for at most the grace period, then aborts the request
   * in flight; what is left is counted as dropped.
   */
  stop(): Promise<void> {
    return this.#stopped ??= this.#stop();
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    if (this.#tasks.length === 0) return;
    const grace = setTimeout(() => this.#abort.abort(), this.#stopGraceMs);
    this.#wakeReader?.();
    this.#wakeSender?.();
    this.#wakePause?.();
    await Promise.all(this.#tasks);
    clearTimeout(grace);
    const left = this.#queued + (this.#inflight?.samples ?? 0);
    if (left > 0) {
      this.#droppedAtStop += left;
      this.#lastDropAt = performance.now();
      this.#log("warn", "remote-write stopped with samples unsent", {
        url: this.#where,
        samples: left,
      });
    }
    this.#chunks = [];
    this.#queued = 0;
    this.#inflight = undefined;
    this.#client?.close();
  }
}
