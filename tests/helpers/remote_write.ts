/**
 * For the remote-write tests: snapshots to render (one interface's counters and flows), a
 * request body decoded back to series and samples (with the bits of each value, so a stale
 * marker can be told from a NaN), pages and polling, and a real Prometheus with its remote-write receiver on a
 * loopback port, with its own storage directory, optionally inside a test namespace; disposing
 * it kills it and removes the directory.
 */
import { uncompress } from "snappyjs";
import { type RemoteWriteOptions, RemoteWriter } from "../../src/export/remote_write.ts";
import { WRITE_REQUEST } from "../../src/export/remote_write_wire.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import type { Snapshot } from "../../src/state/snapshot.ts";
import { flowOf, snapshotOf, tableOf } from "./snapshot.ts";

export const BUILD = { version: "0.1.0", commit: "0123abc", denoVersion: "2.9.6" };

/** A UDP flow received on eth0 to `dport`, of `bytes` bytes (100 per packet). */
export function flow(dport: number, bytes: number): FlowSnapshot {
  return flowOf({
    saddr: "10.0.0.1",
    daddr: "10.0.0.2",
    dport,
    packets: bytes / 100,
    bytes,
    firstSeenNs: 1,
    lastSeenNs: 2,
  });
}

/** A snapshot of eth0 with `rxPackets` UDP packets received (150 bytes each) and `flows`. */
export function snapshot(
  flows: FlowSnapshot[],
  o: { rxPackets?: number; takenAt?: number } = {},
): Snapshot {
  const packets = o.rxPackets ?? 10;
  return snapshotOf(flows, {
    takenAt: o.takenAt ?? 1_700_000_000_250,
    interfaces: [{
      ifindex: 2,
      name: "eth0",
      source: "ebpf",
      hooks: ["tcIngress"],
      traffic: [
        { direction: "rx", family: "ipv4", protocol: "udp", packets, bytes: packets * 150 },
      ],
      malformed: {},
      fragments: 0,
      vlanTagged: 0,
    }],
    flowTable: tableOf(flows.length),
  });
}

export interface DecodedSeries {
  labels: Record<string, string>;
  samples: { value: number; bits: bigint; timestamp: number }[];
}

interface Wire {
  timeseries?: {
    labels?: { name: string; value: string }[];
    samples?: { value: { low: number; high: number }; timestamp: number }[];
  }[];
}

/** A remote-write body (snappy, then WriteRequest) as series and samples; throws if invalid. */
export function decodeWriteRequest(body: Uint8Array): DecodedSeries[] {
  const req = WRITE_REQUEST.toObject(WRITE_REQUEST.decode(uncompress(body)), {
    longs: Object, // fixed64 values as { low, high }: their bits
    defaults: true,
  }) as Wire;
  return (req.timeseries ?? []).map((ts) => ({
    labels: Object.fromEntries((ts.labels ?? []).map((l) => [l.name, l.value])),
    samples: (ts.samples ?? []).map((s) => {
      const d = new DataView(new ArrayBuffer(8));
      d.setUint32(0, s.value.low >>> 0, true);
      d.setUint32(4, s.value.high >>> 0, true);
      return {
        value: d.getFloat64(0, true),
        bits: d.getBigUint64(0, true),
        timestamp: Number(s.timestamp),
      };
    }),
  }));
}

/** A page of `n` gauges `m{i="0"}`… with value `v`, as /metrics text. */
export function page(n: number, v = 1): string {
  return Array.from({ length: n }, (_, i) => `m{i="${i}"} ${v}`).join("\n") + "\n";
}

/** The value of the line of `name` whose labels include `labels`, in /metrics text. */
export function metric(
  text: string,
  name: string,
  labels: Record<string, string>,
): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return undefined;
}

/** Polls `fn` every 10 ms until it returns a value (not undefined or false), at most `ms`. */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it at once). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/**
 * A real Prometheus accepting remote-write at `/api/v1/write` on 127.0.0.1:`port`, storing in
 * `dir` (its own temporary directory unless given, to restart on the same storage). Inside
 * `ns`, queries go through curl in that namespace.
 */
