/**
 * The Appliance built from fakes: ticks, health rules, readiness, reload (what it applies and
 * what it says it cannot) and stop, with no kernel and no network.
 */
import assert from "node:assert/strict";
import { Appliance, type ApplianceParts, type CollectorPart } from "../../src/app/appliance.ts";
import type { MeshService } from "../../src/mesh/service.ts";
import type { Log, LogLevel } from "../../src/app/log.ts";
import { type Config, defaultConfig } from "../../src/config/schema.ts";
import { FlowTable } from "../../src/flows/table.ts";
import { StateStore } from "../../src/state/store.ts";
import type { Snapshot } from "../../src/state/snapshot.ts";

class FakeCollector implements CollectorPart {
  mode: "ebpf" | "fallback" = "ebpf";
  fallbackReason = "";
  readonly wanted = new Set<string>();
  /** What the next collect() does: a snapshot's overrides, or an error to throw. */
  next: Partial<Snapshot> | Error = {};
  collected = 0;
  stopped = false;
  readonly refuse = new Set<string>();

  collect(): Snapshot {
    if (this.next instanceof Error) throw this.next;
    this.collected++;
    return {
      takenAt: Date.now(),
      mode: this.mode,
      interfaces: [],
      flows: new FlowTable(0),
      flowTable: { entries: 0, capacity: 1024, created: 0, evicted: 0, insertFailed: 0 },
      events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
      programs: [],
      bpfStatsEnabled: false,
      ...this.next,
    };
  }
  attach(name: string): void {
    if (this.refuse.has(name)) throw new Error(`no ${name}`);
    this.wanted.add(name);
  }
  detach(name: string): boolean {
    return this.wanted.delete(name);
  }
  retry(): boolean {
    return this.mode === "ebpf";
  }
  watched(): string[] {
    return [...this.wanted];
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
}

function build(patch: (c: Config) => void = () => {}, parts: Partial<ApplianceParts> = {}) {
  const config = defaultConfig();
  config.state_dir = Deno.makeTempDirSync({ prefix: "x0t-appliance-" });
  config.mapek.enabled = false;
  patch(config);
  const lines: { level: LogLevel; msg: string; fields?: Record<string, unknown> }[] = [];
  const log: Log = (level, msg, fields) => lines.push({ level, msg, fields });
  const collector = new FakeCollector();
  for (const i of config.datapath.interfaces) collector.wanted.add(i);
  const appliance = new Appliance({
    config,
    store: new StateStore(),
    collector,
    token: "t0ken",
    log,
    ...parts,
  });
  const cleanup = () => Deno.removeSync(config.state_dir, { recursive: true });
  return { appliance, collector, lines, config, cleanup };
}

Deno.test("appliance: a tick stores the snapshot and sets the collector's and ring buffer's health", () => {
  const { appliance, collector, cleanup } = build();
  try {
    assert.deepEqual(appliance.ready(), { ready: false, reason: "no snapshot yet" });
    appliance.tick();
    assert.equal(collector.collected, 1);
    assert.ok(appliance.store.current);
    const h = new Map(appliance.store.health.list().map((c) => [c.component, c]));
    assert.equal(h.get("collector")?.state, "healthy");
    assert.equal(
      h.get("ringbuf")?.reason,
      "consumed 0 events, none lost in the last 60 s (0 since start)",
    );
    assert.deepEqual(appliance.ready(), { ready: true, reason: "eBPF datapath" });

    collector.next = {
      events: { sent: 9, suppressed: 0, lostKernel: 3, lostConsumer: 0, consumed: 6 },
    };
    appliance.tick();
    const rb = appliance.store.health.list().find((c) => c.component === "ringbuf");
    assert.equal(rb?.state, "degraded");
    assert.match(rb!.reason, /3 in the kernel/);
  } finally {
    cleanup();
  }
});

Deno.test("appliance: a failing snapshot marks the collector unhealthy and logs why; the last one stays", () => {
  const { appliance, collector, lines, cleanup } = build();
  try {
    appliance.tick();
    const before = appliance.store.current;
    collector.next = new Error("map read failed");
    appliance.tick();
    assert.equal(appliance.store.current, before);
    const c = appliance.store.health.list().find((x) => x.component === "collector");
    assert.equal(c?.state, "unhealthy");
    assert.equal(c?.reason, "snapshot failed: map read failed");
    assert.ok(lines.some((l) => l.level === "error" && l.msg === "snapshot failed"));
  } finally {
    cleanup();
  }
});

Deno.test("appliance: readiness follows the snapshot's age and the collector's mode", () => {
  const { appliance, collector, config, cleanup } = build();
  try {
    collector.mode = "fallback";
    collector.fallbackReason = "EPERM";
    appliance.tick();
    assert.deepEqual(appliance.ready(), { ready: true, reason: "fallback: EPERM" });
    appliance.store.current!.takenAt -= 3 * config.collect.interval_ms + 5000;
    const r = appliance.ready();
    assert.equal(r.ready, false);
    assert.match(r.reason, /^last snapshot \d+ ms old$/);
  } finally {
    cleanup();
  }
});

Deno.test("appliance: a reload attaches and detaches interfaces and says which keys wait for a restart", () => {
  const { appliance, collector, lines, config, cleanup } = build((c) => {
    c.datapath.interfaces = ["a0", "b0"];
  });
  try {
    const next = structuredClone(config);
    next.datapath.interfaces = ["b0", "c0", "bad0"];
    next.datapath.flow_table_size = config.datapath.flow_table_size * 2;
    next.metrics.top_flows = 7;
    next.mesh.probe_interval_ms = config.mesh.probe_interval_ms + 100;
    // Exporters are made at start (documented): a reload says their keys wait for a restart.
    next.export.ipfix.collectors = ["127.0.0.1:4739"];
    next.export.remote_write.url = "http://127.0.0.1:9090/api/v1/write";
    collector.refuse.add("bad0");
    const notApplied = appliance.reload(next);
    assert.deepEqual(collector.watched().sort(), ["b0", "c0"]);
    assert.deepEqual(notApplied, [
      "datapath.flow_table_size",
      "mesh.probe_interval_ms",
      "export.ipfix.collectors",
      "export.remote_write.url",
    ]);
    assert.ok(
      lines.some((l) => l.msg === "attach on reload failed" && l.fields?.interface === "bad0"),
    );
    const warn = lines.find((l) => l.msg === "changed keys that apply only after a restart");
    assert.deepEqual(warn?.fields, { keys: notApplied });
    assert.equal(appliance.config.metrics.top_flows, 7);
    const ev = appliance.store.events.since(0).events.filter((e) => e.type === "reload");
    assert.deepEqual(ev.at(-1)?.data, { ok: true, notApplied });

    // Only reloadable keys changed: nothing is reported as waiting.
    const again = structuredClone(next);
    again.collect.interval_ms = next.collect.interval_ms * 2;
    assert.deepEqual(appliance.reload(again), []);
  } finally {
    cleanup();
  }
});

Deno.test("appliance: the app it builds serves /readyz and /metrics from its own state", async () => {
  const { appliance, cleanup } = build();
  try {
    let res = await appliance.app.request("/readyz");
    assert.equal(res.status, 503);
    assert.equal(await res.text(), "not ready: no snapshot yet\n");
    appliance.tick();
    res = await appliance.app.request("/readyz");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    res = await appliance.app.request("/metrics");
    const text = await res.text();
    assert.match(text, /^x0tta6bl4_build_info\{/m);
    assert.match(text, /^x0tta6bl4_flow_table_capacity 1024$/m);
  } finally {
    cleanup();
  }
});

Deno.test("appliance: stop closes the event streams and stops the collector, after requests end", async () => {
  const { appliance, collector, cleanup } = build((c) => {
    c.collect.interval_ms = 100;
  });
  try {
    appliance.start();
    const sub = appliance.store.events.subscribe(10, false);
    let requestsEnded = false;
    const requests = new Promise<void>((r) => setTimeout(() => (requestsEnded = true, r()), 20));
    await appliance.stop(requests);
    assert.ok(sub.closed);
    assert.ok(requestsEnded);
    assert.ok(collector.stopped);
    const n = collector.collected;
    await new Promise((r) => setTimeout(r, 2 * appliance.config.collect.interval_ms));
    assert.equal(collector.collected, n, "no tick after stop");
  } finally {
    cleanup();
  }
});

Deno.test("appliance: a part that throws in a tick is marked with its error; the others go on", () => {
  const mesh = {
    refresh: () => {
      throw new TypeError('"" is not HOST:PORT');
    },
  } as unknown as MeshService;
  const { appliance, collector, lines, cleanup } = build(() => {}, { mesh });
  try {
    appliance.tick();
    appliance.tick();
    assert.equal(collector.collected, 2, "snapshots go on");
    const h = new Map(appliance.store.health.list().map((c) => [c.component, c]));
    assert.equal(h.get("mesh")?.state, "degraded");
    assert.equal(h.get("mesh")?.reason, 'refresh failed: "" is not HOST:PORT');
    assert.equal(h.get("collector")?.state, "healthy");
    assert.equal(h.get("ringbuf")?.state, "healthy");
    assert.deepEqual(appliance.ready(), { ready: true, reason: "eBPF datapath" });
    assert.ok(lines.some((l) => l.msg === "mesh: refresh failed"));
  } finally {
    cleanup();
  }
});
