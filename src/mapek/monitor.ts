/**
 * Monitor: turns consecutive snapshots into one observation of the last interval, with rates
 * instead of totals: packets per second per source on ingress, half-open TCP connections,
 * distinct ports a source touched, drops by reason, flow-table pressure, ring buffer loss and
 * the mesh's peers. Only what the datapath and the signals measured; nothing is invented.
 */
import type { FlowTable } from "../collect/flowtable.ts";
import type { PeerSnapshot } from "../mesh/node.ts";
import type { Snapshot } from "../state/snapshot.ts";

const TCP = 6, UDP = 17;
const SYN = 0x02, ACK = 0x10;
const EGRESS = 2;

export interface SourceObservation {
  address: string;
  /** Packets and bytes per second it sent to this box over the interval (ingress hooks). */
  pps: number;
  bps: number;
  /** Its TCP flows started in the interval that never got past SYN (no ACK). */
  halfOpen: number;
  /** Distinct destination ports it opened unanswered within the scan window. */
  scanPorts: number;
  /** The destination it sent the most packets to over the interval. */
  topDestination?: string;
}

export interface Observation {
  at: number;
  intervalS: number;
  /** Sources that sent anything in the interval. */
  sources: Map<string, SourceObservation>;
  /** Half-open TCP flows started in the interval, per second, per destination address and
   * port (a SYN flood aims at one service; a scan's SYNs spread over many ports). */
  halfOpenByDestination: Map<string, { perS: number; sources: Map<string, number> }>;
  /** Drops per second by reason (all interfaces). */
  dropsPerS: Map<string, number>;
  flowTable: { fill: number; evictedPerS: number; entries: number; capacity: number };
  ringLoss: { kernel: number; consumer: number };
  mesh: PeerSnapshot[];
}

export interface MonitorOptions {
  /** How far back a source's opened ports count towards a scan, in seconds. */
  scanWindowS: number;
}

export class Monitor {
  #prevAt = 0;
  #prevSource = new Map<string, { packets: number; bytes: number }>();
  #prevDrops = new Map<string, number>();
  #prevEvicted = 0;
  #prevLost = { kernel: 0, consumer: 0 };
  #primed = false;

  constructor(readonly o: MonitorOptions) {}

