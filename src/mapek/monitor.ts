/**
 * Monitor: turns consecutive snapshots into one observation of the last interval, with rates
 * instead of totals: packets per second per source on ingress, half-open TCP connections,
 * distinct ports a source opened unanswered, drops by reason, flow-table pressure, ring buffer
 * loss and the mesh's peers. Only what the datapath and the signals measured.
 *
 * It runs at every snapshot over every flow, so it groups by numeric address ids and formats
 * addresses only for the sources it reports (at 100k flows a pass costs tens of ms).
 */
import { joinHostPort } from "../net/hostport.ts";
import { formatIPv4Number } from "../net/address.ts";
import { isEgressHook } from "../flows/key.ts";
import type { FlowTable } from "../flows/table.ts";
import type { PeerSnapshot } from "../mesh/node.ts";
import type { Snapshot } from "../state/snapshot.ts";

import { TCP, UDP } from "../net/protocol.ts";
const SYN = 0x02, ACK = 0x10;

type Id = number | string;

/**
 * Average frame size (bytes) above which TCP segments carry payload: a bare SYN-ACK, ACK or RST
 * with options is 66 to 78 bytes over IPv4 and 86 to 98 over IPv6 (Ethernet included).
 */
const BARE_SEGMENT = { 4: 90, 6: 110 } as const;

export interface SourceObservation {
  address: string;
  /** Packets and bytes per second it sent to this box over the interval (ingress hooks). */
  pps: number;
  bps: number;
  /** Packets per second this box sent back to it (egress): a conversation, not a flood. */
  repliesPps: number;
  /** Its TCP flows started in the interval that never got past SYN (no ACK), per second. */
  halfOpen: number;
  /** Distinct destination ports it opened unanswered within the scan window. */
  scanPorts: number;
  /** The destination it sent the most packets to (sources at or above the flood floor). */
  topDestination?: string;
  /**
   * Whether this box sent it TCP payload: a conversation completed, which needs the source's
   * real address (a spoofer never sees our SYN-ACK, and the kernel sends data only once the
   * handshake is done). Floods and scans from unverified sources may carry spoofed addresses.
   */
  verified: boolean;
}

export interface Observation {
  at: number;
  intervalS: number;
  /** Sources worth a look: a tenth of the flood floor, half-open flows, or half the scan
   * floor's ports. */
  sources: Map<string, SourceObservation>;
  /** Packets per second of the busiest source (all sources, reported or not). */
  busiestPps: number;
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
  /** The flood floor: sources under a tenth of it are only counted, not reported… */
  floodPps: number;
  /** …unless they opened at least half the scan floor's ports. */
  scanPorts: number;
}

const text = (id: Id) => typeof id === "number" ? formatIPv4Number(id) : id;

export class Monitor {
  #prevAt = 0;
  readonly #totals = new SourceTotals();
  /** What this box sent back, per destination address (egress). */
  readonly #replies = new SourceTotals();
  #prevDrops = new Map<string, number>();
  #prevEvicted = 0;
  #prevLost = { kernel: 0, consumer: 0 };
  #primed = false;
  /** Kept across snapshots (cleared, not reallocated): at 100k flows, no garbage per flow. */
  readonly #opened = new Opened();
  readonly #answered = new Fingerprints();
  #udpCandidates = new Uint32Array(1024);

  constructor(public o: MonitorOptions) {}

