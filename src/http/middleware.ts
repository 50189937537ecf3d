/**
 * What every router of the API shares: the bearer tokens, the Host check, the body size
 * limit, and zod's complaints about a query or body as one problem detail.
 */
import { timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type * as z from "zod";
import { isAddress } from "../net/address.ts";
import { problem } from "./problem.ts";

/** The tokens a request may carry: the admin token, and an optional read-only one. */
export interface Tokens {
  admin: string;
  read?: string;
}

const encoder = new TextEncoder();
/** Compares in constant time (for equal lengths), so a token is not guessed byte by byte. */
function sameToken(given: string, want: string | undefined): boolean {
  if (want === undefined) return false;
  const a = encoder.encode(given), b = encoder.encode(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;

/** 401 or 400, with the challenge every refusal of a missing or wrong token carries. */
function unauthorized(c: Context, status: 400 | 401, detail: string): Response {
  const res = problem(c, status, "unauthorized", detail);
  res.headers.set("www-authenticate", 'Bearer realm="x0tta6bl4"');
  return res;
}

/**
 * Requires a bearer token: the admin token, or with `read` also the read-only one. A read-only
 * token on a call that changes something is refused with 403, not taken for a wrong token.
 * With `query`, the token may also come as `?access_token=` (EventSource cannot send headers).
 */
export function requireToken(
  tokens: Tokens,
  o: { read?: boolean; query?: boolean } = {},
): MiddlewareHandler {
  return async (c, next) => {
    const header = c.req.header("authorization");
    let token: string | undefined;
    if (header !== undefined) {
      const m = BEARER.exec(header);
      if (!m) return unauthorized(c, 400, "malformed Authorization header");
      token = m[1];
    } else if (o.query) token = c.req.query("access_token");
    if (token === undefined) {
      return unauthorized(
        c,
        401,
        "a bearer token is required for this call (Authorization: Bearer TOKEN)",
      );
    }
    if (sameToken(token, tokens.admin) || (o.read && sameToken(token, tokens.read))) {
      return await next();
    }
    if (sameToken(token, tokens.read)) {
      return problem(
        c,
        403,
        "read-only token",
        "this token can only read; this call needs the API token",
      );
    }
    return unauthorized(c, 401, "wrong token");
  };
}

/**
 * Refuses requests whose `Host` is not one the API answers to (DNS rebinding: a page that
 * makes its own name resolve to 127.0.0.1 must not read the API). A request without `Host`
 * (not from a browser) passes.
 */
export function checkHost(allowed: (host: string) => boolean): MiddlewareHandler {
  return async (c, next) => {
    const host = c.req.header("host");
    if (host === undefined || allowed(hostOnly(host))) return await next();
    return problem(
      c,
      403,
      "host not allowed",
      `this API does not answer to the name ${JSON.stringify(host.slice(0, 100))}: use ` +
        "localhost or the address it listens on, or add the name to api.allowed_hosts",
    );
  };
}

/**
 * Which Host names an API listening on `listenHost` answers to: on loopback, localhost and the
 * loopback addresses (any port) and `allowed`; elsewhere, when `allowed` is set, those names and
 * any IP address; elsewhere without `allowed`, any (undefined: no check).
 */
export function hostPolicy(
  listenHost: string,
  allowed: readonly string[],
): ((host: string) => boolean) | undefined {
  const names = new Set(allowed.map((h) => h.toLowerCase()));
  const loopback = listenHost === "localhost" || listenHost === "::1" ||
    /^127\.\d+\.\d+\.\d+$/.test(listenHost);
  if (loopback) {
    return (h) =>
      names.has(h) || h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
  }
  if (names.size === 0) return undefined;
  return (h) => names.has(h) || isAddress(h);
}

/** The host of a Host header, without the port and the IPv6 brackets, lower case. */
function hostOnly(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") < 0 ? undefined : h.indexOf("]"));
  const colon = h.lastIndexOf(":");
  return colon >= 0 && h.indexOf(":") === colon ? h.slice(0, colon) : h;
}

/** Refuses a request body over `maxBytes` with a 413 problem. */
export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: (c) => problem(c, 413, "request body too large", `the limit is ${maxBytes} bytes`),
  });
}

/** Every issue as `path: message`, joined by "; " (a whole-object issue as "(body)"). */
export function issues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
}

/** The request's query as `schema` parses it, or the 400 problem that says what is wrong. */
export function parseQuery<S extends z.ZodType>(c: Context, schema: S): z.output<S> | Response {
  const q = schema.safeParse(c.req.query());
  return q.success ? q.data : problem(c, 400, "bad query", issues(q.error));
}