  /**
   * The observation of the interval that ends with `s`; undefined for the first snapshot (no
   * interval yet). `nowMonoNs` is the datapath clock at the snapshot (flow times use it).
   */
  observe(s: Snapshot, nowMonoNs: number): Observation | undefined {
    const t = s.flows;
    const totals = new Map<string, { packets: number; bytes: number }>();
    const perDest = new Map<string, Map<string, number>>(); // source → destination → packets
    const halfOpenSince = nowMonoNs - (s.takenAt - this.#prevAt) * 1e6;
    const scanSince = nowMonoNs - this.o.scanWindowS * 1e9;
    const halfOpen = new Map<string, number>();
    const halfOpenByDestination = new Map<string, Map<string, number>>();
    const opened = new Map<string, Set<string>>(); // source → "daddr/proto/dport"
    const udpCandidates: number[] = [];
    for (let i = 0; i < t.size; i++) {
      if (t.hook(i) === EGRESS) continue;
      const src = t.address(i, "saddr");
      const tot = totals.get(src);
      if (tot) {
        tot.packets += t.packets(i);
        tot.bytes += t.bytes(i);
      } else totals.set(src, { packets: t.packets(i), bytes: t.bytes(i) });
      const proto = t.proto(i);
      const flags = t.tcpFlags(i);
      const first = t.firstSeenNs(i);
      if (proto === TCP && (flags & SYN) && !(flags & ACK)) {
        if (first >= scanSince) addPort(opened, src, i, t);
        if (first >= halfOpenSince) {
          const d = t.address(i, "daddr"), port = t.port(i, "dport");
          const dst = d.includes(":") ? `[${d}]:${port}` : `${d}:${port}`;
          halfOpen.set(src, (halfOpen.get(src) ?? 0) + 1);
          let m = halfOpenByDestination.get(dst);
          if (!m) halfOpenByDestination.set(dst, m = new Map());
          m.set(src, (m.get(src) ?? 0) + 1);
        }
      } else if (proto === UDP && first >= scanSince) udpCandidates.push(i);
    }
    // UDP: a flow opened to a port counts unless this box answered it (a reply flow exists
    // on egress), so the replies to the box's own queries (from port 53 to many ephemeral
    // ports) never look like a scan.
    if (udpCandidates.length) {
      const answered = egressUdp(t);
      for (const i of udpCandidates) {
        const reply = `${t.address(i, "daddr")}/${t.port(i, "dport")}/${t.address(i, "saddr")}/${
          t.port(i, "sport")
        }`;
        if (!answered.has(reply)) addPort(opened, t.address(i, "saddr"), i, t);
      }
    }
    if (!this.#primed) {
      this.#primed = true;
      this.#remember(s, totals);
      return undefined;
    }
    const dt = Math.max(0.001, (s.takenAt - this.#prevAt) / 1000);
    // Packets per destination only for the sources that sent something (a second pass).
    const sources = new Map<string, SourceObservation>();
    for (const [address, now] of totals) {
      const before = this.#prevSource.get(address);
      const packets = Math.max(0, now.packets - (before?.packets ?? 0));
      const bytes = Math.max(0, now.bytes - (before?.bytes ?? 0));
      if (packets === 0 && !halfOpen.has(address) && !opened.has(address)) continue;
      sources.set(address, {
        address,
        pps: packets / dt,
        bps: bytes / dt,
        halfOpen: (halfOpen.get(address) ?? 0) / dt,
        scanPorts: opened.get(address)?.size ?? 0,
      });
    }
    for (let i = 0; i < t.size; i++) {
      if (t.hook(i) === EGRESS) continue;
      const src = t.address(i, "saddr");
      if (!sources.has(src)) continue;
      let m = perDest.get(src);
      if (!m) perDest.set(src, m = new Map());
      const d = t.address(i, "daddr");
      m.set(d, (m.get(d) ?? 0) + t.packets(i));
    }
    for (const [src, m] of perDest) {
      sources.get(src)!.topDestination = [...m].sort((a, b) => b[1] - a[1])[0]?.[0];
    }
    const dropsPerS = new Map<string, number>();
    const drops = new Map<string, number>();
    for (const d of s.signals?.drops ?? []) {
      drops.set(d.reason, (drops.get(d.reason) ?? 0) + d.count);
    }
    for (const [reason, n] of drops) {
      const before = this.#prevDrops.get(reason) ?? 0;
      dropsPerS.set(reason, Math.max(0, n - before) / dt);
    }
    const obs: Observation = {
      at: s.takenAt,
      intervalS: dt,
      sources,
      halfOpenByDestination: new Map(
        [...halfOpenByDestination].map(([d, m]) => [d, {
          perS: [...m.values()].reduce((a, b) => a + b, 0) / dt,
          sources: m,
        }]),
      ),
      dropsPerS,
      flowTable: {
        fill: s.flowTable.capacity ? s.flowTable.entries / s.flowTable.capacity : 0,
        evictedPerS: Math.max(0, s.flowTable.evicted - this.#prevEvicted) / dt,
        entries: s.flowTable.entries,
        capacity: s.flowTable.capacity,
      },
      ringLoss: {
        kernel: Math.max(0, s.events.lostKernel - this.#prevLost.kernel),
        consumer: Math.max(0, s.events.lostConsumer - this.#prevLost.consumer),
      },
      mesh: s.mesh?.peers ?? [],
    };
    this.#prevDrops = drops;
    this.#remember(s, totals);
    return obs;
  }

  #remember(s: Snapshot, totals: Map<string, { packets: number; bytes: number }>): void {
    this.#prevAt = s.takenAt;
    this.#prevSource = totals;
    if (!this.#prevDrops.size) {
      for (const d of s.signals?.drops ?? []) {
        this.#prevDrops.set(d.reason, (this.#prevDrops.get(d.reason) ?? 0) + d.count);
      }
    }
    this.#prevEvicted = s.flowTable.evicted;
    this.#prevLost = { kernel: s.events.lostKernel, consumer: s.events.lostConsumer };
  }
}

function addPort(opened: Map<string, Set<string>>, src: string, i: number, t: FlowTable): void {
  let set = opened.get(src);
  if (!set) opened.set(src, set = new Set());
  set.add(`${t.address(i, "daddr")}/${t.proto(i)}/${t.port(i, "dport")}`);
}

/** The box's UDP flows on egress, as "saddr/sport/daddr/dport". */
function egressUdp(t: FlowTable): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < t.size; i++) {
    if (t.hook(i) !== EGRESS || t.proto(i) !== UDP) continue;
    out.add(
      `${t.address(i, "saddr")}/${t.port(i, "sport")}/${t.address(i, "daddr")}/${
        t.port(i, "dport")
      }`,
    );
  }
  return out;
}
