/**
 * A real appliance for the tests: `main.ts serve` started inside a test namespace, with its
 * own state directory and bpffs pin directory, reached with curl inside that namespace (its
 * API listens on the namespace's loopback). Disposing it stops it and removes what it owns.
 *
 * `ip netns exec` gives its command a fresh /sys, so a bpffs under /sys/fs/bpf would be private
 * to one run: pins live in a bpffs the test mounts elsewhere (Bpffs) and removes afterwards.
 */
import { sh, type Side } from "./netns.ts";
import { V8_FLAGS } from "../../scripts/v8_flags.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
let seq = 0;

export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A bpffs mounted for one test, outside /sys; unmounted and removed on dispose. */
export class Bpffs implements Disposable {
  readonly path = `/run/x0t${Deno.pid}-bpf${seq++}`;

  constructor() {
    Deno.mkdirSync(this.path);
    sh("mount", ["-t", "bpf", "bpf", this.path]);
  }

  [Symbol.dispose](): void {
    try {
      sh("umount", [this.path]);
    } finally {
      Deno.removeSync(this.path);
    }
  }
}

/** Where a daemon keeps what must survive it; tests share one between daemons to restart. */
export class DaemonHome implements Disposable {
  readonly bpffs = new Bpffs();
  readonly stateDir = Deno.makeTempDirSync({ prefix: `x0t${Deno.pid}-state-` });
  readonly pinDir = `${this.bpffs.path}/x0tta6bl4`;

  [Symbol.dispose](): void {
    Deno.removeSync(this.stateDir, { recursive: true });
    this.bpffs[Symbol.dispose]();
  }
}

export class Daemon implements AsyncDisposable {
  readonly home: DaemonHome;
  readonly #ownsHome: boolean;
  #child?: Deno.ChildProcess;
  #log = "";
  base = "";

  constructor(
    readonly side: Side,
    readonly extraArgs: string[] = [],
    readonly wrap: string[] = [],
    home?: DaemonHome,
  ) {
    this.#ownsHome = home === undefined;
    this.home = home ?? new DaemonHome();
  }

  get stateDir(): string {
    return this.home.stateDir;
  }

  get pinDir(): string {
    return this.home.pinDir;
  }

