/**
 * One member of the mesh (docs/PROTOCOL.md, section 7). The peers it watches closely (the
 * configured ones, and up to `watchPeers` it exchanges the most traffic with) are probed every
 * `probeIntervalMs` for RTT, jitter and loss, suspect after `suspectAfterMs` of silence (then
 * probed through others too) and dead after `deadAfterMs`. The rest of the fleet is watched
 * SWIM-style at a cost per node that does not grow with the fleet: one member probed per
 * `memberProbeIntervalMs` (directly, then through `indirectProbes` helpers), suspected after
 * two failed rounds, the suspicion spread to the fleet (which the member refutes with a higher
 * incarnation) and turned into a death after a timeout that grows with log10 of the fleet;
 * changes go out to `gossipFanout` random members per `gossipIntervalMs`, and one random member
 * swaps part of the member list with it every `syncIntervalMs` (the whole list while members are
 * still being learned).
 */
import dgram from "node:dgram";
import { parseAddress } from "../net/address.ts";
import { type Cidr, cidrContains } from "../net/cidr.ts";
import { checkHostPort, joinHostPort, parseHostPort } from "../net/hostport.ts";
import {
  decode,
  decodeGossip,
  decodeHello,
  decodeProbe,
  decodeProbeRequest,
  type DropReason,
  encode,
  encodeGossip,
  encodeHello,
  encodeProbe,
  encodeProbeRequest,
  type MemberInfo,
  type MsgTypeName,
  ReplayWindow,
} from "./protocol.ts";

export interface MeshOptions {
  /** UDP address to listen on, "host:port". */
  listen: string;
  key: Uint8Array;
  /** Static peers and seeds, "host:port". */
  peers: string[];
  id: string;
  name: string;
  /** This node's metrics address "host:port", advertised for Prometheus discovery. */
  metrics: string;
  probeIntervalMs: number;
  suspectAfterMs: number;
  deadAfterMs: number;
  /** Helpers asked to probe a suspect peer. */
  indirectProbes: number;
  /** How often queued membership changes go to `gossipFanout` random members. */
  gossipIntervalMs: number;
  /** Members watched closely besides the configured peers (those with the most traffic). */
  watchPeers: number;
  /** SWIM probe period for the members not watched closely: one member per period. */
  memberProbeIntervalMs: number;
  gossipFanout: number;
  /** A change is sent retransmitMult × ceil(log10(members + 1)) times. */
  retransmitMult: number;
  /** A suspicion turns into a death after suspicionMult × max(1, log10(members)) periods. */
  suspicionMult: number;
  /** How often part of the member list is swapped with one random member (push-pull). */
  syncIntervalMs: number;
  /**
   * Networks a member must be in: its mesh address, and its metrics address (which is handed
   * to Prometheus). Empty: any address (tests on loopback only).
   */
  networks: Cidr[];
  /** Most members kept; more are refused and counted. */
  maxMembers: number;
  /** Datagrams stamped further than this from our clock are refused (old replays). */
  maxClockSkewMs: number;
  /** Sends a datagram instead of the UDP socket (tests; start() then binds nothing). */
  transport?: (b: Uint8Array, host: string, port: number) => void;
  /** Time, timers and randomness (the simulator's virtual clock); default the system's. */
  clock?: MeshClock;
}

/** Where a node takes its time, timers and random numbers from. */
export interface MeshClock {
  /** Wall clock, ms since the epoch (timestamps, incarnation, `since`). */
  wallMs(): number;
  /** Monotonic clock, ms (silence, RTT). */
  monoMs(): number;
  /** Calls `f` every `ms` until the returned function is called. */
  every(ms: number, f: () => void): () => void;
  /** Uniform in [0, 1). */
  random(): number;
}

/** The system's clock and timers. */
const systemClock: MeshClock = {
  wallMs: () => Date.now(),
  monoMs: () => performance.now(),
  every(ms, f) {
    const t = setInterval(f, ms);
    return () => clearInterval(t);
  },
  random: Math.random,
};

/** Why a datagram or a member in it was refused, besides the wire format's reasons. */
export type NodeDropReason =
  | DropReason
  | "stale"
  | "bad_member"
  | "outside_networks"
  | "members_full"
  | "unknown_target"
  | "unknown_sender"
  | "socket_error"
  | "send_failed"
  | "tick_failed";

/** Most characters of a member's name (as mesh.name allows). */
const MAX_NAME = 64;

export type PeerState = "alive" | "suspect" | "dead" | "left";

/** RTT histogram bucket upper bounds, in seconds (Prometheus `le`). */
export const RTT_BUCKETS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
];
const LOSS_WINDOW = 200; // probes
/**
 * For SETTLING_MS after this node learns a member, its sync sends the whole member list (and
 * so is answered with the whole of the other's): members that join at the same moment, missing
 * from each other's seeds' lists, find each other within seconds instead of in the long tail of
 * one partial swap a second.
 */