export class Prometheus implements AsyncDisposable {
  readonly dir: string;
  readonly #ownsDir: boolean;
  #child?: Deno.ChildProcess;
  #drained?: Promise<void>;
  #log = "";

  constructor(readonly port: number, readonly o: { ns?: string; dir?: string } = {}) {
    this.#ownsDir = o.dir === undefined;
    this.dir = o.dir ?? Deno.makeTempDirSync({ prefix: "x0t-prom-rw-" });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/api/v1/write`;
  }

  get log(): string {
    return this.#log;
  }

  /** Starts it and waits (at most 30 s) until it is ready. */
  async start(): Promise<void> {
    Deno.writeTextFileSync(`${this.dir}/prometheus.yml`, "global:\n  scrape_interval: 1h\n");
    const prom = [
      "prometheus",
      `--config.file=${this.dir}/prometheus.yml`,
      `--storage.tsdb.path=${this.dir}/data`,
      `--web.listen-address=127.0.0.1:${this.port}`,
      "--web.enable-remote-write-receiver",
    ];
    const [cmd, ...args] = this.o.ns ? ["ip", "netns", "exec", this.o.ns, ...prom] : prom;
    this.#child = new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).spawn();
    // Keep draining its log so that it never blocks on a full pipe.
    this.#drained = (async () => {
      for await (const chunk of this.#child!.stderr.pipeThrough(new TextDecoderStream())) {
        this.#log = (this.#log + chunk).slice(-20_000);
      }
    })();
    const deadline = Date.now() + 30_000;
    while ((await this.#get("/-/ready")).status !== 200) {
      if (Date.now() > deadline) throw new Error(`Prometheus not ready in 30 s:\n${this.#log}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** A PromQL instant query (at `time`, seconds, or now); throws on an error answer. */
  async query(promql: string, time?: number): Promise<PromSample[]> {
    const t = time === undefined ? "" : `&time=${time}`;
    const r = await this.#get(`/api/v1/query?query=${encodeURIComponent(promql)}${t}`);
    const body = JSON.parse(r.body);
    if (body.status !== "success") throw new Error(`${promql}: ${r.body}`);
    return body.data.result;
  }

  /** The single value of an instant query, or undefined when it has none. */
  async value(promql: string, time?: number): Promise<number | undefined> {
    const r = await this.query(promql, time);
    if (r.length > 1) throw new Error(`${promql}: ${r.length} series`);
    return r.length ? Number(r[0].value[1]) : undefined;
  }

  async #get(path: string): Promise<{ status: number; body: string }> {
    const url = `http://127.0.0.1:${this.port}${path}`;
    if (!this.o.ns) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
        return { status: res.status, body: await res.text() };
      } catch {
        return { status: 0, body: "" };
      }
    }
    const out = await new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.o.ns,
        "curl",
        "-s",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
        url,
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const nl = text.lastIndexOf("\n");
    return { status: Number(text.slice(nl + 1)) || 0, body: text.slice(0, nl) };
  }

  /** SIGTERM, and waits for it to exit (its storage stays until disposed). */
  async stop(): Promise<void> {
    if (!this.#child) return;
    try {
      this.#child.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.#child.status;
    await this.#drained;
    this.#child = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    if (this.#ownsDir) Deno.removeSync(this.dir, { recursive: true });
  }
}

/** A remote writer to `url` with test timings (no interval, short back-off); `over` replaces any. */
export function testWriter(
  url: string,
  over: Partial<RemoteWriteOptions> = {},
  log: (level: string, msg: string) => void = () => {},
): RemoteWriter {
  return new RemoteWriter({
    url,
    intervalMs: 0,
    timeoutMs: 5000,
    queueMaxSamples: 200_000,
    externalLabels: [],
    headers: [],
    bearerTokenFile: "",
    basicAuthUser: "",
    basicAuthPasswordFile: "",
    minBackoffMs: 100,
    maxBackoffMs: 400,
    ...over,
  }, log);
}