  /** Starts the daemon and waits until it listens; `readyz` then tells when it collects. */
  async start(): Promise<void> {
    const cmd = [
      Deno.execPath(),
      "run",
      "-A",
      V8_FLAGS, // as scripts/run starts it
      MAIN,
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--state-dir",
      this.stateDir,
      "--datapath.bpffs-dir",
      this.pinDir,
      "--collect.interval-ms",
      "200",
      ...this.extraArgs,
    ];
    const args = [
      "netns",
      "exec",
      this.side.ns,
      ...this.wrap,
      ...(this.wrap.length ? [cmd.map((a) => `'${a}'`).join(" ")] : cmd),
    ];
    this.#child = new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).spawn();
    const reader = this.#child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const deadline = Date.now() + 20_000;
    while (!this.base) {
      if (Date.now() > deadline) throw new Error(`daemon did not listen in time:\n${this.#log}`);
      const { value, done } = await reader.read();
      if (done) throw new Error(`daemon exited before listening:\n${this.#log}`);
      this.#log += value;
      const m = this.#log.match(/listening on (http:\/\/[^\s]+)/);
      if (m) this.base = m[1];
    }
    // Keep draining stderr so the daemon never blocks on a full pipe.
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.#log += value;
      }
    })();
  }

  get log(): string {
    return this.#log;
  }

  get pid(): number {
    return this.#child!.pid;
  }

  /** One HTTP request with curl inside the daemon's namespace. */
  request(
    path: string,
    o: { method?: string; body?: string; token?: string; header?: string[] } = {},
  ): HttpReply {
    const args = ["-s", "-i", "--max-time", "10", "-X", o.method ?? "GET"];
    if (o.token !== undefined) args.push("-H", `Authorization: Bearer ${o.token}`);
    for (const h of o.header ?? []) args.push("-H", h);
    if (o.body !== undefined) {
      args.push("-H", "content-type: application/json", "--data-binary", o.body);
    }
    const raw = sh("curl", [...args, `${this.base}${path}`], this.side.ns);
    const split = raw.indexOf("\r\n\r\n");
    const head = raw.slice(0, split).split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(":");
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    return { status: Number(head[0].split(" ")[1]), headers, body: raw.slice(split + 4) };
  }

  /** The raw event stream for `seconds`, with these request headers (curl in the namespace). */
  events(headers: string[], seconds: number): string {
    const out = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.side.ns,
        "curl",
        "-s",
        "-N",
        "--max-time",
        String(seconds),
        ...headers.flatMap((h) => ["-H", h]),
        `${this.base}/api/v1/events`,
      ],
      stdout: "piped",
    }).outputSync();
    return new TextDecoder().decode(out.stdout);
  }

  json(path: string): unknown {
    const r = this.request(path);
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }

  /** Polls until `fn` returns a value (not undefined) or the time runs out. */
  async until<T>(what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${this.#log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Runs `x0tta6bl4 ARGS… --listen <this daemon> --state-dir <its state>` inside its namespace,
   * as an operator would on the box; stdout and stderr apart.
   */
  cli(args: string[]): { code: number; stdout: string; stderr: string } {
    const o = new Deno.Command("ip", {
      args: ["netns", "exec", this.side.ns, Deno.execPath(), "run", "-A", MAIN, ...args]
        .concat(["--listen", this.base.replace("http://", ""), "--state-dir", this.stateDir]),
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const text = new TextDecoder();
    return { code: o.code, stdout: text.decode(o.stdout), stderr: text.decode(o.stderr) };
  }

  get token(): string {
    return Deno.readTextFileSync(`${this.stateDir}/api-token`).trim();
  }

  /** SIGTERM (or `signal`), then waits for the exit status. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus | undefined> {
    if (!this.#child) return undefined;
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
    const status = await this.#child.status;
    this.#child = undefined;
    return status;
  }

  /** Stops the daemon if running, then removes its pins and state, unless they are shared. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    if (this.#ownsHome) this.home[Symbol.dispose]();
  }
}

/**
 * Arguments of a daemon watching `dev` with MAPE-K in enforce mode, a flood floor of 2000
 * packets/s (test floods send 20000) and source floods blocked for `ttlS` seconds.
 */
export function enforceArgs(dev: string, ttlS: number, extra: string[] = []): string[] {
  return [
    "--interface",
    dev,
    "--mapek.mode",
    "enforce",
    "--mapek.flood-pps",
    "2000",
    "--mapek.action-ttl-s",
    String(ttlS),
    "--mapek.policy.source-flood",
    "block",
    ...extra,
  ];
}

export { sh };

/** A real Prometheus inside a test namespace, on a loopback port, with its own files. */
export class Prometheus implements AsyncDisposable {
  readonly dir = Deno.makeTempDirSync({ prefix: "x0t-prom-" });
  readonly #child: Deno.ChildProcess;

  /** `config` gets the directory Prometheus keeps its files in, and returns prometheus.yml. */
  constructor(readonly ns: string, readonly port: number, config: (dir: string) => string) {
    Deno.writeTextFileSync(`${this.dir}/prometheus.yml`, config(this.dir));
    this.#child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        "prometheus",
        `--config.file=${this.dir}/prometheus.yml`,
        `--storage.tsdb.path=${this.dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  /** The result of an instant query, or undefined while Prometheus cannot answer yet. */
  query(q: string): { metric: Record<string, string>; value: [number, string] }[] | undefined {
    try {
      const url = `http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(q)}`;
      return JSON.parse(sh("curl", ["-s", url], this.ns)).data?.result;
    } catch {
      return undefined;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#child.kill("SIGTERM");
    await this.#child.status;
    Deno.removeSync(this.dir, { recursive: true });
  }
}
