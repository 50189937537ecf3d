/**
 * Benchmarks of the datapath, each a ratio against a baseline measured in the same run:
 *   cost     in-kernel cost per packet (BPF_PROG_TEST_RUN, repeat 1e6) vs empty programs
 *   live     iperf3 TCP and small-packet UDP across a veth pair, attached vs not
 *   read     reading the whole flow table at 10k/100k/1M entries vs `bpftool map dump`
 *   ringbuf  events consumed per second (decoded) while the kernel produces them at set rates
 *   scrape   /metrics of the running appliance at 10k and 100k flows vs node_exporter, and RSS
 *   startup  from starting `serve` to /readyz = 200 with the programs attached
 *   mesh     dead-peer detection over 20 kills, false deaths at 10% loss, probe bytes and CPU
 *            per node at 4 and 16 nodes
 *   signals  cost per event of the drop/retransmit/RTT programs, iperf3 TCP with them on vs off
 *   mapek    one MAPE-K step (monitor + analyze + plan) at 10k and 100k flows vs rendering
 *            /metrics of the same snapshot
 *   enforce  in-kernel cost of the MAPE-K enforcement check vs the flow program built without
 *            it, and time from a UDP flood's start to its block (enforce mode, 5 runs)
 *   footprint  the appliance's RSS and CPU idle and after 100 000 real UDP flows (each a kernel
 *            drop, together a port scan), with the defaults and with parts switched off, vs
 *            node_exporter in the same namespace
 *   ipfix    IPFIX export vs softflowd on the same traffic: CPU per million packets, exact counts
 * Usage: deno task bench [cost|live|read…]. Results go to stdout as Markdown rows; the
 * numbers in docs/BENCHMARKS.md come from here.
 */
import baselineObject from "../bpf/build/baseline.bpf.o" with { type: "bytes" };
import producerObject from "../bpf/build/bench/producer.bpf.o" with { type: "bytes" };
import noEnforceObject from "../bpf/build/bench/flow_noenforce.bpf.o" with { type: "bytes" };
import { trafficCommand } from "../tests/helpers/netns.ts";
import { monotonicNs } from "../src/datapath/enforce.ts";
import { readFlowTable } from "../src/collect/decode.ts";
import { AllowList } from "../src/mapek/allow.ts";
import { Knowledge } from "../src/mapek/knowledge.ts";
import { MapekLoop } from "../src/mapek/loop.ts";
import { defaultConfig } from "../src/config/schema.ts";
import { MetricsRenderer } from "../src/metrics/exposition.ts";
import { StateStore } from "../src/state/store.ts";
import type { Snapshot } from "../src/state/snapshot.ts";
import { decodeEvent } from "../src/flows/key.ts";
import { RingBuffer } from "../src/datapath/ringbuf.ts";
import { readFlows } from "../src/collect/decode.ts";
import { FlowDatapath } from "../src/datapath/flow.ts";
import { ifindexOf } from "../src/datapath/netdev.ts";
import { withNetns } from "../src/datapath/netns.ts";
import { Collection, type Program } from "../src/datapath/object.ts";
import { SignalsProbe } from "../src/datapath/signals.ts";
import { TcAttachment, XdpAttachment } from "../src/datapath/attach.ts";
import { FLOW_KEY } from "../ffi/layout.ts";
import { sh, VethPair } from "../tests/helpers/netns.ts";
import { Daemon, DaemonHome, enforceArgs } from "../tests/helpers/daemon.ts";
import { Lab, labPeers, waitFor } from "../scripts/lab.ts";
import { ipfix } from "./ipfix.ts";
import { bpfStats, median } from "./stats.ts";

const sections = Deno.args.length ? Deno.args : [
  "cost",
  "live",
  "read",
  "ringbuf",
  "scrape",
  "startup",
  "mesh",
  "signals",
  "mapek",
  "enforce",
  "footprint",
  "ipfix",
];

function udpFrame(len: number): Uint8Array<ArrayBuffer> {
  const f = new Uint8Array(len);
  const v = new DataView(f.buffer);
  v.setUint16(12, 0x0800);
  f[14] = 0x45;
  v.setUint16(16, len - 14);
  f[22] = 64;
  f[23] = 17;
  f.set([10, 0, 0, 1], 26);
  f.set([10, 0, 0, 2], 30);
  v.setUint16(34, 1234);
  v.setUint16(36, 53);
  v.setUint16(38, len - 34);
  return f;
}

