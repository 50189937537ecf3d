/**
 * What every router of the API shares: the bearer token on mutating calls, the body size
 * limit, and zod's complaints about a query or body as one problem detail.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { bearerAuth } from "hono/bearer-auth";
import { HTTPException } from "hono/http-exception";
import type * as z from "zod";
import { problem } from "./problem.ts";

/**
 * Requires `Authorization: Bearer <token>`. bearerAuth throws an HTTPException whose response
 * carries our message: it is re-issued as a problem, with the WWW-Authenticate challenge.
 */
export function requireToken(token: string): MiddlewareHandler {
  const auth = bearerAuth({
    token,
    noAuthenticationHeader: {
      message: "a bearer token is required for this call (Authorization: Bearer TOKEN)",
    },
    invalidAuthenticationHeader: { message: "malformed Authorization header" },
    invalidToken: { message: "wrong token" },
  });
  return async (c, next) => {
    try {
      return await auth(c, next);
    } catch (e) {
      if (!(e instanceof HTTPException)) throw e;
      const msg = await e.getResponse().text() || "unauthorized";
      const res = problem(c, e.status === 400 ? 400 : 401, "unauthorized", msg);
      res.headers.set("www-authenticate", 'Bearer realm="x0tta6bl4"');
      return res;
    }
  };
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
