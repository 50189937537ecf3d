/**
 * One member of the mesh: probes every known peer each interval, measures RTT, jitter and
 * loss, declares a peer suspect after `suspectAfterMs` of silence (then asks others to probe
 * it: indirect probes) and dead after `deadAfterMs`, and learns members through hello and
 * gossip. Liveness comes from what this node hears itself, directly or through a helper, never
 * from what others claim, so one lossy link cannot make a healthy peer "dead" elsewhere.
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
  gossipIntervalMs: number;
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
export const systemClock: MeshClock = {
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
}

export class MeshNode {
  readonly #peers = new Map<string, Peer>();
  /** Seeds not yet known as members, by address. */
  readonly #seeds: Set<string>;
  readonly #dropped: Record<string, number> = {};
  readonly #stats = { sent: 0, received: 0, bytesSent: 0, bytesReceived: 0 };
  /** Indirect probes this node runs for others: its probe seq → whom to tell. */
  readonly #relays = new Map<bigint, { to: string; probeSeq: bigint; sentNs: bigint }>();
  #socket?: dgram.Socket;
  #timers: (() => void)[] = [];
  readonly #clock: MeshClock;
  #seq: bigint;
  /** Seconds since the epoch at start: a restarted node outranks what others recall of it. */
  readonly #incarnation: number;
  /** Where the next gossip's member list starts, so that every member gets its turn. */
  #gossipFrom = 0;
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
    this.#timers.push(this.#clock.every(this.o.probeIntervalMs, guarded(() => this.probe())));
    this.#timers.push(this.#clock.every(this.o.gossipIntervalMs, guarded(() => this.gossip())));
    if (!this.o.transport) await this.#bind();
    guarded(() => this.gossip())();
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
    for (const p of this.#peers.values()) {
      if (p.state !== "left") this.#send("leave", p.mesh, encodeHello(this.#self()));
    }
    if (!this.#socket) return;
    await new Promise((r) => setTimeout(r, 20));
    await new Promise<void>((r) => this.#socket!.close(() => r()));
    this.#socket = undefined;
  }

  #self() {
    return { name: this.o.name, metrics: this.o.metrics, incarnation: this.#incarnation };
  }

  #drop(reason: NodeDropReason) {
    this.#dropped[reason] = (this.#dropped[reason] ?? 0) + 1;
  }

  #send(type: MsgTypeName, to: string, payload: Uint8Array): bigint {
    const seq = ++this.#seq;
    const d = encode(this.o.key, {
      type,
      sender: this.o.id,
      seq,
      timestampNs: BigInt(Math.floor(this.#clock.wallMs())) * 1_000_000n,
    }, payload);
    try {
      const { hostname: host, port } = parseHostPort(to);
      if (this.o.transport) this.o.transport(d, host, port);
      else {
        this.#socket?.send(d, port, host, (err) => {
          if (err) this.#drop("send_failed");
        });
      }
      this.#stats.sent++;
      this.#stats.bytesSent += d.length;
      const peer = this.#byAddress(to);
      if (peer) peer.bytesSent += d.length;
    } catch {
      this.#drop("send_failed");
    }
    return seq;
  }

  #byAddress(addr: string): Peer | undefined {
    for (const p of this.#peers.values()) if (p.mesh === addr) return p;
    return undefined;
  }

  #setState(p: Peer, state: PeerState) {
    if (p.state === state) return;
    const prev = p.state;
    p.state = state;
    p.since = this.#clock.wallMs();
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
    const refused = this.#refusal(name, mesh, metrics);
    if (refused) {
      this.#drop(refused);
      return undefined;
    }
    let p = this.#peers.get(id);
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
      };
      this.#peers.set(id, p);
      this.#seeds.delete(mesh);
      this.onChange?.(this.#snap(p), undefined);
    } else {
      p.name = name;
      p.metrics = metrics;
      if (incarnation > p.incarnation) p.incarnation = incarnation;
      if (mesh !== p.mesh) p.mesh = mesh;
    }
    return p;
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
    const skewMs = Math.abs(this.#clock.wallMs() - Number(d.timestampNs / 1_000_000n));
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
      p = this.#learn(sender, h.name, from, h.metrics, h.incarnation);
      if (!p) return;
      if (!known) p.replay.accept(seq);
      if (type === "leave") return this.#setState(p, "left");
      this.#send("gossip", from, encodeGossip(this.#members()).payload);
    }
    if (type === "gossip") {
      // Gossip names its sender too: a node learns the members, the sender among them.
      for (const m of decodeGossip(payload)) {
        if (m.id === this.o.id) continue;
        if (m.state === "left") {
          const q = this.#peers.get(m.id);
          if (q && m.incarnation >= q.incarnation) this.#setState(q, "left");
          continue;
        }
        if (!this.#peers.has(m.id)) {
          // The sender is reached where its datagram came from; others as gossip says.
          const q = this.#learn(
            m.id,
            m.name,
            m.id === sender ? from : m.mesh,
            m.metrics,
            m.incarnation,
          );
          if (!q) continue;
          q.lastHeard = now; // give it the full timeout to answer our probes
          if (m.id === sender) q.replay.accept(seq);
        }
      }
      p = this.#peers.get(sender);
    }
    if (!p) {
      // Not a member yet: introduce ourselves, so that it says hello back.
      this.#send("hello", from, encodeHello(this.#self()));
      return;
    }
    p.lastHeard = now;
    p.bytesReceived += payload.length + 72; // header and MAC too
    if (p.state !== "alive") this.#setState(p, "alive");
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
            target.lastHeard = now;
            target.indirectAcks++;
            if (target.state !== "alive" && target.state !== "left") {
              this.#setState(target, "alive");
            }
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
      case "gossip": // handled above
        break;
    }
  }

  #acked(p: Peer, probeSeq: bigint, sentNs: bigint) {
    const w = p.window.find((x) => x.seq === probeSeq);
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

  #members(): MemberInfo[] {
    const self: MemberInfo = {
      id: this.o.id,
      name: this.o.name,
      mesh: this.o.listen,
      metrics: this.o.metrics,
      incarnation: this.#incarnation,
      state: "alive",
    };
    return [
      self,
      ...[...this.#peers.values()].map((p) => ({
        id: p.id,
        name: p.name,
        mesh: p.mesh,
        metrics: p.metrics,
        incarnation: p.incarnation,
        state: p.state,
      })),
    ];
  }

  /** One probe round: every member probed, silence turned into suspicion and death. */
  probe(): void {
    const now = this.#clock.monoMs();
    for (const p of this.#peers.values()) {
      if (p.state === "left") continue;
      const sentNs = BigInt(Math.round(now * 1e6));
      const seq = this.#send("probe", p.mesh, encodeProbe({ probeSeq: this.#seq + 1n, sentNs }));
      p.sent++;
      p.window.push({ seq, at: now, acked: false });
      if (p.window.length > LOSS_WINDOW) p.window.shift();
      const silent = now - p.lastHeard;
      if (silent > this.o.deadAfterMs) {
        this.#setState(p, "dead");
      } else if (silent > this.o.suspectAfterMs) {
        this.#setState(p, "suspect");
        const helpers = [...this.#peers.values()].filter((h) => h !== p && h.state === "alive");
        for (
          const h of helpers.sort(() => this.#clock.random() - 0.5).slice(0, this.o.indirectProbes)
        ) {
          this.#send(
            "probeRequest",
            h.mesh,
            encodeProbeRequest({ target: p.id, address: p.mesh, probeSeq: this.#seq + 1n, sentNs }),
          );
        }
      }
    }
  }

  /** One gossip round: members to every peer, hellos to seeds not yet members. */
  gossip(): void {
    // Ourselves first, then the others from a rotating start: lists longer than one datagram
    // go out in turns.
    const [self, ...others] = this.#members();
    const from = others.length ? this.#gossipFrom % others.length : 0;
    const { payload: g, count } = encodeGossip([
      self,
      ...others.slice(from),
      ...others.slice(0, from),
    ]);
    this.#gossipFrom = from + Math.max(1, count - 1);
    for (const p of this.#peers.values()) if (p.state !== "left") this.#send("gossip", p.mesh, g);
    for (const s of this.#seeds) this.#send("hello", s, encodeHello(this.#self()));
  }

  /** The UDP ports of the mesh protocol: ours and the peers'. */
  meshPorts(): Set<number> {
    return new Set([
      this.port,
      ...[...this.#peers.values()].map((p) => parseHostPort(p.mesh).port),
    ]);
  }

  /** Each peer's IP address → its id, to attribute the datapath's flows to peers. */
  peerAddresses(): Map<string, string> {
    return new Map([...this.#peers.values()].map((p) => [parseHostPort(p.mesh).hostname, p.id]));
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
