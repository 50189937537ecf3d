/**
 * The real IPFIX collectors from Debian for the tests: nfdump's nfcapd and pmacct's nfacctd,
 * each listening on one UDP address (on loopback, or inside a test namespace), writing into a
 * temporary directory of its own; read back per flow once every datagram is processed. Disposing
 * one stops it and removes its directory.
 */
import dgram from "node:dgram";
import { formatAddress, parseAddress } from "../../src/net/address.ts";

export interface Totals {
  packets: number;
  octets: number;
  records: number;
}

/** A UDP port nothing listens on right now (bound to port 0, then closed). */
export async function freeUdpPort(host = "127.0.0.1"): Promise<number> {
  const s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `ip netns exec NS` before a command, or nothing. */
function inNetns(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return netns ? ["ip", ["netns", "exec", netns, cmd, ...args]] : [cmd, args];
}

/**
 * Bytes waiting and datagrams dropped at the UDP socket bound to `port` (from /proc/net/udp
 * and udp6 of the namespace); undefined when no such socket exists.
 */
export function socketQueue(
  port: number,
  netns?: string,
): { queued: number; drops: number } | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    const [cmd, args] = inNetns(netns, "cat", [file]);
    const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).outputSync();
    for (const line of new TextDecoder().decode(out.stdout).split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13 || !f[1].endsWith(`:${hexPort}`)) continue;
      return { queued: parseInt(f[4].split(":")[1], 16), drops: Number(f[f.length - 1]) };
    }
  }
  return undefined;
}

function canonical(address: string): string {
  const a = parseAddress(address.trim());
  return formatAddress(a.bytes, a.family);
}

abstract class Collector implements AsyncDisposable {
  readonly dir = Deno.makeTempDirSync({ prefix: `x0t${Deno.pid}-collector-` });
  protected child?: Deno.ChildProcess;
  #output = "";

  constructor(readonly host: string, readonly port: number, readonly netns?: string) {}

  protected abstract command(): [string, string[]];
  /** Whether what it wrote says it listens. */
  protected abstract ready(): boolean;

  /** Its process id while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get output(): string {
    return this.#output;
  }

  async start(): Promise<void> {
    const [cmd, args] = inNetns(this.netns, ...this.command());
    this.child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
    const decoder = new TextDecoder();
    const drain = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) this.#output += decoder.decode(chunk);
    };
    drain(this.child.stdout);
    drain(this.child.stderr);
    const deadline = Date.now() + 10_000;
    while (!this.ready() || !socketQueue(this.port, this.netns)) {
      if (Date.now() > deadline) throw new Error(`${cmd} did not start:\n${this.#output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits until the socket's queue is empty; returns the datagrams the kernel dropped there. */
  async drained(ms = 10_000): Promise<number> {
    const deadline = Date.now() + ms;
    for (;;) {
      const q = socketQueue(this.port, this.netns);
      if (!q) throw new Error(`nothing listens on ${this.port}:\n${this.#output}`);
      if (q.queued === 0) return q.drops;
      if (Date.now() > deadline) throw new Error(`${q.queued} bytes still queued`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The signal that makes it write out what it holds and exit. */
  protected abstract readonly stopSignal: Deno.Signal;

  /** Stops it and waits for its exit; after 10 s, kills it and its children. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const children = new TextDecoder().decode(
      new Deno.Command("pgrep", { args: ["-P", String(child.pid)], stdout: "piped" }).outputSync()
        .stdout,
    ).split("\n").filter(Boolean).map(Number);
    try {
      child.kill(this.stopSignal);
    } catch { /* gone */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<false>((r) => timer = setTimeout(() => r(false), 10_000)),
    ]);
    clearTimeout(timer);
    if (exited) return;
    for (const pid of [child.pid, ...children]) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await child.status;
    throw new Error(`${this.constructor.name} did not stop on ${this.stopSignal}`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.stop();
    } finally {
      Deno.removeSync(this.dir, { recursive: true });
    }
  }
}

/** nfdump's collector (1.7 syntax): files in `dir`, read back with nfdump. */
export class Nfcapd extends Collector {
  protected readonly stopSignal = "SIGTERM";

  /** `socketBuffer`: its socket's receive buffer in bytes (nfcapd -B), for bursty exporters. */
  constructor(host: string, port: number, netns?: string, readonly socketBuffer?: number) {
    super(host, port, netns);
  }

