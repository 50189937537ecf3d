/**
 * The mesh inside the appliance: reads the key and node id, starts the node, and every
 * snapshot attributes traffic to peers and reports mesh health.
 */
import { hostname } from "node:os";
import { parseAddress } from "../net/address.ts";
import { type Cidr, cidrContains, parseCidr } from "../net/cidr.ts";
import { joinHostPort, parseHostPort } from "../net/hostport.ts";
import type { Config } from "../config/schema.ts";
import type { StateStore } from "../state/store.ts";
import { MeshNode, type MeshOptions, type MeshSnapshot } from "./node.ts";
import { nodeIdHex } from "./protocol.ts";
import { peerTraffic } from "./traffic.ts";

const WILDCARD = new Set(["0.0.0.0", "::", ""]);

/** The networks of this box's interfaces (zones dropped), each with the interface's name. */
function connectedNetworks(): Cidr[] {
  return Deno.networkInterfaces().flatMap((i) => {
    try {
      return [parseCidr(i.cidr.replace(/%[^/]*/, ""))];
    } catch {
      return [];
    }
  });
}

/**
 * The networks mesh members must be in: `mesh.networks`, else the connected network each
 * configured peer is on (or the peer's own address when none is), else, with no peer
 * configured, every connected network of this box.
 */
export function meshNetworks(c: Config): Cidr[] {
  if (c.mesh.networks.length) return c.mesh.networks.map(parseCidr);
  const connected = connectedNetworks();
  if (c.mesh.peers.length === 0) return connected;
  const out = new Map<string, Cidr>();
  for (const peer of c.mesh.peers) {
    let a: ReturnType<typeof parseAddress>;
    try {
      a = parseAddress(parseHostPort(peer).hostname);
    } catch {
      continue; // a peer given by name: its members' addresses must be in another's network
    }
    const net = connected.find((n) => cidrContains(n, a.family, a.bytes)) ??
      parseCidr(parseHostPort(peer).hostname);
    out.set(net.text, net);
  }
  return [...out.values()];
}

/** This node's id: 16 random bytes kept in the state directory, so restarts keep identity. */
function nodeId(stateDir: string): string {
  const file = `${stateDir}/node-id`;
  try {
    const id = Deno.readTextFileSync(file).trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const id = nodeIdHex(crypto.getRandomValues(new Uint8Array(16)));
  Deno.mkdirSync(stateDir, { recursive: true });
  Deno.writeTextFileSync(file, `${id}\n`);
  return id;
}

function readMeshKey(file: string): Uint8Array {
  if (!file) throw new Error("mesh.key_file is not set: the mesh needs a shared key");
  const st = Deno.statSync(file);
  if (st.mode !== null && (st.mode & 0o077) !== 0) {
    throw new Error(`mesh key ${file} is readable by others: chmod 600 ${file}`);
  }
  const key = Deno.readFileSync(file);
  if (key.length < 32) throw new Error(`mesh key ${file} has ${key.length} bytes; it needs ≥ 32`);
  return key;
}

/** The metrics address this node advertises to the fleet's Prometheus. */
function advertisedMetrics(c: Config): string {
  if (c.mesh.advertise) return c.mesh.advertise;
  const api = parseHostPort(c.api.listen);
  if (!WILDCARD.has(api.hostname)) return c.api.listen;
  const mesh = parseHostPort(c.mesh.listen);
  const host = WILDCARD.has(mesh.hostname) ? hostname() : mesh.hostname;
  return joinHostPort(host, api.port);
}

/** The node's timings, fanouts and bounds as a configuration's mesh section sets them. */
export function meshTimings(m: Config["mesh"]) {
  return {
    probeIntervalMs: m.probe_interval_ms,
    suspectAfterMs: m.suspect_after_ms,
    deadAfterMs: m.dead_after_ms,
    indirectProbes: m.indirect_probes,
    gossipIntervalMs: m.gossip_interval_ms,
    watchPeers: m.watch_peers,
    memberProbeIntervalMs: m.member_probe_interval_ms,
    gossipFanout: m.gossip_fanout,
    retransmitMult: m.retransmit_mult,
    suspicionMult: m.suspicion_mult,
    syncIntervalMs: m.sync_interval_ms,
    maxMembers: m.max_members,
    maxClockSkewMs: m.max_clock_skew_s * 1000,
  } satisfies Partial<MeshOptions>;
}

export class MeshService {
  last?: MeshSnapshot;

  constructor(readonly node: MeshNode, private readonly store: StateStore) {
    this.node.onChange = (p, previous) =>
      store.events.append("peer", { id: p.id, name: p.name, state: p.state, previous });
  }

  /** The mesh of a configuration: its key, this node's id (kept in the state directory). */
  static fromConfig(c: Config, store: StateStore): MeshService {
    const metrics = advertisedMetrics(c);
    if (new TextEncoder().encode(metrics).length > 255) {
      throw new Error(`the metrics address ${metrics.slice(0, 40)}… is longer than 255 bytes`);
    }
    return new MeshService(
      new MeshNode({
        listen: c.mesh.listen,
        key: readMeshKey(c.mesh.key_file),
        peers: [...c.mesh.peers],
        id: nodeId(c.state_dir),
        name: c.mesh.name || hostname(),
        metrics,
        ...meshTimings(c.mesh),
        networks: meshNetworks(c),
      }),
      store,
    );
  }

  async start(): Promise<void> {
    await this.node.start();
  }

  /** Per snapshot: traffic per peer from the flows, and the mesh's health. */
  refresh(): MeshSnapshot {
    const flows = this.store.current?.flows;
    const traffic = flows
      ? peerTraffic(flows, this.node.peerAddresses(), this.node.meshPorts())
      : new Map();
    // The members this box exchanges the most traffic with are watched closely.
    this.node.watch(
      [...traffic].sort(([, a], [, b]) => b.sent + b.received - a.sent - a.received)
        .filter(([, t]) => t.sent + t.received > 0).map(([id]) => id),
    );
    const m = this.node.snapshot(traffic);
    this.last = m;
    const live = m.peers.filter((p) => p.state !== "left");
    const bad = live.filter((p) => p.state !== "alive");
    if (live.length === 0) {
      this.store.health.set("mesh", "degraded", "no peer known yet");
    } else if (bad.length) {
      this.store.health.set(
        "mesh",
        "degraded",
        bad.map((p) => `${p.name} ${p.state} since ${new Date(p.since).toISOString()}`).join("; "),
      );
    } else {
      this.store.health.set("mesh", "healthy", `${live.length} peers alive`);
    }
    return m;
  }

  /** Prometheus HTTP service discovery: this node and every known member. */
  discovery(): { targets: string[]; labels: Record<string, string> }[] {
    const o = this.node.o;
    const self = {
      targets: [o.metrics],
      labels: { x0tta6bl4_node: o.name, x0tta6bl4_node_id: o.id },
    };
    return [
      self,
      ...(this.last?.peers ?? []).filter((p) => p.state !== "left").map((p) => ({
        targets: [p.metrics],
        labels: { x0tta6bl4_node: p.name, x0tta6bl4_node_id: p.id },
      })),
    ];
  }

  stop(): Promise<void> {
    return this.node.stop();
  }
}
