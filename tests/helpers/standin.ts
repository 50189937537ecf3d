/**
 * A stand-in for the compiled appliance in the upgrade tests (deno compile cannot fetch its
 * runtime here): serves /readyz on 127.0.0.1:PORT, answering 200 ("ready") or always 503
 * ("never", a release that does not come up). `deno run -A standin.ts PORT ready|never NAME`
 */
const [port, mode, name] = Deno.args;
Deno.serve(
  { hostname: "127.0.0.1", port: Number(port), onListen: () => {} },
  () =>
    mode === "ready"
      ? new Response(`ready: ${name}\n`)
      : new Response(`not ready: ${name}\n`, { status: 503 }),
);
