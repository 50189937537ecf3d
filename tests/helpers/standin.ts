/**
 * A stand-in for the compiled appliance in the upgrade tests (deno compile cannot fetch its
 * runtime here): serves /readyz and /api/v1/health on 127.0.0.1:PORT as a release that is
 * "ready" (eBPF, healthy), "never" ready, "fallback" (ready, in fallback mode) or "unhealthy"
 * (ready, eBPF, one component unhealthy). With TOKEN_FILE, health answers only a request that
 * carries its token (every read behind the token).
 * `deno run -A standin.ts PORT ready|never|fallback|unhealthy NAME [TOKEN_FILE]`
 */
const [port, kind, name, tokenFile] = Deno.args;
Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen: () => {} }, (req) => {
  const path = new URL(req.url).pathname;
  if (path === "/readyz") {
    return kind === "never"
      ? new Response(`not ready: ${name}\n`, { status: 503 })
      : new Response(`ready: ${name}\n`);
  }
  if (path !== "/api/v1/health") return new Response("not found\n", { status: 404 });
  if (
    tokenFile &&
    req.headers.get("authorization") !== `Bearer ${Deno.readTextFileSync(tokenFile).trim()}`
  ) {
    return new Response("token required\n", { status: 401 });
  }
  const collector = kind === "unhealthy"
    ? { component: "collector", state: "unhealthy", reason: "ring buffer lost" }
    : { component: "collector", state: "healthy", reason: name };
  return Response.json({
    status: collector.state,
    mode: kind === "fallback" ? "fallback" : "ebpf",
    fallbackReason: kind === "fallback" ? "BPF objects failed to load" : undefined,
    components: [collector],
  });
});