  protected ready(): boolean {
    return /Startup nfcapd/.test(this.output);
  }

  protected command(): [string, string[]] {
    return [
      "nfcapd",
      ["-w", this.dir, "-b", this.host, "-p", String(this.port), "-t", "3600"]
        .concat(this.host.includes(":") ? ["-6"] : [])
        .concat(this.socketBuffer ? ["-B", String(this.socketBuffer)] : []),
    ];
  }

  /** Per flow (`saddr sport daddr dport proto`), summed over every record; after stop(). */
  flows(): Map<string, Totals> {
    const out = new Deno.Command("nfdump", {
      args: ["-R", this.dir, "-q", "-N", "-o", "fmt:%sa|%sp|%da|%dp|%pr|%pkt|%byt"],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (!out.success) throw new Error(`nfdump: ${new TextDecoder().decode(out.stderr)}`);
    const flows = new Map<string, Totals>();
    for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
      const f = line.split("|").map((x) => x.trim());
      if (f.length !== 7) continue;
      const key = `${canonical(f[0])} ${f[1]} ${canonical(f[2])} ${f[3]} ${f[4]}`;
      addRecord(flows, key, Number(f[5]), Number(f[6]));
    }
    return flows;
  }

  /** What nfdump -E says of the exporters: sequence failures and samplers. */
  exporters(): string {
    const files = [...Deno.readDirSync(this.dir)].filter((f) => f.name.startsWith("nfcapd."));
    return files.map((f) =>
      new TextDecoder().decode(
        new Deno.Command("nfdump", { args: ["-E", `${this.dir}/${f.name}`], stdout: "piped" })
          .outputSync().stdout,
      )
    ).join("\n");
  }
}

/** One record's packets and octets added to its flow's totals. */
function addRecord(flows: Map<string, Totals>, key: string, packets: number, octets: number) {
  const t = flows.get(key) ?? { packets: 0, octets: 0, records: 0 };
  t.packets += packets;
  t.octets += octets;
  t.records++;
  flows.set(key, t);
}

/** pmacct's collector: the print plugin appends its cache to a CSV file every second. */
export class Nfacctd extends Collector {
  /** pmacct's graceful end: the core passes it to the plugins, which purge their caches. */
  protected readonly stopSignal = "SIGINT";
  protected ready(): boolean {
    return /waiting for NetFlow\/IPFIX data/.test(this.log());
  }

  protected command(): [string, string[]] {
    const conf = `${this.dir}/nfacctd.conf`;
    Deno.writeTextFileSync(
      conf,
      [
        "daemonize: false",
        `nfacctd_ip: ${this.host}`,
        `nfacctd_port: ${this.port}`,
        // Counts scaled by the sampling the exporter announces: 1, so exact if it is read right.
        "nfacctd_renormalize: true",
        "plugins: print[flows]",
        "aggregate[flows]: src_host, dst_host, src_port, dst_port, proto",
        "print_output[flows]: csv",
        `print_output_file[flows]: ${this.dir}/flows.csv`,
        "print_output_file_append[flows]: true",
        "print_refresh_time[flows]: 1",
        `logfile: ${this.dir}/nfacctd.log`,
        "",
      ].join("\n"),
    );
    return ["nfacctd", ["-f", conf]];
  }

  /** Per flow (`saddr sport daddr dport proto`), summed over every purge; after stop(). */
  flows(): Map<string, Totals> {
    const flows = new Map<string, Totals>();
    let text = "";
    try {
      text = Deno.readTextFileSync(`${this.dir}/flows.csv`);
    } catch { /* nothing written */ }
    for (const line of text.split("\n")) {
      const f = line.split(",");
      if (f.length !== 7 || f[0] === "SRC_IP") continue;
      const proto = { tcp: 6, udp: 17, icmp: 1, "ipv6-icmp": 58 }[f[4]] ?? f[4];
      const key = `${canonical(f[0])} ${f[2]} ${canonical(f[1])} ${f[3]} ${proto}`;
      addRecord(flows, key, Number(f[5]), Number(f[6]));
    }
    return flows;
  }

  /** Its log file (it writes nothing to stdout). */
  log(): string {
    try {
      return Deno.readTextFileSync(`${this.dir}/nfacctd.log`);
    } catch {
      return "";
    }
  }
}
