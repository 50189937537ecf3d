/**
 * `deno task bench ipfix`: IPFIX export by the appliance against softflowd, on the same traffic
 * in the same run. A sender in one test namespace writes known frames (bench/ipfix_traffic.ts:
 * 10 000 flows, IPv4 and IPv6, UDP and TCP, 100 packets each, in turn or 10 of a flow in a row)
 * into a veth pair; the other namespace forwards them into a third one, which drops them at once
 * (nothing comes back, nothing is dropped on the monitored side). On the monitored veth runs, in
 * turn, nothing (the baseline), the appliance exporting IPFIX (with flows in turn also without
 * export, to tell the export's cost from the monitoring's), or softflowd exporting IPFIX
 * (`-v 10`), each with a 5 s active timeout, each to its own nfcapd on that namespace's loopback
 * (also started for the baseline). CPU over the traffic and 6 s after it, per million packets
 * above the baseline: of the bench's own processes (the sender with the softirq work done in its
 * system calls, the monitor, nfcapd, ksoftirqd), and of the whole system from /proc/stat (user,
 * nice, system, irq, softirq, all CPUs), which other work on a shared machine also moves. Then
 * the monitor stops (exporting what it still holds) and nfdump's records are compared per flow
 * with what the sender sent. Rounds are interleaved (baseline, ours, softflowd, …) and the median
 * taken, so that each sees the same machine.
 */
import { formatAddress, parseAddress } from "../src/net/address.ts";
import { Daemon } from "../tests/helpers/daemon.ts";
import { nft, sh, VethPair } from "../tests/helpers/netns.ts";
import { freeUdpPort, Nfcapd, type Totals } from "../tests/export/collectors.ts";
import { benchFlow, DPORT } from "./ipfix_traffic.ts";
import { bpfStats, median } from "./stats.ts";

const TRAFFIC = new URL("./ipfix_traffic.ts", import.meta.url).pathname;
const FLOWS = 10_000;
const ACTIVE_TIMEOUT_S = 5;
const TAIL_MS = 6_000, IDLE_MS = 2_000;
/**
 * The traffic's variants: the rate asked of the sender, and packets of a flow sent back to back
 * (1: each packet is of another flow than the one before, the datapath's worst case).
 */
const VARIANTS = [[100_000, 1], [100_000, 10]];
/** Packets of each flow: 1 000 000 in all. */
const PACKETS_PER_FLOW = 100;
const ROUNDS = 3;
const DST4 = "10.202.55.1", DST6 = "fd00:202:55::1", SINK_MAC = "02:00:00:00:00:56";
/** "x0tta6bl4, no export": the appliance without IPFIX, to tell the export's cost from its own. */
type Monitor = "baseline" | "x0tta6bl4" | "x0tta6bl4, no export" | "softflowd";

const range = (xs: number[], digits: number) =>
  `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${
    Math.max(...xs).toFixed(digits)
  })`;

/** Busy CPU-seconds of the whole system so far: user+nice+system+irq+softirq of all CPUs. */
function busySeconds(): number {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).map(Number);
  const [user, nice, system, , , irq, softirq] = f.slice(1);
  return (user + nice + system + irq + softirq) / 100; // USER_HZ
}

/**
 * Seconds the threads of `pid` have run on a CPU (schedstat). Without IRQ time accounting (this
 * kernel), that includes the softirq work done while they ran: the receive path of frames a
 * sender writes into a veth runs in the sender's own system call.
 */
function ranSeconds(pid: number): number {
  let ns = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0]);
    } catch { /* the thread ended */ }
  }
  return ns / 1e9;
}

/** The kernel threads that take over softirq work when it piles up. */
const ksoftirqd = () => sh("pgrep", ["-x", "ksoftirqd/[0-9]+"]).trim().split("\n").map(Number);