function cost() {
  using base = Collection.load(baselineObject as Uint8Array<ArrayBuffer>, { name: "x0_baseline" });
  using dp = new FlowDatapath();
  dp.track(1); // test-run runs as if on the loopback
  const pairs: [string, Program, Program][] = [
    ["XDP", dp.xdp, base.program("x0_xdp_pass")],
    ["TC ingress", dp.tcIngress, base.program("x0_tc_pass")],
    ["TC egress", dp.tcEgress, base.program("x0_tc_pass")],
  ];
  console.log("| program | frame | empty program ns | ours ns | ratio |\n|---|---|---|---|---|");
  for (const [label, ours, empty] of pairs) {
    for (const len of [64, 1500]) {
      const f = udpFrame(len);
      ours.testRun(f, 10000);
      empty.testRun(f, 10000);
      const a: number[] = [], b: number[] = [];
      for (let i = 0; i < 9; i++) { // interleaved, so both see the same machine
        a.push(empty.testRun(f, 1_000_000).durationNs);
        b.push(ours.testRun(f, 1_000_000).durationNs);
      }
      const [e, o] = [median(a), median(b)];
      console.log(`| ${label} | ${len} B | ${e} | ${o} | ${(o / e).toFixed(2)} |`);
    }
  }
  // What kernel.bpf_stats_enabled itself adds to every run (two clock reads and the counters'
  // update around the program): the same test-runs with it off and on, interleaved.
  const stats = sh("sysctl", ["-n", "kernel.bpf_stats_enabled"]).trim();
  const f = udpFrame(64);
  console.log(
    "\n| program (64 B) | bpf_stats off ns | bpf_stats on ns | added by bpf_stats |\n|---|---|---|---|",
  );
  try {
    for (
      const [label, prog] of [["empty TC", pairs[1][2]], [
        "ours, TC ingress",
        dp.tcIngress,
      ]] as const
    ) {
      const off: number[] = [], on: number[] = [];
      for (let i = 0; i < 9; i++) {
        sh("sysctl", ["-qw", "kernel.bpf_stats_enabled=0"]);
        off.push(prog.testRun(f, 1_000_000).durationNs);
        sh("sysctl", ["-qw", "kernel.bpf_stats_enabled=1"]);
        on.push(prog.testRun(f, 1_000_000).durationNs);
      }
      const [a, b] = [median(off), median(on)];
      console.log(`| ${label} | ${a} | ${b} | ${b - a} |`);
    }
  } finally {
    sh("sysctl", ["-qw", `kernel.bpf_stats_enabled=${stats}`]);
  }
}

async function iperf(v: VethPair, args: string[]): Promise<{ bps: number; pps: number }> {
  const server = new Deno.Command("ip", {
    args: ["netns", "exec", v.b.ns, "iperf3", "-s", "-1", "-B", v.b.ip4],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 300));
  try {
    const out = JSON.parse(v.run(v.a, "iperf3", ["-c", v.b.ip4, "-J", "-t", "3", ...args]));
    const end = out.end;
    const sum = end.sum_received ?? end.sum;
    const packets = end.sum?.packets ?? 0;
    return { bps: sum.bits_per_second, pps: packets / (sum.seconds || 3) };
  } finally {
    await server.status;
  }
}

async function live() {
  using v = new VethPair(50);
  const bIdx = withNetns(v.b.ns, () => ifindexOf(v.b.dev));
  using base = Collection.load(baselineObject as Uint8Array<ArrayBuffer>, { name: "x0_baseline" });
  using _stats = bpfStats();
  {
    console.log(
      "| traffic | baseline | with ours | ratio | ns per packet (bpf_stats) | " +
        "empty TC program ns per packet (bpf_stats) |",
    );
    console.log("|---|---|---|---|---|---|");
    for (
      const [label, args, unit] of [
        ["iperf3 TCP", [], "bps"],
        ["iperf3 UDP 64 B", ["-u", "-l", "64", "-b", "0"], "pps"],
      ] as const
    ) {
      for (const hook of ["tc", "xdp"] as const) {
        const samples: { base: number; ours: number }[] = [];
        const emptyNs: number[] = [];
        let nsPerPacket = 0;
        for (let round = 0; round < 3; round++) {
          // Baseline: nothing attached for TC; an empty XDP program for XDP (XDP alone changes
          // veth's GRO behaviour, so that is the fair floor).
          let baseRun: number;
          if (hook === "xdp") {
            const x = withNetns(
              v.b.ns,
              () => XdpAttachment.attach(base.program("x0_xdp_pass"), bIdx, "native"),
            );
            try {
              baseRun = (await iperf(v, [...args]))[unit];
            } finally {
              x.close();
            }
          } else {
            baseRun = (await iperf(v, [...args]))[unit];
            // The floor of the live figure: an empty TC program on the same traffic, whose
            // bpf_stats time is the clock reads, the counters and a cold skb, nothing else.
            const empty = base.program("x0_tc_pass");
            const before = empty.info();
            const t = withNetns(v.b.ns, () => TcAttachment.attach(empty, bIdx, "ingress"));
            try {
              await iperf(v, [...args]);
            } finally {
              t.close();
            }
            const after = empty.info();
            emptyNs.push(
              (after.runTimeNs - before.runTimeNs) / Math.max(1, after.runCount - before.runCount),
            );
          }
          const dp = new FlowDatapath();
          try {
            // The box under test is veth-b: ingress by `hook`, egress by TC.
            withNetns(v.b.ns, () => dp.attach(bIdx, hook, "native"));
            const ours = (await iperf(v, [...args]))[unit];
            const prog = hook === "xdp" ? dp.xdp : dp.tcIngress;
            const info = prog.info();
            nsPerPacket = info.runCount ? info.runTimeNs / info.runCount : 0;
            samples.push({ base: baseRun, ours });
          } finally {
            dp.close();
          }
        }
        const b = median(samples.map((s) => s.base)), o = median(samples.map((s) => s.ours));
        const fmt = (x: number) =>
          unit === "bps" ? `${(x / 1e9).toFixed(2)} Gbit/s` : `${(x / 1e3).toFixed(0)} kpps`;
        console.log(
          `| ${label}, ${hook === "xdp" ? "XDP vs empty XDP" : "TC vs nothing"} | ${fmt(b)} | ${
            fmt(o)
          } | ${(o / b).toFixed(2)} | ${nsPerPacket.toFixed(0)} | ${
            emptyNs.length ? median(emptyNs).toFixed(0) : "–"
          } |`,
        );
      }
    }
  }
}

