/**
 * The mesh at fleet scale, simulated with the real node code: N instances of `MeshNode`
 * (src/mesh/node.ts, the module the appliance runs) in one process, on a virtual network
 * (datagrams delivered after a random delay, a fraction dropped) under a virtual clock (the
 * node's timers and clocks are injected, `MeshOptions.clock`). K nodes are killed at random
 * moments; every surviving node's view of them is recorded.
 *
 *   deno task mesh-sim [--nodes N] [--seconds S] [--loss P] [--kills K] [--seed X] [--star]
 *
 * Prints a few lines of progress and, as its last line, one JSON object (docs/BENCHMARKS.md,
 * "The mesh").
 */
import { parseArgs } from "node:util";
import { type MeshClock, MeshNode, type MeshOptions, type PeerState } from "../src/mesh/node.ts";
import { parseCidr } from "../src/net/cidr.ts";
import { defaultConfig } from "../src/config/schema.ts";
import { meshTimings } from "../src/mesh/service.ts";

export interface SimOptions {
  nodes: number;
  seconds: number;
  /** Fraction of datagrams dropped, 0..1. */
  loss: number;
  kills: number;
  seed: number;
  /**
   * Every node's seed is the first node, which is never killed (as in the lab, scripts/lab.ts);
   * otherwise each node's seed is a random node started before it.
   */
  star?: boolean;
  /** Mesh settings for every node (the appliance's defaults when left out). */
  mesh?: Partial<MeshOptions>;
}

export interface SimResult {
  nodes: number;
  seconds: number;
  loss: number;
  killed: number;
  /** (surviving node, killed node) pairs in which the survivor came to know of the death. */
  detected: number;
  /** Of those pairs: from the kill to the survivor's knowing, ms. */
  detect_ms: { median: number | null; p99: number | null; max: number | null };
  /** Nodes declared dead by some node while they were alive. */
  false_dead: number;
  /**
   * Mesh datagrams sent (UDP payload bytes), per live node and simulated second, once the fleet
   * formed (from a quarter of the run to its end, the kills included).
   */
  bytes_per_node_s: number;
  datagrams_per_node_s: number;
  /** The same over the first quarter of the run, while every node joins (a burst of news). */
  startup_bytes_per_node_s: number;
  /** From the start until every node knows every member alive (null: not before a kill). */
  converge_ms: number | null;
  /** Wall-clock time the simulation took, ms. */
  wall_ms: number;
}

/** The appliance's mesh settings: the configuration's defaults, on the lab's network. */
export function defaultMesh(): Omit<
  MeshOptions,
  "listen" | "key" | "peers" | "id" | "name" | "metrics"
> {
  return { ...meshTimings(defaultConfig().mesh), networks: [parseCidr("198.18.0.0/15")] };
}

/** A small seeded generator (mulberry32), so that a run (or a failed test) can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A timer or, without `run`, a datagram `b` from `from` arriving at node `to`. */
interface Event {
  at: number;
  order: number;
  run: (() => void) | null;
  to: number;
  b: Uint8Array | null;
  from: string;
}

/** Events by time (then by order of scheduling): a binary heap. */
class Agenda {
  #heap: Event[] = [];
  #order = 0;
  now = 0;

  /** `deliver`: what a datagram's arrival does. */
  constructor(readonly deliver: (to: number, b: Uint8Array, from: string) => void) {}

  at(t: number, run: () => void): void {
    this.#push({ at: t, order: this.#order++, run, to: 0, b: null, from: "" });
  }

  /** A datagram arriving at `t` (an event without a closure of its own). */
  datagram(t: number, to: number, b: Uint8Array, from: string): void {
    this.#push({ at: t, order: this.#order++, run: null, to, b, from });
  }

  #push(e: Event): void {
    const h = this.#heap;
    let i = h.push(e) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(e, h[parent])) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = e;
  }

  /** Runs every event up to `end` (ms). */
  runUntil(end: number): void {
    const h = this.#heap;
    while (h.length && h[0].at <= end) {
      const top = h[0];
      const last = h.pop()!;
      if (h.length) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1, r = l + 1;
          let m = i;
          let mv = last;
          if (l < h.length && before(h[l], mv)) {
            m = l;
            mv = h[l];
          }
          if (r < h.length && before(h[r], mv)) m = r;
          if (m === i) break;
          h[i] = h[m];
          i = m;
        }
        h[i] = last;
      }
      this.now = top.at;
      if (top.run) top.run();
      else this.deliver(top.to, top.b!, top.from);
    }
    this.now = end;
  }
}

const before = (a: Event, b: Event) => a.at < b.at || (a.at === b.at && a.order < b.order);

