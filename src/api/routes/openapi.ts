/** /api/v1/openapi.json: the OpenAPI document of this API. */
import { Hono } from "hono";
import { OPENAPI } from "../openapi.ts";

export function openapiRoutes(): Hono {
  const r = new Hono();
  r.get("/api/v1/openapi.json", (c) => c.json(OPENAPI));
  return r;
}