  /**
   * The observation of the interval that ends with `s`; undefined for the first snapshot (no
   * interval yet). `nowMonoNs` is the datapath clock at the snapshot (flow times use it).
   */
  observe(s: Snapshot, nowMonoNs: number): Observation | undefined {
    const t = s.flows;
    const totals = this.#totals, replies = this.#replies;
    totals.begin();
    replies.begin();
    const halfOpenSince = nowMonoNs - (s.takenAt - this.#prevAt) * 1e6;
    const scanSince = nowMonoNs - this.o.scanWindowS * 1e9;
    const halfOpen = new Map<Id, number>();
    const halfOpenByDestination = new Map<string, Map<string, number>>();
    const opened = this.#opened, answered = this.#answered;
    opened.clear();
    answered.clear();
    let udpCandidates = this.#udpCandidates, candidates = 0;
    const verified = new Set<Id>();
    for (let i = 0; i < t.size; i++) {
      if (isEgressHook(t.hook(i))) {
        const dst = t.addressId(i, "daddr");
        replies.add(dst, t.packets(i), t.bytes(i));
        const proto = t.proto(i);
        if (proto === TCP && t.bytes(i) > t.packets(i) * BARE_SEGMENT[t.family(i)]) {
          verified.add(dst);
        } else if (proto === UDP) {
          answered.add(t.addressId(i, "saddr"), t.port(i, "sport"), dst, t.port(i, "dport"));
        }
        continue;
      }
      const src = t.addressId(i, "saddr");
      totals.add(src, t.packets(i), t.bytes(i));
      const proto = t.proto(i);
      if (proto !== TCP && proto !== UDP) continue;
      const first = t.firstSeenNs(i);
      if (first < scanSince) continue;
      if (proto === UDP) {
        if (candidates === udpCandidates.length) {
          udpCandidates = this.#udpCandidates = grown(udpCandidates, candidates * 2);
        }
        udpCandidates[candidates++] = i;
        continue;
      }
      const flags = t.tcpFlags(i);
      if (!(flags & SYN) || (flags & ACK)) continue;
      opened.add(src, i, t);
      if (first < halfOpenSince) continue;
      const d = t.address(i, "daddr"), port = t.port(i, "dport");
      const dst = joinHostPort(d, port);
      halfOpen.set(src, (halfOpen.get(src) ?? 0) + 1);
      let m = halfOpenByDestination.get(dst);
      if (!m) halfOpenByDestination.set(dst, m = new Map());
      m.set(text(src), (m.get(text(src)) ?? 0) + 1);
    }
    // UDP: a flow opened to a port counts unless this box answered it (a reply flow exists
    // on egress), so the replies to the box's own queries (from port 53 to many ephemeral
    // ports) never look like a scan.
    for (let c = 0; c < candidates; c++) {
      const i = udpCandidates[c], src = t.addressId(i, "saddr");
      if (!answered.has(t.addressId(i, "daddr"), t.port(i, "dport"), src, t.port(i, "sport"))) {
        opened.add(src, i, t);
      }
    }
    if (!this.#primed) {
      this.#primed = true;
      totals.end(() => {});
      replies.end(() => {});
      this.#remember(s);
      return undefined;
    }
    const dt = Math.max(0.001, (s.takenAt - this.#prevAt) / 1000);
    const sources = new Map<string, SourceObservation>();
    const floodIds = new Map<Id, SourceObservation>();
    let busiestPps = 0;
    replies.end(() => {});
    totals.end((id, packets, bytes) => {
      const pps = packets / dt;
      busiestPps = Math.max(busiestPps, pps);
      const ports = opened.count(id);
      if (pps < this.o.floodPps / 10 && !halfOpen.has(id) && ports < this.o.scanPorts / 2) {
        return;
      }
      const address = text(id);
      const o: SourceObservation = {
        address,
        pps,
        bps: bytes / dt,
        repliesPps: replies.deltaOf(id) / dt,
        halfOpen: (halfOpen.get(id) ?? 0) / dt,
        scanPorts: ports,
        verified: verified.has(id),
      };
      sources.set(address, o);
      if (pps >= this.o.floodPps) floodIds.set(id, o);
    });
    // Where the sources at the flood floor send most: a second pass over their flows only.
    if (floodIds.size) {
      const perDest = new Map<Id, Map<string, number>>();
      for (let i = 0; i < t.size; i++) {
        if (isEgressHook(t.hook(i))) continue;
        const src = t.addressId(i, "saddr");
        if (!floodIds.has(src)) continue;
        let m = perDest.get(src);
        if (!m) perDest.set(src, m = new Map());
        const d = t.address(i, "daddr");
        m.set(d, (m.get(d) ?? 0) + t.packets(i));
      }
      for (const [src, m] of perDest) {
        floodIds.get(src)!.topDestination = [...m].sort((a, b) => b[1] - a[1])[0]?.[0];
      }
    }
    const drops = watchedDrops(s);
    const dropsPerS = new Map<string, number>();
    for (const [reason, n] of drops) {
      dropsPerS.set(reason, Math.max(0, n - (this.#prevDrops.get(reason) ?? 0)) / dt);
    }
    const obs: Observation = {
      at: s.takenAt,
      intervalS: dt,
      sources,
      busiestPps,
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
    this.#remember(s, drops);
    return obs;
  }

  #remember(s: Snapshot, drops = watchedDrops(s)): void {
    this.#prevAt = s.takenAt;
    this.#prevDrops = drops;
    this.#prevEvicted = s.flowTable.evicted;
    this.#prevLost = { kernel: s.events.lostKernel, consumer: s.events.lostConsumer };
  }
}

/**
 * Kernel drops per reason on the watched interfaces. The drop probe counts every drop of the
 * box's namespace, and those whose namespace nothing tells (a queue purged as another namespace
 * or socket goes away) under "unknown": those are not this box's traffic, and a test lab or a
 * container that tears down must not look like an attack on the box.
 */
function watchedDrops(s: Snapshot): Map<string, number> {
  const watched = new Set(s.interfaces.map((i) => i.name));
  const drops = new Map<string, number>();
  for (const d of s.signals?.drops ?? []) {
    if (watched.has(d.interface)) drops.set(d.reason, (drops.get(d.reason) ?? 0) + d.count);
  }
  return drops;
}

/**
 * Packets and bytes per source, summed over its flows at each snapshot, and what they grew by
 * since the previous one. Sources keep their slot across snapshots: a map and a few typed
 * arrays that are reused, not new maps every snapshot (at 100k sources those were tens of MiB
 * of garbage promoted to the old generation).
 */
class SourceTotals {
  #slot = new Map<Id, number>();
  #ids: Id[] = [];
  #packets = new Float64Array(1024);
  #bytes = new Float64Array(1024);
  #lastPackets = new Float64Array(1024);
  #lastBytes = new Float64Array(1024);
  /** Packets since the previous snapshot, as end() gave them. */
  #delta = new Float64Array(1024);
  /** The snapshot (generation) in which a slot was last summed, and the one before. */
  #gen = new Uint32Array(1024);
  #lastGen = new Uint32Array(1024);
  #touched: Uint32Array = new Uint32Array(1024);
  #n = 0;
  #g = 0;

  begin(): void {
    this.#g++;
    this.#n = 0;
  }

  add(id: Id, packets: number, bytes: number): void {
    let s = this.#slot.get(id);
    if (s === undefined) {
      s = this.#ids.length;
      this.#ids.push(id);
      this.#slot.set(id, s);
      if (s >= this.#packets.length) this.#grow(s * 2);
    }
    if (this.#gen[s] !== this.#g) {
      this.#gen[s] = this.#g;
      this.#packets[s] = 0;
      this.#bytes[s] = 0;
      if (this.#n >= this.#touched.length) this.#touched = grown(this.#touched, this.#n * 2);
      this.#touched[this.#n++] = s;
    }
    this.#packets[s] += packets;
    this.#bytes[s] += bytes;
  }

  /**
   * Gives each source of this snapshot what it sent since the previous one (all of its
   * packets when it was not in the previous one), then forgets the sources that left.
   */
  end(fn: (id: Id, packets: number, bytes: number) => void): void {
    const g = this.#g;
    for (let k = 0; k < this.#n; k++) {
      const s = this.#touched[k];
      const seen = this.#lastGen[s] === g - 1;
      this.#delta[s] = Math.max(0, this.#packets[s] - (seen ? this.#lastPackets[s] : 0));
      fn(
        this.#ids[s],
        this.#delta[s],
        Math.max(0, this.#bytes[s] - (seen ? this.#lastBytes[s] : 0)),
      );
      this.#lastPackets[s] = this.#packets[s];
      this.#lastBytes[s] = this.#bytes[s];
      this.#lastGen[s] = g;
    }
    if (this.#ids.length > 2 * this.#n + 1024) this.#compact();
  }

  /** Packets of `id` since the previous snapshot, as the last end() gave them (0: none). */
  deltaOf(id: Id): number {
    const s = this.#slot.get(id);
    return s === undefined || this.#lastGen[s] !== this.#g ? 0 : this.#delta[s];
  }

  /** Keeps only the sources of this snapshot, in slots 0..n-1. */
  #compact(): void {
    const ids: Id[] = [];
    const slot = new Map<Id, number>();
    const keep = Array.from(this.#touched.subarray(0, this.#n));
    const move = <T extends Float64Array | Uint32Array>(a: T): T => {
      const b = new (a.constructor as { new (n: number): T })(Math.max(1024, this.#n * 2));
      keep.forEach((s, i) => b[i] = a[s]);
      return b;
    };
    this.#packets = move(this.#packets);
    this.#bytes = move(this.#bytes);
    this.#lastPackets = move(this.#lastPackets);
    this.#lastBytes = move(this.#lastBytes);
    this.#delta = move(this.#delta);
    this.#gen = move(this.#gen);
    this.#lastGen = move(this.#lastGen);
    keep.forEach((s, i) => {
      ids.push(this.#ids[s]);
      slot.set(this.#ids[s], i);
    });
    this.#ids = ids;
    this.#slot = slot;
  }

  #grow(n: number): void {
    this.#packets = grown(this.#packets, n);
    this.#bytes = grown(this.#bytes, n);
    this.#lastPackets = grown(this.#lastPackets, n);
    this.#lastBytes = grown(this.#lastBytes, n);
    this.#delta = grown(this.#delta, n);
    this.#gen = grown(this.#gen, n);
    this.#lastGen = grown(this.#lastGen, n);
  }
}

function grown<T extends Float64Array | Uint32Array>(a: T, n: number): T {
  const b = new (a.constructor as { new (n: number): T })(n);
  b.set(a);
  return b;
}

/**
 * A set of 32-bit fingerprints of fixed size (2^18 slots, 1 MiB, open addressing), emptied at
 * every snapshot: membership of 4-part keys without a string or an object per key. Two keys
 * share a fingerprint with odds of about n / 2^32; once three quarters full, `add` stops
 * inserting and reports every key as new (the scan count then overestimates, never misses).
 */
class Fingerprints {
  static readonly SLOTS = 1 << 18;
  readonly #slots = new Uint32Array(Fingerprints.SLOTS);
  #n = 0;

  clear(): void {
    if (this.#n) this.#slots.fill(0);
    this.#n = 0;
  }

  /** Adds the key; true when it was not there. */
  add(a: Id, b: number, c: Id, d: number): boolean {
    return this.#find(a, b, c, d, true);
  }

  has(a: Id, b: number, c: Id, d: number): boolean {
    return !this.#find(a, b, c, d, false);
  }

  /** Probes for the key's fingerprint: false when found, else (inserting if asked) true. */
  #find(a: Id, b: number, c: Id, d: number, insert: boolean): boolean {
    const f = (mix(mix(mix(hashId(a)) ^ b) ^ hashId(c)) ^ d) >>> 0 || 1;
    const mask = Fingerprints.SLOTS - 1, slots = this.#slots;
    for (let at = f & mask;; at = (at + 1) & mask) {
      const x = slots[at];
      if (x === f) return false;
      if (x !== 0) continue;
      if (!insert) return true;
      if (this.#n >= Fingerprints.SLOTS * 0.75) return true;
      slots[at] = f;
      this.#n++;
      return true;
    }
  }
}

/** murmur3's finalizer: every bit of x affects every bit of the result. */
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return x ^ (x >>> 16);
}

/** An address id as 32 bits: an IPv4 address itself, an IPv6 address's text by FNV-1a. */
function hashId(id: Id): number {
  if (typeof id === "number") return id | 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * Distinct (destination, protocol, port) each source opened: one fingerprint set for every
 * source, and a count per source, instead of a set per source or a string per flow.
 */
class Opened {
  readonly #seen = new Fingerprints();
  readonly #count = new Map<Id, number>();

  clear(): void {
    this.#seen.clear();
    this.#count.clear();
  }

  add(src: Id, i: number, t: FlowTable): void {
    if (!this.#seen.add(src, t.proto(i) << 16 | t.port(i, "dport"), t.addressId(i, "daddr"), 0)) {
      return;
    }
    this.#count.set(src, (this.#count.get(src) ?? 0) + 1);
  }

  count(src: Id): number {
    return this.#count.get(src) ?? 0;
  }
}
