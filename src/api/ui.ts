/**
 * The built-in status page, embedded with the rest: static imports of src/ui/, so `deno run`,
 * `deno test` and `deno compile` serve the same bytes, and nothing is fetched from elsewhere.
 */
import { Hono } from "hono";
import html from "../ui/index.html" with { type: "text" };
import script from "../ui/app.js" with { type: "text" };
import css from "../ui/style.css" with { type: "text" };

const SECURITY = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; " +
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/** The page and its files: no data in them, so they are served without a token. */
export const UI_PATHS = ["/", "/ui/app.js", "/ui/style.css"] as const;

export function uiRoutes(): Hono {
  const r = new Hono();
  r.get(
    "/",
    (c) => c.body(html, 200, { ...SECURITY, "content-type": "text/html; charset=utf-8" }),
  );
  r.get(
    "/ui/app.js",
    (c) => c.body(script, 200, { ...SECURITY, "content-type": "text/javascript; charset=utf-8" }),
  );
  r.get(
    "/ui/style.css",
    (c) => c.body(css, 200, { ...SECURITY, "content-type": "text/css; charset=utf-8" }),
  );
  return r;
}
