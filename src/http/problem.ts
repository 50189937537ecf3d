/** RFC 9457 problem details: every API error, with no stack trace. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { KernelError, LibraryError } from "../datapath/errors.ts";

export function problem(
  c: Context,
  status: ContentfulStatusCode,
  title: string,
  detail?: string,
  extra: Record<string, unknown> = {},
): Response {
  return c.body(
    JSON.stringify({ type: "about:blank", title, status, detail, ...extra }),
    status,
    { "content-type": "application/problem+json" },
  );
}

const ERRNO_STATUS: Record<string, ContentfulStatusCode> = {
  ENODEV: 404,
  EBUSY: 409,
  EEXIST: 409,
  EPERM: 403,
  EACCES: 403,
  EINVAL: 400,
  ENOSPC: 507,
  E2BIG: 507,
};

/** The problem for an error a service threw: kernel errors keep errno and fix. */
export function problemFor(c: Context, e: unknown): Response {
  if (e instanceof KernelError) {
    return problem(c, ERRNO_STATUS[e.errnoName] ?? 500, e.op, e.message.split("\n")[0], {
      errno: e.errnoName,
      hint: e.hint || undefined,
    });
  }
  if (e instanceof LibraryError) {
    return problem(c, 503, "eBPF is not available", e.message, { hint: e.hint });
  }
  return problem(c, 500, "internal error", "the appliance logged the details");
}