const SETTLING_MS = 2000;
/** Introductions sent per gossip interval (a newcomer introduces itself to the whole fleet). */
const INTRODUCTIONS = 20;

export interface PeerSnapshot {
  id: string;
  name: string;
  mesh: string;
  metrics: string;
  state: PeerState;
  /** ms since the epoch. */
  since: number;
  lastHeardMsAgo: number | null;
  rtt: {
    lastSeconds: number | null;
    ewmaSeconds: number | null;
    jitterSeconds: number | null;
    buckets: number[];
    count: number;
    sumSeconds: number;
  };
  loss: { ratio: number | null; window: number };
  probes: { sent: number; acked: number; indirectAcks: number };
  /** Mesh datagrams exchanged with the peer (the probing's own cost), in bytes. */
  probeBytes: { sent: number; received: number };
  /** Traffic with the peer's address seen by the datapath on watched interfaces. */
  bytes: { sent: number; received: number };
}

export interface MeshSnapshot {
  id: string;
  name: string;
  listen: string;
  peers: PeerSnapshot[];
  dropped: Record<string, number>;
  datagrams: { sent: number; received: number; bytesSent: number; bytesReceived: number };
}

interface Peer {
  id: string;
  name: string;
  mesh: string;
  metrics: string;
  incarnation: number;
  state: PeerState;
  since: number;
  lastHeard: number; // the monotonic clock, ms, or -Infinity
  replay: ReplayWindow;
  rttLast: number | null;
  rttEwma: number | null;
  jitter: number | null;
  buckets: number[];
  rttCount: number;
  rttSum: number;
  /** Outcome of the last probes: true acked, false not (yet). */
  window: { seq: bigint; at: number; acked: boolean }[];
  sent: number;
  acked: number;
  indirectAcks: number;
  bytesSent: number;
  bytesReceived: number;
  /** When a SWIM suspicion of it started here (monotonic ms). */
  suspectAt: number;
  /** `mesh` parsed. */
  to: { hostname: string; port: number };
}

/** A membership change being disseminated, and how many times it was sent. */
interface Update {
  info: MemberInfo;
  sent: number;
}

export class MeshNode {
  readonly #peers = new Map<string, Peer>();
  /** The same members in an array (members are never removed), for random picks. */
  readonly #list: Peer[] = [];
  readonly #byMesh = new Map<string, Peer>();
  /** Seeds not yet known as members, by address. */
  readonly #seeds: Set<string>;
  /** The configured peers' addresses: always watched closely. */
  readonly #configured: Set<string>;
  /** Members watched closely for their traffic (watch()). */
  #busiest = new Set<string>();
  /** The members watched closely (configured or busiest). */
  #watchList: Peer[] = [];
  readonly #dropped: Record<string, number> = {};
  readonly #stats = { sent: 0, received: 0, bytesSent: 0, bytesReceived: 0 };
  /** Indirect probes this node runs for others: its probe seq → whom to tell. */
  readonly #relays = new Map<bigint, { to: string; probeSeq: bigint; sentNs: bigint }>();
  /** Membership changes to disseminate, by member id. */
  readonly #updates = new Map<string, Update>();
  /**
   * Members learned from someone else's list, to whom this node introduces itself, and how
   * many more times (twice: one datagram in ten may be lost).
   */
  readonly #introductions = new Map<Peer, number>();
  /** Per member suspected: the members this node passed the suspicion on to. */
  readonly #told = new Map<string, Set<Peer>>();
  /** Members this node suspected itself, and how many more times it tells them so. */
  readonly #warnings = new Map<Peer, number>();
  /** Members suspect here (their suspicion runs out into a death). */
  readonly #suspects = new Set<Peer>();
  #socket?: dgram.Socket;
  #timers: (() => void)[] = [];
  readonly #clock: MeshClock;
  #seq: bigint;
  /** The last send's timestamp (ms) and as the header carries it (ns), for the next in that ms. */
  #stamp = { ms: NaN, ns: 0n };
  /** Starts at the wall clock's seconds since the epoch (a restarted node outranks what others
   * recall of it) and rises to refute a suspicion. */
  #incarnation: number;
  /** When a member was last learned (monotonic ms). */
  #changedAt = -Infinity;
  /** Where the next gossip or sync's member list starts, so that every member gets its turn. */
  #gossipFrom = 0;
  /** SWIM: members in probe order, the next one, and the round in progress. */
  #order: Peer[] = [];
  #next = 0;
  #round?: { target: Peer; start: number; failures: number; indirect: boolean };
  /** The last error a timer threw (counted as tick_failed). */
  lastError?: string;
  /** Called when a peer's state changes. */
  onChange?: (p: PeerSnapshot, previous: PeerState | undefined) => void;

