/** The mesh's families on /metrics: each peer's state, probes, RTT and traffic; drops. */
import type { Families, SnapshotCollector } from "../metrics/collector.ts";
import type { Snapshot } from "../state/snapshot.ts";
import { type PeerState, RTT_BUCKETS } from "./node.ts";

const PEER_STATES: readonly PeerState[] = ["alive", "suspect", "dead", "left"];

/** Per peer: state, RTT, jitter, loss, probes and bytes; datagrams dropped, by reason. */
export class MeshMetrics implements SnapshotCollector {
  readonly #state;
  readonly #up;
  readonly #rtt;
  readonly #jitter;
  readonly #loss;
  readonly #probes;
  readonly #probeBytes;
  readonly #bytes;
  readonly #dropped;

  constructor(f: Families) {
    this.#state = f.gauge(
      "mesh_peer_state",
      "1 for a mesh peer's current state (alive, suspect, dead, left), 0 for the others.",
      ["peer", "state"],
    );
    this.#up = f.gauge("mesh_peer_up", "1 when a mesh peer answers (alive), else 0.", ["peer"]);
    this.#rtt = f.gauge(
      "mesh_peer_rtt_ewma_seconds",
      "Smoothed round-trip time to a mesh peer.",
      ["peer"],
    );
    this.#jitter = f.gauge(
      "mesh_peer_jitter_seconds",
      "RTT jitter to a mesh peer (RFC 3550).",
      ["peer"],
    );
    this.#loss = f.gauge(
      "mesh_peer_loss_ratio",
      "Share of the last 200 probes to a mesh peer that got no answer.",
      ["peer"],
    );
    this.#probes = f.counters(
      ["peer"],
      ["mesh_probes_sent_total", "Probes sent to a mesh peer."],
      ["mesh_probe_acks_total", "Probe answers received from a mesh peer."],
    );
    this.#probeBytes = f.counter(
      "mesh_probe_bytes_total",
      "Bytes of mesh protocol datagrams exchanged with a peer (the probing's own cost).",
      ["peer", "direction"],
    );
    this.#bytes = f.counter(
      "mesh_peer_bytes_total",
      "Bytes the datapath saw exchanged with a mesh peer's address on watched interfaces.",
      ["peer", "direction"],
    );
    this.#dropped = f.counter(
      "mesh_datagrams_dropped_total",
      "Mesh datagrams dropped, by reason (bad MAC, replay, truncated…).",
      ["reason"],
    );
  }

  write(s: Snapshot): void {
    if (!s.mesh) return;
    const peer = [""], pair = ["", ""];
    for (const p of s.mesh.peers) {
      peer[0] = pair[0] = p.name;
      for (const state of PEER_STATES) {
        pair[1] = state;
        this.#state.set(pair, p.state === state ? 1 : 0);
      }
      this.#up.set(peer, p.state === "alive" ? 1 : 0);
      if (p.rtt.ewmaSeconds !== null) this.#rtt.set(peer, p.rtt.ewmaSeconds);
      if (p.rtt.jitterSeconds !== null) this.#jitter.set(peer, p.rtt.jitterSeconds);
      if (p.loss.ratio !== null) this.#loss.set(peer, p.loss.ratio);
      this.#probes.add(peer, p.probes.sent, p.probes.acked);
      for (const dir of ["sent", "received"] as const) {
        pair[1] = dir;
        this.#probeBytes.set(pair, p.probeBytes[dir]);
        this.#bytes.set(pair, p.bytes[dir]);
      }
    }
    for (const [reason, n] of Object.entries(s.mesh.dropped)) this.#dropped.set([reason], n);
  }
}

/** The round-trip time of direct probes to each peer, as a histogram. */
export class MeshRttMetrics implements SnapshotCollector {
  readonly #rtt;

  constructor(f: Families) {
    this.#rtt = f.histogram(
      "mesh_peer_rtt_seconds",
      "Round-trip time of direct probes to a mesh peer.",
      RTT_BUCKETS,
      ["peer"],
    );
  }

  write(s: Snapshot): void {
    for (const p of s.mesh?.peers ?? []) {
      this.#rtt.set([p.name], p.rtt.buckets, p.rtt.sumSeconds, p.rtt.count);
    }
  }
}
