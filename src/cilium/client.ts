/**
 * A read-only client of the Cilium agent's REST API, which the agent serves over HTTP/1.1 on a
 * UNIX socket (default /var/run/cilium/cilium.sock, base path /v1: see `x-schemes: unix` and
 * `basePath` in cilium/cilium api/v1/openapi.yaml).
 *
 * Deno's fetch does the HTTP (Content-Length and chunked bodies, keep-alive) through
 * `Deno.createHttpClient({ proxy: { transport: "unix", path } })`, checked on Deno 2.9.6. Each
 * call has one deadline covering connect, headers and body, and a body size cap. Every failure
 * becomes a CiliumApiError whose `kind` says what went wrong and whose message says it plainly.
 */
import {
  type AgentHealth,
  CiliumShapeError,
  type EndpointInfo,
  parseEndpoints,
  parseHealth,
} from "./model.ts";

export const DEFAULT_SOCKET = "/var/run/cilium/cilium.sock";
export const DEFAULT_TIMEOUT_MS = 2000;
/** A node with a few hundred endpoints answers GET /v1/endpoint in a few MB. */
export const DEFAULT_MAX_BODY_BYTES = 64 << 20;

export type CiliumErrorKind =
  /** No socket file: no agent on this box, or it is starting. */
  | "absent"
  /** A socket file, but nobody accepts on it: the agent stopped or is restarting. */
  | "refused"
  | "permission"
  | "timeout"
  /** A status other than 2xx. */
  | "http"
  /** Not JSON, not UTF-8, too large, or not of the model's shape. */
  | "malformed"
  /** Anything else on the way (connection reset, protocol error). */
  | "io";

export class CiliumApiError extends Error {
  constructor(
    readonly kind: CiliumErrorKind,
    /** e.g. "GET /v1/endpoint". */
    readonly request: string,
    detail: string,
    readonly status?: number,
  ) {
    super(`Cilium API ${request}: ${detail}`);
    this.name = "CiliumApiError";
  }
}

export interface CiliumClientOptions {
  socketPath?: string;
  timeoutMs?: number;
  maxBodyBytes?: number;
}

export class CiliumClient {
  readonly socketPath: string;
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;

  constructor(o: CiliumClientOptions = {}) {
    this.socketPath = o.socketPath ?? DEFAULT_SOCKET;
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxBodyBytes = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  }

  /** GET /v1/endpoint: every endpoint the agent manages on this node. */
  endpoints(): Promise<EndpointInfo[]> {
    return this.#parsed("/v1/endpoint", parseEndpoints);
  }

  /** GET /v1/healthz: the agent's own state ("Ok", "Warning", "Failure", "Disabled"). */
  health(): Promise<AgentHealth> {
    return this.#parsed("/v1/healthz", parseHealth);
  }

  async #parsed<T>(path: string, parse: (body: unknown) => T): Promise<T> {
    const body = await this.getJson(path);
    try {
      return parse(body);
    } catch (e) {
      if (e instanceof CiliumShapeError) {
        throw new CiliumApiError("malformed", `GET ${path}`, `unexpected shape: ${e.message}`);
      }
      throw e;
    }
  }

  /** GET `path` and its body as parsed JSON; throws CiliumApiError and nothing else. */
  async getJson(path: string): Promise<unknown> {
    const request = `GET ${path}`;
    const text = await this.#getText(path, request);
    try {
      return JSON.parse(text);
    } catch (e) {
      const head = text.slice(0, 60).replace(/[\s\p{Cc}]+/gu, " ").trim();
      throw new CiliumApiError(
        "malformed",
        request,
        `not JSON (${(e as Error).message}); ${
          head ? `the body begins: ${head}${text.length > 60 ? "…" : ""}` : "the body is empty"
        }`,
      );
    }
  }

  async #getText(path: string, request: string): Promise<string> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.timeoutMs);
    let client: Deno.HttpClient | undefined;
    try {
      client = Deno.createHttpClient({ proxy: { transport: "unix", path: this.socketPath } });
      // The host part is not used for routing; the agent's Go server accepts "localhost".
      const res = await fetch(`http://localhost${path}`, {
        client,
        signal: deadline.signal,
        headers: { accept: "application/json" },
      });
      const bytes = await this.#readBody(res, request);
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        throw new CiliumApiError("malformed", request, "the body is not valid UTF-8");
      }
      if (!res.ok) {
        const head = text.trim().slice(0, 200).replace(/\s+/g, " ");
        throw new CiliumApiError(
          "http",
          request,
          `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${
            head ? `: ${head}` : ""
          }`,
          res.status,
        );
      }
      return text;
    } catch (e) {
      if (e instanceof CiliumApiError) throw e;
      if (deadline.signal.aborted) {
        throw new CiliumApiError(
          "timeout",
          request,
          `no complete answer within ${this.timeoutMs} ms on ${this.socketPath}`,
        );
      }
      throw this.#transportError(e, request);
    } finally {
      clearTimeout(timer);
      client?.close();
    }
  }

  async #readBody(res: Response, request: string): Promise<Uint8Array> {
    if (!res.body) return new Uint8Array();
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > this.maxBodyBytes) {
          await reader.cancel().catch(() => {});
          throw new CiliumApiError(
            "malformed",
            request,
            `the body exceeds ${this.maxBodyBytes} bytes; refused`,
          );
        }
        chunks.push(value);
      }
    } finally {
      reader.releaseLock();
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }

  #transportError(e: unknown, request: string): CiliumApiError {
    const sock = this.socketPath;
    if (e instanceof Deno.errors.NotCapable) {
      return new CiliumApiError(
        "permission",
        request,
        `Deno may not use ${sock} (${e.message}); grant --allow-net and --allow-read for it`,
      );
    }
    // fetch reports connection failures as TypeError("fetch failed") with the OS error as cause.
    const causes: string[] = [];
    for (let c: unknown = e; c !== undefined && causes.length < 5; c = (c as Error).cause) {
      causes.push(c instanceof Error ? c.message : String(c));
      if (!(c instanceof Error)) break;
    }
    const all = causes.join(" / ");
    if (/os error 2\b|No such file or directory/i.test(all)) {
      return new CiliumApiError("absent", request, `no socket at ${sock} (no Cilium agent?)`);
    }
    if (/os error 111\b|Connection refused/i.test(all)) {
      return new CiliumApiError(
        "refused",
        request,
        `nobody is listening on ${sock} (the agent is stopped or restarting)`,
      );
    }
    if (/os error 13\b|Permission denied/i.test(all)) {
      return new CiliumApiError(
        "permission",
        request,
        `permission denied on ${sock}: run as root or in the socket's group`,
      );
    }
    const last = causes[causes.length - 1] ?? String(e);
    const detail = last.replace(/^error sending request for url \([^)]*\): /, "");
    return new CiliumApiError("io", request, `${detail} (via ${sock})`);
  }
}