  constructor(readonly o: MeshOptions) {
    this.#clock = o.clock ?? systemClock;
    // Sequence numbers start from the wall clock in µs, so they keep rising across restarts.
    this.#seq = BigInt(Math.floor(this.#clock.wallMs())) * 1000n;
    this.#incarnation = Math.floor(this.#clock.wallMs() / 1000) >>> 0;
    this.#seeds = new Set(o.peers);
    this.#configured = new Set(o.peers);
  }

  async start(): Promise<void> {
    const guarded = (tick: () => void) => () => {
      try {
        tick();
      } catch (e) {
        // A timer that throws would end the process: count it and go on.
        this.lastError = String(e);
        this.#drop("tick_failed");
      }
    };
    const every = (ms: number, f: () => void) =>
      this.#timers.push(this.#clock.every(ms, guarded(f)));
    every(this.o.probeIntervalMs, () => this.probe());
    // Two steps per period: the probe, then (half a period later) helpers if it was not acked.
    every(this.o.memberProbeIntervalMs / 2, () => this.swim());
    every(this.o.gossipIntervalMs, () => this.gossip());
    every(this.o.syncIntervalMs, () => this.sync());
    if (!this.o.transport) await this.#bind();
    guarded(() => this.#greet())();
  }

  async #bind(): Promise<void> {
    const { hostname: host, port } = parseHostPort(this.o.listen);
    const sock = dgram.createSocket({ type: host.includes(":") ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(port, host, () => {
        sock.off("error", reject);
        resolve();
      });
    });
    sock.on("message", (msg, rinfo) => {
      const from = joinHostPort(rinfo.address.replace(/^::ffff:/, ""), rinfo.port);
      this.receive(new Uint8Array(msg), from);
    });
    sock.on("error", () => this.#drop("socket_error"));
    this.#socket = sock;
  }

  /** The UDP port actually bound (for listen port 0). */
  get port(): number {
    return this.#socket?.address().port ?? 0;
  }

  /** Says goodbye to every peer, then closes the socket. */
  async stop(): Promise<void> {
    for (const cancel of this.#timers) cancel();
    this.#timers = [];
    for (const p of this.#list) {
      if (p.state !== "left" && p.state !== "dead") {
        this.#send("leave", p.mesh, encodeHello(this.#self()));
      }
    }
    if (!this.#socket) return;
    await new Promise((r) => setTimeout(r, 20));
    await new Promise<void>((r) => this.#socket!.close(() => r()));
    this.#socket = undefined;
  }

  /** The members to watch closely for their traffic, busiest first (at most watchPeers). */
  watch(ids: Iterable<string>): void {
    const busiest = new Set<string>();
    for (const id of ids) {
      if (busiest.size >= this.o.watchPeers) break;
      if (this.#peers.has(id)) busiest.add(id);
    }
    this.#busiest = busiest;
    this.#rewatch();
  }

  /** The list of members watched closely, again from the whole list. */
  #rewatch(): void {
    this.#watchList = this.#list.filter((p) => this.#watched(p));
  }

  /** Watched closely: configured, busiest, or any member of a mesh of at most watchPeers. */
  #watched(p: Peer): boolean {
    return this.#peers.size <= this.o.watchPeers || this.#configured.has(p.mesh) ||
      this.#busiest.has(p.id);
  }

  #self() {
    return { name: this.o.name, metrics: this.o.metrics, incarnation: this.#incarnation };
  }

  #drop(reason: NodeDropReason) {
    this.#dropped[reason] = (this.#dropped[reason] ?? 0) + 1;
  }

  #send(type: MsgTypeName, to: string, payload: Uint8Array): bigint {
    const seq = ++this.#seq;
    const ms = Math.floor(this.#clock.wallMs());
    if (ms !== this.#stamp.ms) this.#stamp = { ms, ns: BigInt(ms) * 1_000_000n };
    const d = encode(
      this.o.key,
      { type, sender: this.o.id, seq, timestampNs: this.#stamp.ns },
      payload,
    );
    const peer = this.#byMesh.get(to);
    try {
      const { hostname: host, port } = peer?.to ?? parseHostPort(to);
      if (this.o.transport) this.o.transport(d, host, port);
      else {
        this.#socket?.send(d, port, host, (err) => {
          if (err) this.#drop("send_failed");
        });
      }
      this.#stats.sent++;
      this.#stats.bytesSent += d.length;
      if (peer) peer.bytesSent += d.length;
    } catch {
      this.#drop("send_failed");
    }
    return seq;
  }

  #setState(p: Peer, state: PeerState) {
    if (p.state === state) return;
    const prev = p.state;
    p.state = state;
    p.since = this.#clock.wallMs();
    if (state === "suspect") {
      p.suspectAt = this.#clock.monoMs();
      this.#suspects.add(p);
    } else this.#suspects.delete(p);
    this.onChange?.(this.#snap(p), prev);
  }

  /** Why a member (as hello or gossip gives it) cannot be one, or undefined when it can. */
  #refusal(name: string, mesh: string, metrics: string): NodeDropReason | undefined {
    if (name.length === 0 || name.length > MAX_NAME || /[\p{Cc}]/u.test(name)) return "bad_member";
    for (const addr of [mesh, metrics]) {
      const hp = checkHostPort(addr);
      if (typeof hp === "string") return "bad_member";
      let a: ReturnType<typeof parseAddress>;
      try {
        a = parseAddress(hp.hostname); // a name could point anywhere: members are addresses
      } catch {
        return "bad_member";
      }
      const inside = this.o.networks.length === 0 ||
        this.o.networks.some((n) => cidrContains(n, a.family, a.bytes));
      if (!inside) return "outside_networks";
    }
    return undefined;
  }

  /** The member, learned or updated; undefined (and counted) when it is refused. */
  #learn(
    id: string,
    name: string,
    mesh: string,
    metrics: string,
    incarnation: number,
  ): Peer | undefined {
    let p = this.#peers.get(id);
    if (p && p.name === name && p.mesh === mesh && p.metrics === metrics) {
      // Nothing new to check: these were checked when they were learned.
      if (incarnation > p.incarnation) p.incarnation = incarnation;
      return p;
    }
    const refused = this.#refusal(name, mesh, metrics);
    if (refused) {
      this.#drop(refused);
      return undefined;
    }
    if (!p) {
      if (this.#peers.size >= this.o.maxMembers) {
        this.#drop("members_full");
        return undefined;
      }
      p = {
        id,
        name,
        mesh,
        metrics,
        incarnation,
        state: "alive",
        since: this.#clock.wallMs(),
        lastHeard: this.#clock.monoMs(),
        replay: new ReplayWindow(),
        rttLast: null,
        rttEwma: null,
        jitter: null,
        buckets: RTT_BUCKETS.map(() => 0),
        rttCount: 0,
        rttSum: 0,
        window: [],
        sent: 0,
        acked: 0,
        indirectAcks: 0,
        bytesSent: 0,
        bytesReceived: 0,
        suspectAt: 0,
        to: parseHostPort(mesh),
      };
      this.#peers.set(id, p);
      this.#list.push(p);
      this.#changedAt = p.lastHeard;
      if (this.#peers.size === this.o.watchPeers + 1) this.#rewatch(); // no longer a small mesh
      else if (this.#watched(p)) this.#watchList.push(p);
      this.#byMesh.set(mesh, p);
      this.#seeds.delete(mesh);
      this.onChange?.(this.#snap(p), undefined);
    } else {
      p.name = name;
      p.metrics = metrics;
      if (incarnation > p.incarnation) p.incarnation = incarnation;
      if (mesh !== p.mesh) {
        if (this.#byMesh.get(p.mesh) === p) this.#byMesh.delete(p.mesh);
        p.mesh = mesh;
        p.to = parseHostPort(mesh);
        this.#byMesh.set(mesh, p);
        this.#rewatch();
      }
    }
    return p;
  }

  /** Queues a member's state for dissemination, replacing what was queued about it. */
  #announce(p: Peer | undefined) {
    const info = p ? this.#info(p) : this.#selfInfo();
    const told = this.#told.get(info.id);
    if (told && info.state !== "suspect") {
      this.#told.delete(info.id);
      if (info.state === "alive") { // a refutation: at once to those we told the suspicion
        const payload = encodeGossip([info]).payload;
        for (const q of told) this.#send("update", q.mesh, payload);
      }
    }
    this.#updates.delete(info.id); // the newest last
    this.#updates.set(info.id, { info, sent: 0 });
  }

  #info(p: Peer): MemberInfo {
    return {
      id: p.id,
      name: p.name,
      mesh: p.mesh,
      metrics: p.metrics,
      incarnation: p.incarnation,
      state: p.state,
    };
  }

  /** Heard from the member itself (or a helper's ack about it): alive, whatever was claimed. */
  #heard(p: Peer, now: number) {
    p.lastHeard = now;
    if (this.#round?.target === p) this.#round.failures = -1; // acked
    if (p.state === "alive") return;
    this.#setState(p, "alive");
    this.#announce(p); // back from suspect, dead or left: passed on as alive
  }

  /**
   * One datagram from `from` (HOST:PORT). Never throws: whatever is refused is counted with
   * its reason.
   */
  receive(b: Uint8Array, from: string): void {
    this.#stats.received++;
    this.#stats.bytesReceived += b.length;
    const d = decode(this.o.key, b);
    if (typeof d === "string") return this.#drop(d);
    // A datagram from another time is a replay (our replay windows do not survive a restart).
    const skewMs = Math.abs(this.#clock.wallMs() - Number(d.timestampNs) / 1e6);
    if (skewMs > this.o.maxClockSkewMs) return this.#drop("stale");
    if (d.sender === this.o.id) {
      this.#seeds.delete(from); // a seed that is this very node: no more hellos to it
      return this.#drop("own");
    }
    const known = this.#peers.get(d.sender);
    if (known && !known.replay.accept(d.seq)) return this.#drop("replay");
    try {
      this.#handle(d.type, d.sender, d.payload, from, d.seq, known);
    } catch {
      this.#drop("bad_payload");
    }
  }

  #handle(
    type: MsgTypeName,
    sender: string,
    payload: Uint8Array,
    from: string,
    seq: bigint,
    known: Peer | undefined,
  ) {
    const now = this.#clock.monoMs();
    let p = known;
    if (type === "hello" || type === "leave") {
      const h = decodeHello(payload);
      const returning = known !== undefined && known.state !== "alive";
      p = this.#learn(sender, h.name, from, h.metrics, h.incarnation);
      if (!p) return;
      if (!known) p.replay.accept(seq);
      if (type === "leave") {
        if (p.state !== "left") this.#setState(p, "left");
        return;
      }
      if (known && !returning) this.#send("gossip", from, this.#memberChunk());
      else this.#sendAll(from); // a newcomer (or one back) learns the whole fleet at once
    }
    if (type === "gossip" || type === "update" || type === "sync") {
      const members = decodeGossip(payload);
      if (!known) {
        // A list is believed only from a member, whose datagrams the replay window checks: one
        // not known yet must name itself in it (and is learned first), else it is refused and
        // asked to say hello.
        const own = members.find((m) => m.id === sender);
        if (own) this.#merge(own, type === "update", sender, from, seq, now);
        if (!this.#peers.has(sender)) {
          this.#drop("unknown_sender");
          this.#send("hello", from, encodeHello(this.#self()));
          return;
        }
      }
      for (const m of members) {
        if (known || m.id !== sender) this.#merge(m, type === "update", sender, from, seq, now);
      }
      p = this.#peers.get(sender);
    }
    if (!p) {
      // Not a member yet: introduce ourselves, so that it says hello back. A probe is acked
      // too (to where it came from): it may know us before we know it.
      if (type === "probe") {
        const b = decodeProbe(payload);
        this.#send(
          "ack",
          from,
          encodeProbe({ ...b, about: this.o.id, incarnation: this.#incarnation }),
        );
      }
      this.#send("hello", from, encodeHello(this.#self()));
      return;
    }
    p.bytesReceived += payload.length + 72; // header and MAC too
    this.#heard(p, now);
    switch (type) {
      case "probe": {
        const b = decodeProbe(payload);
        this.#send(
          "ack",
          from,
          encodeProbe({ ...b, about: this.o.id, incarnation: this.#incarnation }),
        );
        break;
      }
      case "ack": {
        const b = decodeProbe(payload);
        const relay = this.#relays.get(b.probeSeq);
        if (relay) { // our indirect probe for someone else answered: pass it on
          this.#relays.delete(b.probeSeq);
          this.#send(
            "ack",
            relay.to,
            encodeProbe({ probeSeq: relay.probeSeq, sentNs: relay.sentNs, about: sender }),
          );
          break;
        }
        if (b.about !== undefined && b.about !== sender) { // a helper reached `about` for us
          const target = this.#peers.get(b.about);
          if (target) {
            target.indirectAcks++;
            if (target.state !== "left") this.#heard(target, now);
          }
          break;
        }
        this.#acked(p, b.probeSeq, b.sentNs);
        break;
      }
      case "probeRequest": {
        const r = decodeProbeRequest(payload);
        // Only a member we know, at the address we know: a request never points us elsewhere.
        const target = this.#peers.get(r.target);
        if (!target || target.state === "left") return this.#drop("unknown_target");
        const probeSeq = this.#seq + 1n;
        this.#relays.set(probeSeq, { to: from, probeSeq: r.probeSeq, sentNs: r.sentNs });
        if (this.#relays.size > 1000) this.#relays.delete(this.#relays.keys().next().value!);
        this.#send("probe", target.mesh, encodeProbe({ probeSeq, sentNs: r.sentNs }));
        break;
      }
      case "sync": // push-pull: our part of the list back
        this.#send("gossip", from, this.#memberChunk());
        break;
    }
  }

  /**
   * One member as a list claims it (SWIM's rules): a higher incarnation wins; at the same
   * incarnation suspect beats alive and dead beats suspect. A claim that this node is suspect
   * or dead is refuted with a higher incarnation. What is news is passed on.
   */
  #merge(m: MemberInfo, news: boolean, sender: string, from: string, seq: bigint, now: number) {
    if (m.id === this.o.id) {
      if ((m.state === "suspect" || m.state === "dead") && m.incarnation >= this.#incarnation) {
        // At the top it stays there: a wrap to 0 would lose every refutation from then on.
        this.#incarnation = Math.min(m.incarnation + 1, 0xffffffff);
        this.#announce(undefined);
      }
      return;
    }
    const q = this.#peers.get(m.id);
    if (!q) {
      // Not a member to learn: one that left, or one a list (old news) or the member itself
      // says is dead. A death in an update is news: learned as such, and passed on.
      if (m.state === "left" || (m.state === "dead" && (!news || m.id === sender))) return;
      // The sender is reached where its datagram came from; others as the list says.
      const learned = this.#learn(
        m.id,
        m.name,
        m.id === sender ? from : m.mesh,
        m.metrics,
        m.incarnation,
      );
      if (!learned) return;
      learned.lastHeard = now; // give it the full timeout to answer our probes
      if (m.id === sender) learned.replay.accept(seq);
      else this.#introductions.set(learned, 2); // it may not know us: we tell it who we are
      if (m.state === "dead") {
        this.#setState(learned, "dead");
        this.#announce(learned);
      }
      return;
    }
    const newer = m.incarnation > q.incarnation;
    if (m.id === sender) { // what a member says of itself: heard directly (the caller's job)
      if (newer && m.state === "alive") {
        q.incarnation = m.incarnation;
        this.#announce(q); // a refutation: passed on
      }
      return;
    }
    if (!newer && m.incarnation !== q.incarnation) return;
    if (m.state === "alive") {
      if (!newer) return;
      q.incarnation = m.incarnation;
      if (q.state === "suspect" || q.state === "dead") this.#setState(q, "alive");
      this.#announce(q);
      return;
    }
    if (m.state === "left") {
      q.incarnation = m.incarnation;
      if (q.state !== "left") this.#setState(q, "left");
      return;
    }
    if (this.#watched(q) && now - q.lastHeard < this.o.suspectAfterMs) return; // we hear it
    if (m.state === "suspect" && (newer || q.state === "alive")) {
      q.incarnation = m.incarnation;
      if (q.state === "alive") {
        this.#setState(q, "suspect");
        this.#announce(q);
      }
    } else if (m.state === "dead" && q.state !== "dead" && q.state !== "left") {
      q.incarnation = m.incarnation;
      this.#setState(q, "dead");
      this.#announce(q);
    }
  }

  #acked(p: Peer, probeSeq: bigint, sentNs: bigint) {
    let w: Peer["window"][number] | undefined;
    for (let i = p.window.length - 1; i >= 0 && !w; i--) { // the newest first: acks come soon
      if (p.window[i].seq === probeSeq) w = p.window[i];
    }
    if (!w || w.acked) return;
    w.acked = true;
    p.acked++;
    const rtt = Math.max(0, (this.#clock.monoMs() * 1e6 - Number(sentNs)) / 1e9);
    if (p.rttLast !== null) {
      const d = Math.abs(rtt - p.rttLast);
      p.jitter = p.jitter === null ? d : p.jitter + (d - p.jitter) / 16; // RFC 3550
    }
    p.rttLast = rtt;
    p.rttEwma = p.rttEwma === null ? rtt : p.rttEwma + (rtt - p.rttEwma) / 8;
    p.rttCount++;
    p.rttSum += rtt;
    const b = RTT_BUCKETS.findIndex((le) => rtt <= le);
    if (b >= 0) p.buckets[b]++;
  }

  #selfInfo(): MemberInfo {
    return {
      id: this.o.id,
      name: this.o.name,
      mesh: this.o.listen,
      metrics: this.o.metrics,
      incarnation: this.#incarnation,
      state: "alive",
    };
  }

  /** Ourselves, then as many others as fit from a rotating start (long lists go in turns). */
  #memberChunk(): Uint8Array {
    const others = this.#list;
    const from = others.length ? this.#gossipFrom % others.length : 0;
    const { payload, count } = encodeGossip([
      this.#selfInfo(),
      // At most 46 entries fit (24 bytes each at least): no need to look further.
      ...[
        ...others.slice(from, from + 46),
        ...others.slice(0, Math.max(0, from + 46 - others.length)),
      ].map((p) => this.#info(p)),
    ]);
    this.#gossipFrom = from + Math.max(1, count - 1);
    return payload;
  }

  /** The whole member list to `to`, in as many datagrams as it takes. */
  #sendAll(to: string, type: "gossip" | "sync" = "gossip") {
    const self = this.#selfInfo();
    for (let at = 0; at === 0 || at < this.#list.length;) {
      const batch = this.#list.slice(at, at + 46).map((p) => this.#info(p));
      const { payload, count } = encodeGossip([self, ...batch]);
      this.#send(type, to, payload);
      at += Math.max(1, count - 1);
    }
  }

  /** Up to `n` distinct random members that are neither `not` nor dead nor gone. */
  #pick(n: number, not?: Peer): Peer[] {
    const out = new Set<Peer>();
    for (let tries = 0; out.size < n && tries < 4 * n + 8 && this.#list.length; tries++) {
      const h = this.#list[Math.floor(this.#clock.random() * this.#list.length)];
      if (h !== not && (h.state === "alive" || h.state === "suspect")) out.add(h);
    }
    return [...out];
  }

  #probeRequests(p: Peer, sentNs: bigint, n: number) {
    for (const h of this.#pick(n, p)) {
      this.#send(
        "probeRequest",
        h.mesh,
        encodeProbeRequest({ target: p.id, address: p.mesh, probeSeq: this.#seq + 1n, sentNs }),
      );
    }
  }

  /** One probe round of the watched peers: each probed, silence turned into suspicion and death. */
  probe(): void {
    const now = this.#clock.monoMs();
    for (const p of this.#watchList) {
      if (p.state === "left") continue;
      const sentNs = BigInt(Math.round(now * 1e6));
      const seq = this.#send("probe", p.mesh, encodeProbe({ probeSeq: this.#seq + 1n, sentNs }));
      p.sent++;
      p.window.push({ seq, at: now, acked: false });
      if (p.window.length > LOSS_WINDOW) p.window.shift();
      const silent = now - p.lastHeard;
      if (silent > this.o.deadAfterMs) {
        if (p.state !== "dead") {
          this.#setState(p, "dead");
          this.#announce(p);
        }
      } else if (silent > this.o.suspectAfterMs) {
        this.#setState(p, "suspect");
        this.#probeRequests(p, sentNs, this.o.indirectProbes);
      }
    }
  }

  /**
   * One half of a SWIM period over the members not watched closely. First half: the round
   * that ends is judged (two failed rounds in a row make the member suspect, to the fleet),
   * expired suspicions become deaths, and the next member is probed. Second half: the probe
   * not acked yet goes out again, and through `indirectProbes` helpers.
   */
  swim(): void {
    const now = this.#clock.monoMs();
    for (const [p, left] of this.#warnings) {
      if (p.state === "suspect") {
        this.#send("update", p.mesh, encodeGossip([this.#info(p)]).payload);
      }
      if (left <= 1 || p.state !== "suspect") this.#warnings.delete(p);
      else this.#warnings.set(p, left - 1);
    }
    const r = this.#round;
    if (r && !r.indirect) {
      r.indirect = true;
      if (r.failures >= 0) {
        const sentNs = BigInt(Math.round(now * 1e6));
        this.#send("probe", r.target.mesh, encodeProbe({ probeSeq: this.#seq + 1n, sentNs }));
        this.#probeRequests(r.target, sentNs, this.o.indirectProbes);
      }
      return;
    }
    let target: Peer | undefined;
    let failures = 0;
    if (r && r.failures >= 0) { // not acked this round
      if (r.failures + 1 >= 2) {
        if (r.target.state === "alive") {
          this.#setState(r.target, "suspect");
          this.#announce(r.target);
          // Told directly too (three times, half a period apart), so that it refutes soon if
          // it lives.
          this.#warnings.set(r.target, 3);
        }
      } else if (r.target.state === "alive" || r.target.state === "suspect") {
        target = r.target; // once more before suspecting it
        failures = r.failures + 1;
      }
    }
    this.#expireSuspicions(now);
    target ??= this.#nextTarget();
    this.#round = undefined;
    if (!target) return;
    this.#round = { target, start: now, failures, indirect: false };
    const sentNs = BigInt(Math.round(now * 1e6));
    this.#send("probe", target.mesh, encodeProbe({ probeSeq: this.#seq + 1n, sentNs }));
  }

  #expireSuspicions(now: number) {
    const periods = this.o.suspicionMult * Math.max(1, Math.log10(this.#peers.size + 1));
    const timeout = periods * this.o.memberProbeIntervalMs;
    for (const p of this.#suspects) {
      if (this.#watched(p) || now - p.suspectAt < timeout) continue;
      this.#setState(p, "dead");
      this.#announce(p);
    }
  }

  /** The next member in a shuffled round-robin over those not watched closely. */
  #nextTarget(): Peer | undefined {
    for (let pass = 0; pass < 2; pass++) {
      while (this.#next < this.#order.length) {
        const p = this.#order[this.#next++];
        if ((p.state === "alive" || p.state === "suspect") && !this.#watched(p)) return p;
      }
      if (pass === 1) break;
      this.#order = [...this.#list];
      for (let i = this.#order.length - 1; i > 0; i--) { // Fisher-Yates
        const j = Math.floor(this.#clock.random() * (i + 1));
        [this.#order[i], this.#order[j]] = [this.#order[j], this.#order[i]];
      }
      this.#next = 0;
    }
    return undefined;
  }

  /**
   * Queued membership changes to `gossipFanout` random members; introductions (an update of
   * ourselves alone) to up to INTRODUCTIONS members learned from others' lists.
   */
  gossip(): void {
    if (this.#introductions.size) {
      const self = encodeGossip([this.#selfInfo()]).payload;
      let n = 0;
      for (const [p, left] of this.#introductions) {
        if (n++ >= INTRODUCTIONS) break;
        this.#introductions.delete(p);
        if (p.state !== "alive" && p.state !== "suspect") continue;
        this.#send("update", p.mesh, self);
        if (left > 1) this.#introductions.set(p, left - 1); // again, after the others
      }
    }
    if (this.#updates.size) {
      // The newest first: as many as fit of the last 64 queued.
      const queued = [...this.#updates.values()].slice(-64).reverse();
      const { payload, count } = encodeGossip(queued.map((u) => u.info));
      const targets = this.#pick(this.o.gossipFanout);
      for (const p of targets) this.#send("update", p.mesh, payload);
      // Sent retransmitMult × ceil(log10(members + 1)) times, as many as the fleet is now.
      const limit = this.o.retransmitMult * Math.ceil(Math.log10(this.#peers.size + 2));
      for (const u of queued.slice(0, count)) {
        u.sent += targets.length;
        if (u.sent >= limit) this.#updates.delete(u.info.id);
        if (u.info.state !== "suspect") continue;
        // Who heard the suspicion from us hears its refutation from us too (#announce).
        const told = this.#told.get(u.info.id) ?? new Set<Peer>();
        for (const p of targets) told.add(p);
        this.#told.set(u.info.id, told);
      }
    }
  }

  /**
   * Push-pull: part of our member list to one random member, which answers with part of its
   * (the whole of both while this node is still learning members, SETTLING_MS); hellos to the
   * seeds not yet members.
   */
  sync(): void {
    const [p] = this.#pick(1);
    if (p && this.#clock.monoMs() - this.#changedAt < SETTLING_MS) this.#sendAll(p.mesh, "sync");
    else if (p) this.#send("sync", p.mesh, this.#memberChunk());
    this.#greet();
  }

  #greet() {
    for (const s of this.#seeds) this.#send("hello", s, encodeHello(this.#self()));
  }
  /** The UDP ports of the mesh protocol: ours and the peers'. */
  meshPorts(): Set<number> {
    return new Set([
      this.port,
      ...this.#list.map((p) => p.to.port),
    ]);
  }

  /** Each peer's IP address → its id, to attribute the datapath's flows to peers. */
  peerAddresses(): Map<string, string> {
    return new Map(this.#list.map((p) => [p.to.hostname, p.id]));
  }

  #snap(p: Peer, traffic?: { sent: number; received: number }): PeerSnapshot {
    const now = this.#clock.monoMs();
    // Loss over probes old enough to have been answered (3 probe intervals).
    const settled = p.window.filter((w) => now - w.at > 3 * this.o.probeIntervalMs);
    const lost = settled.filter((w) => !w.acked).length;
    return {
      id: p.id,
      name: p.name,
      mesh: p.mesh,
      metrics: p.metrics,
      state: p.state,
      since: p.since,
      lastHeardMsAgo: Number.isFinite(p.lastHeard) ? Math.round(now - p.lastHeard) : null,
      rtt: {
        lastSeconds: p.rttLast,
        ewmaSeconds: p.rttEwma,
        jitterSeconds: p.jitter,
        buckets: [...p.buckets],
        count: p.rttCount,
        sumSeconds: p.rttSum,
      },
      loss: { ratio: settled.length ? lost / settled.length : null, window: settled.length },
      probes: { sent: p.sent, acked: p.acked, indirectAcks: p.indirectAcks },
      probeBytes: { sent: p.bytesSent, received: p.bytesReceived },
      bytes: traffic ?? { sent: 0, received: 0 },
    };
  }

  /** Everything, for the API and /metrics; `traffic` is the datapath's bytes per peer id. */
  snapshot(traffic: Map<string, { sent: number; received: number }> = new Map()): MeshSnapshot {
    return {
      id: this.o.id,
      name: this.o.name,
      listen: this.o.listen,
      peers: [...this.#peers.values()].map((p) => this.#snap(p, traffic.get(p.id))),
      dropped: { ...this.#dropped },
      datagrams: { ...this.#stats },
    };
  }
}