function quantile(sorted: number[], q: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

const address = (i: number) => `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`;

/** Runs one simulation. */
export function simulate(o: SimOptions): SimResult {
  const wallStart = performance.now();
  const random = prng(o.seed);
  const agenda = new Agenda((to, b, from) => {
    if (killedAt[to] === undefined) nodes[to].receive(b, from);
  });
  const epoch = Date.UTC(2026, 0, 1);
  const key = new Uint8Array(32).map(() => Math.floor(random() * 256));
  const nodes: MeshNode[] = [];
  /** Node by its mesh address's host (every node listens on port 5000). */
  const byHost = new Map<string, number>();
  /** When each node was killed (ms), or undefined while it lives. */
  const killedAt: (number | undefined)[] = [];
  const sent = { bytes: 0, datagrams: 0 };
  /** Per observer: the members it holds alive or suspect (for convergence). */
  const known: Set<string>[] = [];
  const detectMs: number[] = [];
  const detectedPairs = new Set<string>();
  const falseDead = new Set<string>();
  let converged: number | null = null;
  const idOf = (i: number) => (i + 1).toString(16).padStart(32, "0");
  const indexOf = new Map<string, number>();

  for (let i = 0; i < o.nodes; i++) {
    const id = idOf(i);
    indexOf.set(id, i);
    const listen = `${address(i)}:5000`;
    byHost.set(address(i), i);
    const stops: (() => void)[] = [];
    const clock: MeshClock = {
      wallMs: () => epoch + agenda.now,
      monoMs: () => agenda.now,
      every(ms, f) {
        let live = true;
        const tick = () => {
          if (!live || killedAt[i] !== undefined) return;
          f();
          agenda.at(agenda.now + ms, tick);
        };
        agenda.at(agenda.now + ms, tick);
        const stop = () => live = false;
        stops.push(stop);
        return stop;
      },
      random,
    };
    // Each node is given one seed: a random node started before it (a tree that spans all).
    const seed = o.star ? 0 : Math.floor(random() * i);
    const peers = i === 0 ? [] : [`${address(seed)}:5000`];
    const node = new MeshNode({
      ...defaultMesh(),
      ...o.mesh,
      listen,
      key,
      peers,
      id,
      name: `n${i}`,
      metrics: `${address(i)}:9477`,
      clock,
      transport(b, host, port) {
        sent.bytes += b.length;
        sent.datagrams++;
        const to = port === 5000 ? byHost.get(host) : undefined;
        if (to === undefined || random() < o.loss) return;
        agenda.datagram(agenda.now + 0.1 + random() * 0.9, to, b, listen);
      },
    });
    known.push(new Set());
    node.onChange = (p, previous: PeerState | undefined) => {
      const target = indexOf.get(p.id);
      if (target === undefined) return;
      if (p.state === "alive" || p.state === "suspect") known[i].add(p.id);
      else known[i].delete(p.id);
      if (p.state !== "dead" || previous === "dead") return;
      const k = killedAt[target];
      if (k === undefined) falseDead.add(p.id);
      else if (!detectedPairs.has(`${i} ${target}`)) {
        detectedPairs.add(`${i} ${target}`);
        detectMs.push(Math.round(agenda.now - k));
      }
    };
    nodes.push(node);
    killedAt.push(undefined);
    // Nodes start within the first half second, in any order.
    agenda.at(random() * 500, () => void node.start());
  }

  const end = o.seconds * 1000;
  const kills = new Set<number>();
  while (kills.size < Math.min(o.kills, o.nodes - (o.star ? 2 : 1))) {
    const k = Math.floor(random() * o.nodes);
    if (k > 0 || !o.star) kills.add(k);
  }
  // Killed at random moments between 30% and 60% of the run: after the fleet formed, with time
  // left to find out.
  const killTimes = [...kills].map((i) => ({ i, at: end * (0.3 + 0.3 * random()) }));
  for (const { i, at } of killTimes) agenda.at(at, () => killedAt[i] = agenda.now);
  const firstKill = Math.min(end, ...killTimes.map((k) => k.at));

  const step = 100;
  const formed = Math.round(end / 4 / step) * step;
  let startup = { ...sent };
  for (let t = step; t <= end; t += step) {
    agenda.runUntil(t);
    if (t === formed) startup = { ...sent };
    if (converged === null && t < firstKill && known.every((s) => s.size === o.nodes - 1)) {
      converged = t;
    }
    if (t % 10_000 === 0) {
      console.error(`t=${t / 1000}s wall ${Math.round(performance.now() - wallStart)} ms`);
    }
  }

  let liveMs = 0; // node-ms alive after the fleet formed
  for (const k of killedAt) liveMs += Math.max(0, (k ?? end) - formed);
  const perNodeS = (x: number, ms: number) => x / (ms / 1000);
  detectMs.sort((a, b) => a - b);
  // Only pairs whose observer survived count as detected.
  let detected = 0;
  for (const pair of detectedPairs) {
    if (killedAt[Number(pair.split(" ")[0])] === undefined) detected++;
  }
  return {
    nodes: o.nodes,
    seconds: o.seconds,
    loss: o.loss,
    killed: kills.size,
    detected,
    detect_ms: {
      median: quantile(detectMs, 0.5),
      p99: quantile(detectMs, 0.99),
      max: quantile(detectMs, 1),
    },
    false_dead: falseDead.size,
    bytes_per_node_s: Math.round(perNodeS(sent.bytes - startup.bytes, liveMs)),
    datagrams_per_node_s: Math.round(perNodeS(sent.datagrams - startup.datagrams, liveMs) * 10) /
      10,
    startup_bytes_per_node_s: Math.round(perNodeS(startup.bytes, formed * o.nodes)),
    converge_ms: converged,
    wall_ms: Math.round(performance.now() - wallStart),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nodes: { type: "string", default: "100" },
      seconds: { type: "string", default: "60" },
      loss: { type: "string", default: "0.1" },
      kills: { type: "string", default: "10" },
      seed: { type: "string", default: "1" },
      star: { type: "boolean", default: false },
    },
  });
  const num = (name: keyof typeof values, min: number, max: number) => {
    const v = Number(values[name]);
    if (!(v >= min && v <= max)) {
      console.error(`mesh-sim: --${name} must be from ${min} to ${max}`);
      Deno.exit(2);
    }
    return v;
  };
  const r = simulate({
    nodes: num("nodes", 2, 5000),
    seconds: num("seconds", 1, 3600),
    loss: num("loss", 0, 0.9),
    kills: num("kills", 0, 5000),
    seed: num("seed", 0, 2 ** 32 - 1),
    star: values.star,
  });
  console.log(JSON.stringify(r));
}