/** Puts `n` distinct UDP/IPv4 flows (source addresses 0.0.0.0 upwards) into the flow table. */
function fillFlows(dp: FlowDatapath, n: number) {
  const key = new Uint8Array(FLOW_KEY.size);
  const kv = new DataView(key.buffer);
  const value = new Uint8Array(dp.flows.valueBytes);
  const vv = new DataView(value.buffer);
  vv.setBigUint64(0, 1n, true);
  key[FLOW_KEY.members.family[0]] = 4;
  key[FLOW_KEY.members.proto[0]] = 17;
  for (let i = 0; i < n; i++) {
    kv.setUint32(0, i, false);
    vv.setBigUint64(8, BigInt(64 + i), true); // distinct byte counts
    dp.flows.update(key, value);
  }
}

function read() {
  console.log(
    "| entries | ours (batch read + decode) | bpftool map dump | ratio |\n|---|---|---|---|",
  );
  for (const n of [10_000, 100_000, 1_000_000]) {
    using dp = new FlowDatapath({ flowTableSize: n + n / 4 });
    fillFlows(dp, n);
    const ours: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const flows = readFlows(dp);
      ours.push(performance.now() - t);
      if (flows.length !== n) throw new Error(`read ${flows.length} flows, expected ${n}`);
    }
    const id = String(dp.flows.id());
    const theirs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const out = new Deno.Command("bpftool", { args: ["map", "dump", "id", id], stdout: "null" })
        .outputSync();
      theirs.push(performance.now() - t);
      if (!out.success) throw new Error("bpftool map dump failed");
    }
    const [o, b] = [median(ours), median(theirs)];
    console.log(`| ${n} | ${o.toFixed(0)} ms | ${b.toFixed(0)} ms | ${(o / b).toFixed(3)} |`);
  }
}

/** The producer object and the appliance's consumer on its ring, decoding every record. */
function openProducer(batch: number) {
  const c = Collection.load(producerObject as Uint8Array<ArrayBuffer>, {
    name: "x0_producer",
    rodata: { x0_batch: batch },
  });
  const p = {
    c,
    consumed: 0,
    ring: new RingBuffer(c.map("x0_bench_events"), (rec) => {
      decodeEvent(rec);
      p.consumed++;
    }),
    [Symbol.dispose]() {
      p.ring.close();
      c.close();
    },
  };
  return p;
}

async function ringbuf() {
  console.log(
    "| target events/s | produced events/s | consumed events/s | lost in the kernel |\n|---|---|---|---|",
  );
  const batch = 10_000, total = 3_000_000;
  const fmt = (n: number) => `${(n / 1e6).toFixed(2)} M`;
  for (const target of [500_000, 1_000_000, 2_000_000, Infinity]) {
    using p = openProducer(batch);
    const { c, ring } = p;
    const prog = c.program("x0_produce");
    const frame = udpFrame(64);
    let producing = true;
    const t0 = performance.now();
    let producedAt = t0;
    const producer = (async () => {
      for (let b = 0; b < total / batch; b++) {
        const wait = t0 + (b * batch / target) * 1000 - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        await prog.testRunAsync(frame, 1);
      }
      producedAt = performance.now();
      producing = false;
    })();
    const stats = c.map("x0_bench_stats");
    const read = (k: number) =>
      Number(
        new DataView(stats.lookup(new Uint8Array(new Uint32Array([k]).buffer))!.buffer)
          .getBigUint64(0, true),
      );
    while (producing || p.consumed < read(0)) {
      if (ring.consume() === 0) await ring.wait(producing ? 1 : 0);
      else await ring.wait(0); // let the producer's pacing run
    }
    await producer;
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `| ${target === Infinity ? "as fast as test-run goes" : fmt(target)} | ${
        fmt(read(0) / ((producedAt - t0) / 1000))
      } | ${fmt(p.consumed / secs)} | ${read(1)} |`,
    );
  }
  // The consumer alone: the kernel fills the ring first, then user space drains it.
  using p = openProducer(batch);
  for (let b = 0; b < total / batch; b++) p.c.program("x0_produce").testRun(udpFrame(64), 1);
  const t = performance.now();
  while (p.ring.consume() > 0) { /* drain */ }
  console.log(
    `| drain a full ring (consumer alone) | – | ${
      fmt(p.consumed / ((performance.now() - t) / 1000))
    } | 0 |`,
  );
}

