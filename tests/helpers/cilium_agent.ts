/**
 * A stand-in for the Cilium agent's API: an HTTP server on a UNIX socket answering from
 * routes, by default the recorded responses of tests/testdata/cilium (reconstructed from
 * Cilium's API model, not captured from a live agent, which cannot run here).
 */
const DATA = new URL("../testdata/cilium/", import.meta.url);
export const recorded = (name: string) => Deno.readTextFileSync(new URL(name, DATA));
export const json = (body: string, status = 200) =>
  new Response(body, { status, headers: { "content-type": "application/json" } });

export type Route = (req: Request) => Response | Promise<Response>;

/** A stand-in for the agent: an HTTP server on a UNIX socket answering from `routes`. */
export class FakeAgent {
  readonly requests: string[] = [];
  readonly hosts: string[] = [];
  #stop = new AbortController();
  #server: Deno.HttpServer;
  /** Released on close, so that handlers made to hang let the server finish. */
  readonly release = Promise.withResolvers<void>();

  constructor(readonly socket: string, public routes: Record<string, Route>) {
    this.#server = Deno.serve(
      { path: socket, signal: this.#stop.signal, onListen() {} },
      (req) => {
        const path = new URL(req.url).pathname;
        this.requests.push(`${req.method} ${path}`);
        this.hosts.push(req.headers.get("host") ?? "");
        const route = this.routes[path];
        return route ? route(req) : new Response("404 page not found\n", { status: 404 });
      },
    );
  }

  /** Waits until close(), or 5 s at most, so that a client without a deadline fails, not hangs. */
  stall(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 5000);
      this.release.promise.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  count(path: string): number {
    return this.requests.filter((r) => r === `GET ${path}`).length;
  }

  async close() {
    this.release.resolve();
    this.#stop.abort();
    await this.#server.finished;
  }
}

export const GOOD: Record<string, Route> = {
  "/v1/endpoint": () => json(recorded("endpoints.json")),
  "/v1/healthz": () => json(recorded("healthz.json")),
};

/** A temp dir with a fake agent on <dir>/cilium.sock; both removed afterwards. */
export async function withAgent(
  fn: (agent: FakeAgent, dir: string) => Promise<void>,
  routes: Record<string, Route> = { ...GOOD },
) {
  const dir = Deno.makeTempDirSync({ prefix: "x0tta6bl4-cilium-" });
  const agent = new FakeAgent(`${dir}/cilium.sock`, routes);
  try {
    await fn(agent, dir);
  } finally {
    await agent.close();
    Deno.removeSync(dir, { recursive: true });
  }
}