/** The run time of each of the appliance's BPF programs so far, from its /metrics. */
function bpfSeconds(d: Daemon): Map<string, number> {
  const body = d.request("/metrics").body;
  return new Map(
    [...body.matchAll(/^x0tta6bl4_bpf_program_run_seconds_total\{program="([^"]+)"\} (\S+)$/gm)]
      .map((m) => [m[1], Number(m[2])]),
  );
}

const canonical = (a: string) => {
  const p = parseAddress(a);
  return formatAddress(p.bytes, p.family);
};

interface Run {
  /**
   * Busy CPU-seconds a second before the traffic, with the monitor running: whole system, and
   * the monitor's process alone.
   */
  idle: number;
  monitorIdle: number;
  /** The appliance's BPF programs' run time over the window (kernel.bpf_stats_enabled). */
  bpf: Map<string, number>;
  /** Busy CPU-seconds over the traffic and the tail after it; seconds the sender took. */
  busy: number;
  seconds: number;
  /** CPU-seconds of the monitor's own process over the same window. */
  process: number;
  /**
   * CPU-seconds of what the bench runs, over the same window: the sender while it sends (with
   * the softirq work done in its system calls), the monitor, nfcapd, and ksoftirqd.
   */
  attributed: number;
  packets: number;
  /** Flows whose records add up to exactly the packets sent, and to their bytes as well. */
  exactPackets: number;
  exactBytes: number;
  /** What the monitor said of itself (softflowd: its own statistics). */
  note: string;
}

/** softflowd in `ns`, exporting IPFIX to 127.0.0.1:`port` (stopped by SIGTERM). */
class Softflowd implements AsyncDisposable {
  readonly dir = Deno.makeTempDirSync({ prefix: `x0t${Deno.pid}-softflowd-` });
  readonly child: Deno.ChildProcess;

  constructor(readonly ns: string, dev: string, port: number) {
    this.child = new Deno.Command("ip", {
      args: [
        ...["netns", "exec", ns, "softflowd", "-d", "-i", dev, "-v", "10", "-A", "milli"],
        ...["-n", `127.0.0.1:${port}`, "-m", "65536", "-p", `${this.dir}/pid`],
        ...["-c", `${this.dir}/ctl`],
        ...["maxlife", "general", "tcp", "udp", "expint"].flatMap((t) => [
          "-t",
          `${t}=${t === "maxlife" ? ACTIVE_TIMEOUT_S : t === "expint" ? 1 : 15}`,
        ]),
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  async ready(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      try {
        Deno.statSync(`${this.dir}/ctl`);
        return;
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("softflowd did not start");
  }

  statistics(): string {
    return sh("softflowctl", ["-c", `${this.dir}/ctl`, "statistics"], this.ns);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* gone */ }
    await this.child.status;
    Deno.removeSync(this.dir, { recursive: true });
  }
}

async function oneRun(v: VethPair, monitor: Monitor, pps: number, burst: number): Promise<Run> {
  const rounds = PACKETS_PER_FLOW;
  const addrs = { src4: v.a.ip4, src6: v.a.ip6, dst4: DST4, dst6: DST6 };
  const port = await freeUdpPort();
  // A 4 MiB socket buffer (net.core.rmem_max here): softflowd sends each expiry's records at
  // once, which nfcapd's default buffer drops most of.
  await using nfcapd = new Nfcapd("127.0.0.1", port, v.b.ns, 4 << 20);
  await nfcapd.start();
  let note = "";
  let busy: number, idle: number, seconds: number, process = 0, attributed: number;
  let monitorIdle = 0;
  const bpf = new Map<string, number>();
  {
    await using d = monitor.startsWith("x0tta6bl4")
      ? new Daemon(v.b, [
        ...["--interface", v.b.dev, "--collect.interval-ms", "1000"],
        ...(monitor === "x0tta6bl4"
          ? [
            ...["--export.ipfix.collectors", `127.0.0.1:${port}`],
            ...["--export.ipfix.active-timeout-s", String(ACTIVE_TIMEOUT_S)],
          ]
          : []),
      ])
      : undefined;
    await using sf = monitor === "softflowd" ? new Softflowd(v.b.ns, v.b.dev, port) : undefined;
    if (d) {
      await d.start();
      await d.until("ready", () => d.request("/readyz").status === 200 || undefined, 20_000);
    }
    await sf?.ready();
    await new Promise((r) => setTimeout(r, 1000));
    const pid = d?.pid ?? sf?.child.pid;
    const quiet = busySeconds(), quietRan = pid ? ranSeconds(pid) : 0;
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const before = busySeconds();
    if (pid) monitorIdle = (ranSeconds(pid) - quietRan) / (IDLE_MS / 1000);
    const others = [...ksoftirqd(), nfcapd.pid!, ...pid ? [pid] : []];
    const ran = others.map(ranSeconds);
    const bpfBefore = d ? bpfSeconds(d) : undefined;
    idle = (before - quiet) / (IDLE_MS / 1000);
    const out = await new Deno.Command("ip", {
      args: ["netns", "exec", v.a.ns, Deno.execPath(), "run", "-A", TRAFFIC, v.a.dev]
        .concat([FLOWS, rounds / burst, burst, pps].map(String))
        .concat([addrs.src4, addrs.src6, addrs.dst4, addrs.dst6]),
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    const [sent, took, sender] = new TextDecoder().decode(out.stdout).trim().split(" ")
      .map(Number);
    seconds = took;
    if (sent !== FLOWS * rounds) throw new Error(`sent ${sent} frames, not ${FLOWS * rounds}`);
    await new Promise((r) => setTimeout(r, TAIL_MS));
    busy = busySeconds() - before;
    if (d) {
      for (const [p, t] of bpfSeconds(d)) bpf.set(p, t - (bpfBefore?.get(p) ?? 0));
    }
    const after = others.map(ranSeconds);
    if (pid) process = after[after.length - 1] - ran[ran.length - 1];
    attributed = sender + after.reduce((n, x, i) => n + x - ran[i], 0);
    if (sf) {
      const stat = sf.statistics();
      const n = (what: string) => stat.match(new RegExp(`${what}: (\\d+)`))?.[1];
      note = `libpcap received ${n("Packets received by libpcap")}, dropped ${
        n("Packets dropped by libpcap")
      }`;
    }
    if (d) {
      const status = await d.stop();
      if (status?.code !== 0) throw new Error(`the appliance exited with ${status?.code}`);
    }
  }
  const dropped = await nfcapd.drained();
  if (dropped) note += ` nfcapd's socket dropped ${dropped} datagrams`;
  await nfcapd.stop();
  const got = nfcapd.flows();
  let packets = 0, exactPackets = 0, exactBytes = 0;
  for (const t of got.values()) packets += t.packets;
  for (let i = 0; i < FLOWS; i++) {
    const f = benchFlow(i, addrs);
    const [src, dst] = f.v6 ? [addrs.src6, addrs.dst6] : [addrs.src4, addrs.dst4];
    const t: Totals | undefined = got.get(
      `${canonical(src)} ${f.sport} ${canonical(dst)} ${DPORT} ${f.proto}`,
    );
    if (t?.packets !== rounds) continue;
    exactPackets++;
    // The appliance counts whole frames; softflowd counts IP packets.
    if (t.octets === rounds * (monitor === "softflowd" ? f.ipBytes : f.frameBytes)) exactBytes++;
  }
  return {
    idle,
    monitorIdle,
    bpf,
    busy,
    seconds,
    process,
    attributed,
    packets,
    exactPackets,
    exactBytes,
    note,
  };
}

export async function ipfix(): Promise<void> {
  using v = new VethPair(55);
  // veth-b's namespace forwards the traffic through another veth into a third namespace, which
  // drops it at once (nftables' ingress hook there): nothing comes back, nothing is dropped on
  // the monitored side.
  using sink = new VethPair(56);
  sh("ip", [
    ...["link", "add", "x0fwd", "netns", v.b.ns, "type", "veth", "peer", "name", "x0sink"],
    ...["netns", sink.a.ns, "address", SINK_MAC],
  ]);
  sh("ip", ["link", "set", "x0sink", "up"], sink.a.ns);
  await nft(
    sink.a.ns,
    'table netdev x0sink {\n chain in {\n  type filter hook ingress device "x0sink" priority 0;' +
      " policy drop;\n }\n}\n",
  );
  for (const s of ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]) {
    v.run(v.b, "sysctl", ["-qw", s]);
  }
  v.run(v.b, "ip", ["link", "set", "x0fwd", "up"]);
  for (const [net, dst] of [["10.202.55.0/24", DST4], ["fd00:202:55::/64", DST6]]) {
    v.run(v.b, "ip", ["route", "add", net, "dev", "x0fwd"]);
    v.run(
      v.b,
      "ip",
      ["neigh", "replace", dst, "lladdr", SINK_MAC, "dev", "x0fwd", "nud"]
        .concat(["permanent"]),
    );
  }
  console.log(
    "| traffic: rate (sender's, median) | monitor | CPU-s of the bench's processes | of which the monitor " +
      "(idle, per s) | of which its BPF programs | per 1M packets above baseline | whole system: busy CPU-s (idle, per s) | " +
      "per 1M packets above baseline | packets reported (of sent) | " +
      "flows exact in packets, and in bytes too (of 10 000) | notes |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  using _stats = bpfStats();
  await rates(v);
}

/** The BPF programs' time: all of them, then each that ran for 10 ms or more (medians). */
function bpfCell(rs: Run[]): string {
  const total = range(rs.map((r) => [...r.bpf.values()].reduce((n, x) => n + x, 0)), 2);
  const each = [...rs[0].bpf.keys()]
    .map((p) => [p, median(rs.map((r) => r.bpf.get(p) ?? 0))] as const)
    .filter(([, t]) => t >= 0.01)
    .map(([p, t]) => `${p} ${t.toFixed(2)}`);
  return `${total}: ${each.join(", ")}`;
}

/** Each rate's runs, interleaved, and its rows of the table. */
async function rates(v: VethPair): Promise<void> {
  for (const [pps, burst] of VARIANTS) {
    const runs = new Map<Monitor, Run[]>();
    // The appliance without export on the worst-case order only (the bench stays under 8 min).
    const monitors: Monitor[] = burst === 1
      ? ["baseline", "x0tta6bl4", "x0tta6bl4, no export", "softflowd"]
      : ["baseline", "x0tta6bl4", "softflowd"];
    for (let round = 0; round < ROUNDS; round++) {
      for (const m of monitors) {
        runs.set(m, [...runs.get(m) ?? [], await oneRun(v, m, pps, burst)]);
      }
    }
    const sent = FLOWS * PACKETS_PER_FLOW;
    const base = runs.get("baseline")!;
    const above = (rs: Run[], f: (r: Run) => number) =>
      ((median(rs.map(f)) - median(base.map(f))) / (sent / 1e6)).toFixed(2);
    for (const [m, rs] of runs) {
      const ours = m !== "baseline", exports = ours && m !== "x0tta6bl4, no export";
      console.log(
        `| ${(sent / median(rs.map((r) => r.seconds)) / 1000).toFixed(0)} kpps (${
          pps / 1000
        } asked), ${burst === 1 ? "flows in turn" : `${burst} packets a flow in a row`} | ${m} | ${
          range(rs.map((r) => r.attributed), 2)
        } | ${
          ours
            ? `${range(rs.map((r) => r.process), 2)} (${
              median(rs.map((r) => r.monitorIdle)).toFixed(3)
            })`
            : "–"
        } | ${m.startsWith("x0tta6bl4") ? bpfCell(rs) : "–"} | ${
          ours ? above(rs, (r) => r.attributed) : "–"
        } | ${range(rs.map((r) => r.busy), 2)} (${range(rs.map((r) => r.idle), 2)}) | ${
          ours ? above(rs, (r) => r.busy) : "–"
        } | ${exports ? `${rs.map((r) => r.packets).join(", ")} (${sent})` : "–"} | ${
          exports ? rs.map((r) => `${r.exactPackets}, ${r.exactBytes}`).join("; ") : "–"
        } | ${rs.map((r) => r.note).filter(Boolean).join(" / ")} |`,
      );
    }
  }
}