/** Resident memory in MiB: all of it, and the private (anonymous) part, without the mapped
 * executable (under `deno run` the whole Deno CLI, larger than a compiled binary's runtime). */
function rssMiB(pid: number): { rss: number; anon: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (field: string) => Number(status.match(new RegExp(`${field}:\\s+(\\d+)`))?.[1]);
  return { rss: kb("VmRSS") / 1024, anon: kb("RssAnon") / 1024, peak: kb("VmHWM") / 1024 };
}

/** Median time of `n` scrapes of `url` by curl inside `ns`, and the body's size. */
function scrapeTimes(ns: string, url: string, n: number): { ms: number; bytes: number } {
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const out = sh(
      "curl",
      ["-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", url],
      ns,
    )
      .split(" ");
    times.push(Number(out[0]) * 1000);
    bytes = Number(out[1]);
  }
  return { ms: median(times), bytes };
}

/** Debian's node_exporter in namespace `ns`, on a loopback port: the reference in the same run. */
function nodeExporter(ns: string, port: number): Deno.ChildProcess {
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      "prometheus-node-exporter",
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function scrape() {
  using v = new VethPair(51);
  const port = 19100 + (Deno.pid % 1000);
  const ne = nodeExporter(v.b.ns, port);
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const node = scrapeTimes(v.b.ns, `http://127.0.0.1:${port}/metrics`, 21);
    const nodeRss = rssMiB(ne.pid).rss;
    console.log(
      "| flows in the table | x0tta6bl4 /metrics median | size | RSS (anonymous) | node_exporter median | size | RSS | time ratio |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    for (const n of [10_000, 100_000]) {
      using home = new DaemonHome();
      const size = n * 2;
      {
        // Fill the pinned flow table; the daemon adopts it on start.
        // Sized as the daemon sizes it (64 interfaces + slot 0), or it would not adopt the pins.
        using dp = new FlowDatapath({ flowTableSize: size, pinDir: home.pinDir, slots: 65 });
        fillFlows(dp, n);
      }
      await using d = new Daemon(
        v.b,
        [
          "--interface",
          v.b.dev,
          "--datapath.flow-table-size",
          String(size),
          "--collect.interval-ms",
          "1000",
        ],
        [],
        home,
      );
      await d.start();
      await d.until("a snapshot", () => d.request("/readyz").status === 200 || undefined);
      await new Promise((r) => setTimeout(r, 2500));
      const entries = d.request("/metrics").body.match(/^x0tta6bl4_flow_table_entries (\d+)/m)?.[1];
      if (Number(entries) < n) throw new Error(`the daemon sees ${entries} flows, not ${n}`);
      const ours = scrapeTimes(v.b.ns, `${d.base}/metrics`, 21);
      const rss = rssMiB(d.pid);
      console.log(
        `| ${n} | ${ours.ms.toFixed(1)} ms | ${(ours.bytes / 1024).toFixed(0)} KiB | ${
          rss.rss.toFixed(0)
        } MiB (${rss.anon.toFixed(0)} MiB) | ${node.ms.toFixed(1)} ms | ${
          (node.bytes / 1024).toFixed(0)
        } KiB | ${nodeRss.toFixed(0)} MiB | ${(ours.ms / node.ms).toFixed(2)} |`,
      );
    }
  } finally {
    ne.kill("SIGTERM");
    await ne.status;
  }
}

async function startup() {
  using v = new VethPair(52);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    await using d = new Daemon(v.b, ["--interface", v.b.dev]);
    const t = performance.now();
    await d.start();
    await d.until("ready", () => d.request("/readyz").status === 200 || undefined);
    times.push(performance.now() - t);
    if (!v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, "ingress"]).includes("x0_tc")) {
      throw new Error("ready without the programs attached");
    }
  }
  console.log(`| start to /readyz = 200 (median of 5) | ${median(times).toFixed(0)} ms |`);
}

