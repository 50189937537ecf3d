/**
 * The HTTP API in-process, against fakes: a real StateStore holding a hand-built snapshot, and
 * a collector, mesh and MAPE-K loop that answer from fields and record what they were asked.
 * Nothing here touches the kernel or the network.
 */
import { type ApiDeps, buildApp } from "../../src/api/app.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { FlowTable } from "../../src/flows/table.ts";
import type { MapekLoop } from "../../src/mapek/loop.ts";
import { SYMPTOM_KINDS, type SymptomKind } from "../../src/mapek/analyze.ts";
import type { Action, Decision, PolicyAction } from "../../src/mapek/plan.ts";
import type { MeshSnapshot, PeerSnapshot } from "../../src/mesh/node.ts";
import type { InterfaceSnapshot, Snapshot } from "../../src/state/snapshot.ts";
import { StateStore } from "../../src/state/store.ts";
import { flowOf, tableOf } from "./snapshot.ts";

export const TOKEN = "test-token-0123456789abcdef";

/** A UDP flow from 10.0.0.1:1000 to 192.0.2.1:53 on eth0 (ifindex 2), unless `over` says. */
export function flow(over: Partial<FlowSnapshot> = {}): FlowSnapshot {
  return flowOf({
    saddr: "10.0.0.1",
    sport: 1000,
    dport: 53,
    bytes: 100,
    firstSeenNs: 1,
    lastSeenNs: 2,
    ...over,
  });
}

export function iface(ifindex: number, name: string): InterfaceSnapshot {
  return {
    ifindex,
    name,
    source: "ebpf",
    hooks: ["tcIngress", "tcEgress"],
    traffic: [{ direction: "rx", family: "ipv4", protocol: "udp", packets: 10, bytes: 1000 }],
    malformed: {},
    fragments: 0,
    vlanTagged: 0,
  };
}

/** A snapshot of these flows and interfaces (eth0 and eth1 by default). */
export function snapshot(
  flows: FlowSnapshot[],
  interfaces = [iface(2, "eth0"), iface(3, "eth1")],
): Snapshot {
  return {
    takenAt: Date.UTC(2026, 0, 1),
    mode: "ebpf",
    interfaces,
    flows: FlowTable.from(flows),
    flowTable: tableOf(flows.length),
    events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
    programs: [],
    bpfStatsEnabled: false,
  };
}

type CollectorApi = ApiDeps["collector"];

export class FakeCollector implements CollectorApi {
  mode: "ebpf" | "fallback" = "ebpf";
  fallbackReason = "";
  readonly attached = new Set(["eth0"]);
  /** Thrown by attach() when set. */
  attachError?: Error;
  /** What retry() answers. */
  retryWorks = true;
  retries = 0;

  attach(name: string): void {
    if (this.attachError) throw this.attachError;
    this.attached.add(name);
  }
  detach(name: string): boolean {
    return this.attached.delete(name);
  }
  retry(): boolean {
    this.retries++;
    return this.retryWorks;
  }
  watched(): string[] {
    return [...this.attached];
  }
}

function peer(name: string, state: PeerSnapshot["state"]): PeerSnapshot {
  return {
    id: `id-${name}`,
    name,
    mesh: `${name}:7946`,
    metrics: `${name}:9184`,
    state,
    since: Date.UTC(2026, 0, 1),
    lastHeardMsAgo: 10,
    rtt: {
      lastSeconds: null,
      ewmaSeconds: null,
      jitterSeconds: null,
      buckets: [],
      count: 0,
      sumSeconds: 0,
    },
    loss: { ratio: 0, window: 10 },
    probes: { sent: 10, acked: 10, indirectAcks: 0 },
    probeBytes: { sent: 1000, received: 1000 },
    bytes: { sent: 0, received: 0 },
  };
}

type MeshApi = NonNullable<ApiDeps["mesh"]>;

export class FakeMesh implements MeshApi {
  last?: MeshSnapshot = {
    id: "id-self",
    name: "self",
    listen: "0.0.0.0:7946",
    peers: [peer("a", "alive"), peer("b", "alive"), peer("c", "suspect")],
    dropped: { bad_mac: 2 },
    datagrams: { sent: 5, received: 4, bytesSent: 500, bytesReceived: 400 },
  };
  discovery() {
    return [{ targets: ["self:9184"], labels: { x0tta6bl4_node: "self" } }];
  }
}

const DECISION_AT = Date.UTC(2026, 0, 1);

function decision(n: number): Decision {
  return {
    id: `d-${n}`,
    at: DECISION_AT + n,
    symptom: { kind: "port_scan", subject: "10.0.0.9", summary: "a scan", evidence: [] },
    policy: "block",
    outcome: "observed",
    reason: "observe mode",
    mode: "observe",
  };
}

function action(id: string, over: Partial<Action> = {}): Action {
  return {
    id,
    kind: "block",
    target: "10.0.0.9",
    decisionId: "d-1",
    createdAt: DECISION_AT,
    expiresAt: DECISION_AT + 60_000,
    state: "active",
    ...over,
  };
}

type MapekApi = NonNullable<ApiDeps["mapek"]>;

export class FakeMapek implements MapekApi {
  readonly live = [action("a-1"), action("a-2", { kind: "mark_degraded", target: "b" })];
  readonly ended = [action("a-0", { state: "expired", endedAt: DECISION_AT + 1 })];
  /** 250 decisions, newest first, as the knowledge store returns them. */
  readonly decisionLog = Array.from({ length: 250 }, (_, i) => decision(250 - i));
  /** The limits decisions() was asked for. */
  readonly asked: number[] = [];
  /** Who revoked each action revoke() ended. */
  readonly revokedBy: string[] = [];

  status(): ReturnType<MapekLoop["status"]> {
    const policies = Object.fromEntries(SYMPTOM_KINDS.map((k) => [k, "none"])) as Record<
      SymptomKind,
      PolicyAction
    >;
    return {
      mode: "observe",
      actionTtlSeconds: 60,
      maxActions: 10,
      policies,
      active: this.live.length,
      observed: 0,
      unverified: { maxLive: 16, perInterval: 4, live: 0, deferred: 0 },
      symptoms: [],
      allow: [],
      baselines: [],
    };
  }
  decisions(limit: number): Decision[] {
    this.asked.push(limit);
    return this.decisionLog.slice(0, limit);
  }
  actions(all: boolean): Action[] {
    return all ? [...this.live, ...this.ended] : [...this.live];
  }
  revoke(id: string, by: string): Action | undefined {
    const i = this.live.findIndex((a) => a.id === id);
    if (i < 0) return undefined;
    const [a] = this.live.splice(i, 1);
    this.revokedBy.push(by);
    return { ...a, state: "revoked", endReason: `revoked by ${by}` };
  }
  degradedPeers(): string[] {
    return this.live.filter((a) => a.kind === "mark_degraded").map((a) => a.target);
  }
}

/** Fakes with the default answers; each test changes what it needs before calling the app. */
export class Fakes {
  readonly store = new StateStore();
  readonly collector = new FakeCollector();
  readonly errors: unknown[] = [];
  readiness = { ready: true, reason: "eBPF datapath" };
  metricsText = "# HELP x0tta6bl4_up up\n# TYPE x0tta6bl4_up gauge\nx0tta6bl4_up 1\n";
  summaryValue: unknown = { flows: 0 };

  deps(over: Partial<ApiDeps> = {}): ApiDeps {
    return {
      store: this.store,
      collector: this.collector,
      token: TOKEN,
      maxBodyBytes: 1024,
      metrics: () => this.metricsText,
      ready: () => this.readiness,
      summary: () => this.summaryValue,
      logError: (e) => this.errors.push(e),
      ...over,
    };
  }

  app(over: Partial<ApiDeps> = {}) {
    return buildApp(this.deps(over));
  }
}

/** One Server-Sent Event as the stream framed it. */
export interface SseFrame {
  id?: string;
  event?: string;
  data?: string;
  /** The frame's text, without the blank line that ends it. */
  raw: string;
}

/** Reads an event stream frame by frame; close() cancels it (the server sees the client go). */
export class SseReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next frame (a comment such as ": keep-alive" included); fails after `timeoutMs`. */
  async next(timeoutMs = 2000): Promise<SseFrame> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no event within the timeout")), timeoutMs);
    });
    try {
      while (!this.#buffer.includes("\n\n")) {
        const r = await Promise.race([this.#reader.read(), timeout]);
        if (r.done) throw new Error(`the stream ended; unread: ${JSON.stringify(this.#buffer)}`);
        this.#buffer += r.value;
      }
    } finally {
      clearTimeout(timer);
    }
    const end = this.#buffer.indexOf("\n\n");
    const raw = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 2);
    const frame: SseFrame = { raw };
    for (const line of raw.split("\n")) {
      const m = line.match(/^(id|event|data): (.*)$/);
      if (m) frame[m[1] as "id" | "event" | "data"] = m[2];
    }
    return frame;
  }

  async close(): Promise<void> {
    await this.#reader.cancel();
  }
}