function cpuSeconds(pid: number): number {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 10 ms
}

async function mesh() {
  const pct = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
  // Detection: kill n4 20 times; each survivor's own record of when it declared n4 dead.
  {
    const lab = new Lab({ tag: `b${Deno.pid}`, subnet: 240, nodes: 4, hostAccess: false });
    lab.down();
    try {
      lab.build();
      for (const n of lab.nodes) lab.startNode(n);
      const [n1, n2, n3, n4] = lab.nodes;
      const all = () =>
        lab.nodes.every((n) => labPeers(lab, n).filter((p) => p.state === "alive").length === 3);
      if (!await waitFor(30_000, all)) throw new Error("the lab did not converge");
      const times: number[] = [];
      for (let k = 0; k < 20; k++) {
        const killedAt = Date.now();
        Deno.kill(n4.process!.pid, "SIGKILL");
        await n4.process!.status;
        const dead = () => [n1, n2, n3].map((n) => labPeers(lab, n).find((p) => p.name === "n4"));
        if (!await waitFor(5000, () => dead().every((p) => p?.state === "dead"))) {
          throw new Error("no dead");
        }
        for (const p of dead()) times.push(Date.parse(p!.since) - killedAt);
        lab.startNode(n4);
        if (!await waitFor(30_000, all)) throw new Error("n4 did not come back");
      }
      console.log(
        "| dead-peer detection (60 observations: 20 kills × 3 peers) | median | p99 | max |\n|---|---|---|---|",
      );
      console.log(
        `| x0tta6bl4 (probe 100 ms, suspect 500 ms, dead 900 ms) | ${pct(times, 0.5)} ms | ${
          pct(times, 0.99)
        } ms | ${Math.max(...times)} ms |`,
      );
      console.log("| BFD defaults (RFC 5880 as commonly deployed: 300 ms × 3) | 900 ms | | |");
      console.log("| memberlist LAN defaults (hashicorp, about) | ~5 s | | |");

      // False deaths at 10% loss on every node's mesh port, for 60 s.
      for (const n of lab.nodes) {
        const p = new Deno.Command("ip", {
          args: ["netns", "exec", n.ns, "nft", "-f", "-"],
          stdin: "piped",
        }).spawn();
        const w = p.stdin.getWriter();
        await w.write(new TextEncoder().encode(
          "table inet x0loss {\n chain input {\n  type filter hook input priority 0;\n" +
            "  udp dport 5000 numgen random mod 100 < 10 drop\n }\n}\n",
        ));
        await w.close();
        await p.status;
      }
      let deaths = 0, looks = 0;
      const seen = new Map<string, string>();
      const end = performance.now() + 60_000;
      while (performance.now() < end) {
        for (const n of lab.nodes) {
          for (const p of labPeers(lab, n)) {
            looks++;
            const k = `${n.name}>${p.name}`;
            if (p.state === "dead" && seen.get(k) !== p.since) deaths++;
            if (p.state === "dead") seen.set(k, p.since);
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      console.log(
        `| false deaths at 10% loss on every node, 60 s, 12 peer pairs (${looks} looks) | ${deaths} | | |`,
      );
    } finally {
      lab.down();
    }
  }
  // Cost: probe bytes per peer and CPU per node, at 4 and 16 nodes.
  console.log(
    "\n| nodes | probe bytes/s per peer (sent + received) | CPU per node (% of one core) |\n|---|---|---|",
  );
  for (const size of [4, 16]) {
    const lab = new Lab({ tag: `c${Deno.pid}`, subnet: 241, nodes: size, hostAccess: false });
    lab.down();
    try {
      lab.build();
      for (const n of lab.nodes) lab.startNode(n);
      const ok = () =>
        lab.nodes.every((n) =>
          labPeers(lab, n).filter((p) => p.state === "alive").length === size - 1
        );
      if (!await waitFor(60_000, ok)) throw new Error(`${size} nodes did not converge`);
      await new Promise((r) => setTimeout(r, 2000));
      const n1 = lab.nodes[0];
      const bytes = () =>
        labPeers(lab, n1).reduce((a, p) => a + p.probeBytes.sent + p.probeBytes.received, 0);
      const cpu = () => lab.nodes.reduce((a, n) => a + cpuSeconds(n.process!.pid), 0);
      const [b0, c0, t0] = [bytes(), cpu(), performance.now()];
      await new Promise((r) => setTimeout(r, 10_000));
      const secs = (performance.now() - t0) / 1000;
      const perPeer = (bytes() - b0) / secs / (size - 1);
      const cpuPct = ((cpu() - c0) / secs / size) * 100;
      console.log(`| ${size} | ${perPeer.toFixed(0)} B/s | ${cpuPct.toFixed(1)} % |`);
    } finally {
      lab.down();
    }
  }
}

async function signals() {
  using v = new VethPair(53);
  const stats = sh("sysctl", ["-n", "kernel.bpf_stats_enabled"]).trim();
  const probeOn = () => withNetns(v.a.ns, () => new SignalsProbe(["drops", "retransmits", "rtt"]));
  try {
    // Throughput with bpf_stats off (it adds two clock reads to every program run).
    sh("sysctl", ["-qw", "kernel.bpf_stats_enabled=0"]);
    const off: number[] = [], on: number[] = [];
    for (let round = 0; round < 5; round++) {
      off.push((await iperf(v, [])).bps);
      const probe = probeOn();
      try {
        on.push((await iperf(v, [])).bps);
      } finally {
        probe.close();
      }
    }
    // Cost per event, from bpf_stats, in a run of its own.
    sh("sysctl", ["-qw", "kernel.bpf_stats_enabled=1"]);
    {
      using probe = probeOn();
      await iperf(v, []);
      console.log(
        "| program | runs during one 3 s iperf3 TCP run | ns per event (bpf_stats) |\n|---|---|---|",
      );
      for (const l of probe.links.values()) {
        const i = probe.collection.program(l.program).info();
        console.log(
          `| ${l.program} | ${i.runCount} | ${
            (i.runTimeNs / Math.max(1, i.runCount)).toFixed(0)
          } ns |`,
        );
      }
    }
    const [b, o] = [median(off), median(on)];
    console.log(
      `\n| iperf3 TCP across a veth pair | probes off | probes on | ratio |\n|---|---|---|---|`,
    );
    console.log(
      `| median of 5 | ${(b / 1e9).toFixed(2)} Gbit/s | ${(o / 1e9).toFixed(2)} Gbit/s | ${
        (o / b).toFixed(3)
      } |`,
    );
  } finally {
    sh("sysctl", ["-qw", `kernel.bpf_stats_enabled=${stats}`]);
  }
}

async function mapek() {
  console.log(
    "| flows | MAPE-K step median | /metrics render median | ratio |\n|---|---|---|---|",
  );
  for (const n of [10_000, 100_000]) {
    using dp = new FlowDatapath({ flowTableSize: n + n / 4 });
    fillFlows(dp, n);
    const store = new StateStore();
    const loop = new MapekLoop(MapekLoop.optionsFrom(defaultConfig()), {
      knowledge: new Knowledge(":memory:"),
      allow: new AllowList(),
      events: store.events,
      health: store.health,
      effectors: { enforcer: () => dp.enforcer, setTopFlows: () => {} },
    });
    const renderer = new MetricsRenderer({
      topFlows: 100,
      interfaceAllow: [],
      interfaceDeny: [],
      processMetrics: false,
    });
    const snap = (at: number): Snapshot => ({
      takenAt: at,
      mode: "ebpf",
      interfaces: [],
      flows: readFlowTable(dp),
      flowTable: { entries: n, capacity: n + n / 4, created: n, evicted: 0, insertFailed: 0 },
      events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
      programs: [],
      bpfStatsEnabled: false,
    });
    const steps: number[] = [], renders: number[] = [];
    const build = { version: "bench", commit: "bench", denoVersion: Deno.version.deno };
    for (let i = 0; i < 11; i++) {
      const s = snap(Date.now() + i * 1000);
      let t = performance.now();
      loop.step(s, Number(monotonicNs()));
      if (i > 0) steps.push(performance.now() - t); // the first step only primes the monitor
      t = performance.now();
      await renderer.render(s, [], build);
      renders.push(performance.now() - t);
    }
    loop.close();
    const [a, b] = [median(steps), median(renders)];
    console.log(`| ${n} | ${a.toFixed(1)} ms | ${b.toFixed(1)} ms | ${(a / b).toFixed(2)} |`);
  }
}

async function enforce() {
  // In-kernel cost: the same flow program with and without the check, interleaved.
  using base = Collection.load(noEnforceObject as Uint8Array<ArrayBuffer>, { name: "x0_noenf" });
  using dp = new FlowDatapath();
  const enf = dp.enforcer;
  const f = udpFrame(64); // source 10.0.0.1
  const rules = (n: number) => {
    for (let i = 0; i < n; i++) {
      enf.put({ address: `10.9.${i >> 8}.${i & 255}`, kind: "block", ratePps: 0 });
    }
  };
  const cases: [string, () => void][] = [
    ["no action live (gate closed)", () => {}],
    ["1000 actions live, source not among them (miss remembered per flow)", () => rules(1000)],
    ["1000 actions live, source blocked (lookup and drop every packet)", () => {
      enf.put({ address: "10.0.0.1", kind: "block", ratePps: 0 });
    }],
    ["1000 actions live, source rate-limited (lookup every packet)", () => {
      enf.put({ address: "10.0.0.1", kind: "rateLimit", ratePps: 1e9 });
    }],
  ];
  console.log(
    "| hook | case | without the check ns | with it ns | ratio |\n|---|---|---|---|---|",
  );
  for (const [label, setup] of cases) {
    setup();
    for (
      const [hook, ours, plain] of [
        ["XDP", dp.xdp, base.program("x0_xdp")],
        ["TC ingress", dp.tcIngress, base.program("x0_tc_ingress")],
      ] as const
    ) {
      ours.testRun(f, 10000);
      plain.testRun(f, 10000);
      const a: number[] = [], b: number[] = [];
      for (let i = 0; i < 9; i++) {
        a.push(plain.testRun(f, 1_000_000).durationNs);
        b.push(ours.testRun(f, 1_000_000).durationNs);
      }
      const [e, o] = [median(a), median(b)];
      console.log(`| ${hook} | ${label} | ${e} | ${o} | ${(o / e).toFixed(2)} |`);
    }
  }

  // Live: 64-byte UDP in 8 parallel streams into TC ingress of a veth, 1000 unrelated rules
  // present: the streams interleave, so the flow cache keeps missing and the check looks the
  // source up in x0_enforce on most packets. ns per packet from bpf_stats, interleaved rounds.
  {
    using v = new VethPair(96);
    const bIdx = withNetns(v.b.ns, () => ifindexOf(v.b.dev));
    const stats = bpfStats();
    const ns: Record<string, number[]> = { without: [], with: [] };
    try {
      for (let round = 0; round < 3; round++) {
        for (const variant of ["without", "with"] as const) {
          using live = new FlowDatapath({
            object: variant === "without" ? noEnforceObject as Uint8Array<ArrayBuffer> : undefined,
          });
          for (let i = 0; i < 1000; i++) {
            live.enforcer.put({ address: `10.9.${i >> 8}.${i & 255}`, kind: "block", ratePps: 0 });
          }
          withNetns(v.b.ns, () => live.attach(bIdx, "tc"));
          await iperf(v, ["-u", "-l", "64", "-b", "0", "-P", "8"]);
          const i = live.tcIngress.info();
          ns[variant].push(i.runTimeNs / Math.max(1, i.runCount));
        }
      }
    } finally {
      stats[Symbol.dispose]();
    }
    const [a, b] = [median(ns.without), median(ns.with)];
    console.log(
      `\n| live, TC ingress, 8 UDP streams, 1000 rules | without the check | with it | ratio |\n` +
        `|---|---|---|---|\n| ns per packet (bpf_stats, median of 3) | ${a.toFixed(0)} | ${
          b.toFixed(0)
        } | ${(b / a).toFixed(2)} |`,
    );
  }

  // Flood start to enforcement: a UDP flood at 20k packets/s from one namespace into an
  // appliance in enforce mode (XDP), five floods, each waiting for the block to expire first.
  for (const interval of [200, 1000]) {
    using v = new VethPair(97);
    using home = new DaemonHome();
    await using d = new Daemon(
      v.b,
      enforceArgs(v.b.dev, 2, [
        "--datapath.hook",
        "xdp",
        "--collect.interval-ms",
        String(interval),
      ]),
      [],
      home,
    );
    await d.start();
    await d.until("ready", () => d.request("/readyz").status === 200 || undefined, 20_000);
    const times: number[] = [];
    for (let run = 0; run < 5; run++) {
      const flood = trafficCommand(v.a.ns, "udp-rate", v.a.ip4, v.b.ip4, 9999, 20000, 4)
        .spawn();
      const t0 = Date.now();
      await d.until("block", () => {
        const a = (d.json("/api/v1/mapek/actions") as { actions: { state: string }[] }).actions;
        return a.some((x) => x.state === "active") || undefined;
      }, 10_000);
      times.push(Date.now() - t0);
      await flood.output();
      await d.until("expiry", () => {
        const a = (d.json("/api/v1/mapek/actions") as { actions: unknown[] }).actions;
        return a.length === 0 || undefined;
      }, 10_000);
      await new Promise((r) => setTimeout(r, 1500));
    }
    console.log(
      `| snapshot every ${interval} ms | ${times.join(", ")} ms | median ${median(times)} ms |`,
    );
  }
}

const UDP_FLOWS = new URL("../tests/helpers/udp_flows.ts", import.meta.url).pathname;

/** CPU (% of one core) of each of `pids` over `ms`. */
async function cpuPercent(pids: number[], ms: number): Promise<number[]> {
  const before = pids.map(cpuSeconds), t = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const secs = (performance.now() - t) / 1000;
  return pids.map((p, i) => (cpuSeconds(p) - before[i]) / secs * 100);
}

/**
 * The real worst case for memory and CPU: 100 000 distinct UDP flows from one source to
 * 100 000 (address, port) pairs of the box with no listener (each a NO_SOCKET drop in the
 * kernel; together a port scan), sent as raw frames into veth-b, where the appliance runs as
 * scripts/run starts it (flow table 262 144, snapshot every second, everything else default).
 * RSS and CPU idle, then after the flows stopped, against node_exporter in the same namespace.
 */
async function footprint() {
  const FLOWS = 100_000, PORTS = FLOWS / 2;
  using v = new VethPair(54);
  const second = "10.201.54.3";
  v.run(v.b, "ip", ["addr", "add", `${second}/24`, "dev", v.b.dev]);
  const port = 19200 + (Deno.pid % 1000);
  const ne = nodeExporter(v.b.ns, port);
  // With a ping every 100 ms across the pair while measuring, the table changes at every
  // snapshot, as on a box that is never quiet (without it the appliance skips reading a table
  // that no packet changed).
  const variants: [string, string[], ping?: boolean][] = [
    ["defaults", []],
    ["defaults, a ping every 100 ms", [], true],
    ["`mapek.enabled: false`", ["--mapek.enabled", "false"]],
    ["`signals.drops: false`", ["--signals.drops", "false"]],
    ["MAPE-K and all signals off", [
      "--mapek.enabled",
      "false",
      ...["drops", "retransmits", "rtt"].flatMap((k) => [`--signals.${k}`, "false"]),
    ]],
  ];
  const mib = (x: number) => `${x.toFixed(0)} MiB`;
  try {
    await new Promise((r) => setTimeout(r, 1000));
    scrapeTimes(v.b.ns, `http://127.0.0.1:${port}/metrics`, 1); // as a scraped exporter
    console.log(
      "| configuration | idle RSS (anon) | idle CPU | RSS at 100k (anon, peak) | " +
        "CPU at 100k (first 10 s, next 20 s) | " +
        "node_exporter RSS | node_exporter CPU |\n|---|---|---|---|---|---|---|",
    );
    for (const [label, args, ping] of variants) {
      await using d = new Daemon(v.b, [
        "--interface",
        v.b.dev,
        "--datapath.flow-table-size",
        "262144",
        "--collect.interval-ms",
        "1000",
        ...args,
      ]);
      await d.start();
      await d.until("ready", () => d.request("/readyz").status === 200 || undefined, 20_000);
      await new Promise((r) => setTimeout(r, 5000));
      const [idleCpu] = await cpuPercent([d.pid], 10_000);
      const idle = rssMiB(d.pid);
      const sent = Number(
        sh(
          Deno.execPath(),
          ["run", "-A", UDP_FLOWS, v.a.dev, v.a.ip4, "40000", "1", String(PORTS), "25000"]
            .concat([v.b.ip4, second]),
          v.a.ns,
        ),
      );
      if (sent !== FLOWS) throw new Error(`sent ${sent} datagrams, not ${FLOWS}`);
      const entries = () =>
        Number(d.request("/metrics").body.match(/^x0tta6bl4_flow_table_entries (\d+)/m)?.[1]);
      await d.until("the flows", () => entries() >= FLOWS || undefined, 30_000);
      const pinger = ping
        ? new Deno.Command("ip", {
          args: ["netns", "exec", v.a.ns, "ping", "-q", "-i", "0.1", v.b.ip4],
          stdout: "null",
          stderr: "null",
        }).spawn()
        : undefined;
      let scanCpu: number, cpu: number, neCpu: number;
      try {
        // The first 10 s: the scan is still within mapek.scan_window_s; then 20 s without it.
        [scanCpu] = await cpuPercent([d.pid], 10_000);
        [cpu, neCpu] = await cpuPercent([d.pid, ne.pid], 20_000);
      } finally {
        pinger?.kill("SIGTERM");
        await pinger?.status;
      }
      const at = rssMiB(d.pid);
      console.log(
        `| ${label} | ${mib(idle.rss)} (${mib(idle.anon)}) | ${idleCpu.toFixed(1)} % | ${
          mib(at.rss)
        } (${mib(at.anon)}, ${mib(at.peak)}) | ${scanCpu.toFixed(1)} %, ${cpu.toFixed(1)} % | ${
          mib(rssMiB(ne.pid).rss)
        } | ${neCpu.toFixed(1)} % |`,
      );
    }
  } finally {
    ne.kill("SIGTERM");
    await ne.status;
  }
}

if (sections.includes("cost")) cost();
if (sections.includes("live")) await live();
if (sections.includes("read")) read();
if (sections.includes("ringbuf")) await ringbuf();
if (sections.includes("scrape")) await scrape();
if (sections.includes("startup")) await startup();
if (sections.includes("mesh")) await mesh();
if (sections.includes("signals")) await signals();
if (sections.includes("mapek")) await mapek();
if (sections.includes("enforce")) await enforce();
if (sections.includes("footprint")) await footprint();
if (sections.includes("ipfix")) await ipfix();
