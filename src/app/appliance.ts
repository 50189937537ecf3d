/**
 * The Appliance: the graph of parts a configuration asks for (collector, mesh, Cilium, MAPE-K,
 * metrics, HTTP API) and their life: a snapshot every interval (`tick`), readiness, a reload
 * that applies what it can and says what it cannot, and a stop that detaches everything. The
 * command line around it (src/cli/serve.ts) serves its `app` and routes signals to it.
 */
import type { Hono } from "hono";
import { buildApp } from "../api/app.ts";
import { SummaryBuilder } from "../api/summary.ts";
import { loadOrCreateToken } from "../api/token.ts";
import { ciliumFromConfig, type CiliumIdentities } from "../cilium/cilium.ts";
import { lastUpgrade } from "../cli/upgrade.ts";
import { Collector, watchedInterfaces } from "../collect/collector.ts";
import { changedKeys, type Config, tokenFilePath } from "../config/schema.ts";
import { monotonicNs } from "../datapath/enforce.ts";
import type { Exporter } from "../export/exporter.ts";
import { MapekLoop } from "../mapek/loop.ts";
import type { MeshService } from "../mesh/service.ts";
import { MetricsRenderer } from "../metrics/exposition.ts";
import type { Snapshot } from "../state/snapshot.ts";
import { StateStore } from "../state/store.ts";
import { BUILD, VERSION } from "../version.ts";
import { AllowListSources } from "./allowlist.ts";
import type { Log } from "./log.ts";
import { hostPolicy } from "../http/middleware.ts";
import { parseHostPort } from "../net/hostport.ts";

/** What the appliance drives of the collector (a fake in unit tests). */
export type CollectorPart = Pick<
  Collector,
  "collect" | "attach" | "detach" | "retry" | "watched" | "mode" | "fallbackReason" | "stop"
>;

/** The parts of an appliance; `fromConfig` makes the real ones, a test may pass fakes. */
export interface ApplianceParts {
  config: Config;
  store: StateStore;
  collector: CollectorPart;
  token: string;
  /** The read-only token, when `api.read_token_file` is set. */
  readToken?: string;
  log: Log;
  mesh?: MeshService;
  mapek?: MapekLoop;
  allow?: AllowListSources;
  cilium?: CiliumIdentities;
  /** Where the metrics and flows are sent (export.*), each shown in health as `export:NAME`. */
  exporters?: Exporter[];
  /** The datapath's clock in ns (flow times use it), for MAPE-K. */
  monoNs?: () => number;
}

/**
 * Keys a reload applies (a key, or a section with every key below it); a change to any other
 * key is logged as waiting for a restart.
 */
const RELOADABLE = [
  "datapath.interfaces",
  "collect.interval_ms",
  "metrics",
  ...[
    "mode",
    "action_ttl_s",
    "max_actions",
    "allow",
    "allow_mesh_peers",
    "allow_management",
    "flood_pps",
    "half_open_per_s",
    "scan_ports",
    "scan_window_s",
    "drops_per_s",
    "mesh_loss_percent",
    "flow_table_fill_percent",
    "rate_limit_pps",
    "policy",
  ].map((k) => `mapek.${k}`),
];

const reloadable = (key: string) => RELOADABLE.some((r) => key === r || key.startsWith(`${r}.`));

/** The learned mesh peers enter the allow-list every tick; the box's addresses every 30th. */
const FULL_ALLOW_REFRESH_TICKS = 30;
/** Losses of events within this long make the ring buffer degraded. */
const LOSS_WINDOW_MS = 60_000;
/** How often the last upgrade's record is read again. */
const UPGRADE_READ_MS = 30_000;

export class Appliance {
  readonly store: StateStore;
  readonly app: Hono;
  #config: Config;
  #renderer: MetricsRenderer;
  readonly #p: ApplianceParts;
  readonly #summaries: SummaryBuilder;
  readonly #build = { version: VERSION, commit: BUILD.commit, denoVersion: Deno.version.deno };
  #timer?: ReturnType<typeof setInterval>;
  #ticks = 0;
  #upgrade: ReturnType<typeof lastUpgrade>;
  #upgradeReadAt = -Infinity;
  /** The ring buffer's loss counters over the last minute of snapshots. */
  readonly #lossWindow: { at: number; kernel: number; consumer: number }[] = [];

  constructor(parts: ApplianceParts) {
    this.#p = parts;
    this.#config = parts.config;
    this.store = parts.store;
    this.#renderer = MetricsRenderer.fromConfig(parts.config);
    this.#summaries = new SummaryBuilder(this.store);
    const c = parts.collector;
    this.app = buildApp({
      store: this.store,
      collector: c,
      mesh: parts.mesh,
      mapek: parts.mapek,
      cilium: parts.cilium,
      token: parts.token,
      readToken: parts.readToken,
      auth: parts.config.api.auth,
      allowedHost: hostPolicy(
        parseHostPort(parts.config.api.listen).hostname,
        parts.config.api.allowed_hosts,
      ),
      maxEventClients: parts.config.api.max_event_clients,
      maxBodyBytes: parts.config.api.max_body_bytes,
      metrics: () => this.metrics(),
      ready: () => this.ready(),
      summary: () => this.#summaries.build(c.mode, c.fallbackReason),
      logError: (e) => parts.log("error", "request failed", { error: String(e) }),
    });
  }

  /**
   * The appliance of a configuration, with every part started: the collector (eBPF, or the
   * fallback with its reason), the mesh, Cilium's identities and the MAPE-K loop. A part that
   * cannot start is reported in health; only the collector's failure (with fallback off)
   * throws.
   */
  static async fromConfig(config: Config, log: Log): Promise<Appliance> {
    // Event ids of this run start at its start time in µs: ids a client kept from an earlier
    // run are then recognisably not this run's.
    const store = new StateStore(Date.now() * 1000);
    const health = store.health;
    const tokenFile = tokenFilePath(config);
    const { token, created } = loadOrCreateToken(tokenFile);
    if (created) log("info", "generated an API token", { file: tokenFile });
    const readFile = config.api.read_token_file;
    const read = readFile ? loadOrCreateToken(readFile) : undefined;
    if (read?.created) log("info", "generated a read-only API token", { file: readFile });

    const collector = Collector.fromConfig(config, health, store.events);
    collector.start();
    const dp = collector.datapath;
    const pins = { dir: config.datapath.bpffs_dir };
    if (dp?.adopted) log("info", "counters adopted from the previous run", pins);
    if (dp?.resetReason) log("warn", dp.resetReason, pins);
    if (collector.mode === "fallback") {
      log("warn", "eBPF cannot run: fallback collector active", {
        reason: collector.fallbackReason,
      });
    }
    if (collector.options.interfaces.length === 0) {
      health.set(
        "datapath",
        "degraded",
        "no interface to watch: no default route and none configured",
      );
    }

    const cilium = ciliumFromConfig(config, (state, reason) => health.set("cilium", state, reason));

    let mesh: MeshService | undefined;
    if (config.mesh.enabled) {
      try {
        // The mesh and the exporters are loaded only when configured: each module graph costs
        // resident memory whether it runs or not (docs/BENCHMARKS.md, footprint).
        const { MeshService } = await import("../mesh/service.ts");
        mesh = MeshService.fromConfig(config, store);
        await mesh.start();
        log("info", `mesh listening on udp ${config.mesh.listen}`, { id: mesh.node.o.id });
      } catch (e) {
        mesh = undefined;
        health.set("mesh", "unhealthy", `cannot start: ${(e as Error).message}`);
        log("error", "mesh cannot start", { error: String(e) });
      }
    }

    const exporters: Exporter[] = [];
    if (config.export.ipfix.collectors.length) {
      const { IpfixExporter } = await import("../export/ipfix_exporter.ts");
      exporters.push(...IpfixExporter.fromConfig(config, log, () => Number(monotonicNs())));
    }
    if (config.export.remote_write.url !== "") {
      const { RemoteWriter } = await import("../export/remote_write.ts");
      const writer = RemoteWriter.fromConfig(config, log);
      if (writer) exporters.push(writer);
    }

    let mapek: MapekLoop | undefined, allow: AllowListSources | undefined;
    if (config.mapek.enabled) {
      allow = new AllowListSources(config);
      allow.refresh([], false);
      mapek = MapekLoop.fromConfig(
        config,
        {
          allow: allow.list,
          events: store.events,
          health,
          effectors: {
            enforcer: () => collector.datapath?.enforcer,
            setTopFlows: (n) => appliance.capTopFlows(n),
          },
        },
        (e) =>
          log("error", "knowledge store unavailable: MAPE-K keeps its knowledge in memory only", {
            error: String(e),
          }),
      );
    } else {
      health.set("mapek", "healthy", "switched off in the configuration (mapek.enabled)");
      // Sampling of events is a pinned setting an earlier run may have left: nothing explains
      // it now.
      collector.datapath?.enforcer.setEventRateShift(0);
    }

    const appliance: Appliance = new Appliance({
      config,
      store,
      collector,
      token,
      readToken: read?.token,
      log,
      mesh,
      mapek,
      allow,
      cilium,
      monoNs: () => Number(monotonicNs()),
      exporters,
    });
    // Live actions from the last run are applied again (some act on the appliance itself).
    mapek?.restore();
    return appliance;
  }

  get config(): Config {
    return this.#config;
  }

  /** Where the numbers come from: the eBPF datapath or the fallback collector. */
  get mode(): "ebpf" | "fallback" {
    return this.#p.collector.mode;
  }

  /** A lower number of flows on /metrics while the box is under pressure (undefined: none). */
  capTopFlows(n: number | undefined): void {
    this.#renderer.topFlowsCap = n;
  }

  /** The first snapshot now, then one every `collect.interval_ms`. */
  start(): void {
    this.tick();
    this.#timer = setInterval(() => this.tick(), this.#config.collect.interval_ms);
  }

  /**
   * One snapshot and everything that follows it: mesh, MAPE-K, summaries, health. A part that
   * throws is marked in health with the error, and the others go on; without a snapshot
   * nothing follows.
   */
  tick(): void {
    const { collector, mesh, mapek, allow, log } = this.#p;
    const store = this.store, health = store.health;
    try {
      store.put(collector.collect());
    } catch (e) {
      health.set("collector", "unhealthy", `snapshot failed: ${(e as Error).message}`);
      log("error", "snapshot failed", { error: String(e) });
      return;
    }
    const s = store.current!;
    health.set("collector", "healthy", `snapshot every ${this.#config.collect.interval_ms} ms`);
    if (mesh) this.#part("mesh", "degraded", "refresh failed", () => s.mesh = mesh.refresh());
    if (mapek) {
      this.#part("mapek", "unhealthy", "loop failed", () => {
        allow?.refresh(s.mesh?.peers ?? [], ++this.#ticks % FULL_ALLOW_REFRESH_TICKS === 0);
        mapek.step(s, this.#p.monoNs?.() ?? performance.now() * 1e6);
        s.mapek = mapek.snapshot();
      });
    }
    if (store.events.summaryListeners > 0) {
      this.#part("events", "degraded", "summary failed", () =>
        store.events.broadcast(
          "summary",
          this.#summaries.build(collector.mode, collector.fallbackReason),
        ));
    }
    this.#part(
      "upgrade",
      "degraded",
      "reading the last upgrade failed",
      () => this.#upgradeHealth(),
    );
    if (collector.mode === "ebpf") this.#ringHealth(s);
    const exporters = this.#p.exporters ?? [];
    // The counters as they stand before this snapshot's offers, for remote-write's page; then
    // as the offers leave them, for the next scrape.
    if (exporters.length) s.exports = exporters.map((e) => e.status());
    for (const [i, e] of exporters.entries()) {
      const component = `export:${e.name}`;
      this.#part(component, "degraded", "offer failed", () => {
        e.offer(s, () => this.metrics());
        const st = e.status();
        s.exports![i] = st;
        health.set(component, st.state, st.reason);
      });
    }
  }

  /**
   * The ring buffer's health: degraded while events were lost within the last minute, in the
   * kernel (ring full) or by the consumer; healthy again once a minute passes without loss. A
   * slow client of the event stream loses only its own events, and does not count here.
   */
  #ringHealth(s: Snapshot): void {
    const ev = s.events;
    const w = this.#lossWindow;
    w.push({ at: s.takenAt, kernel: ev.lostKernel, consumer: ev.lostConsumer });
    while (w.length > 1 && w[1].at <= s.takenAt - LOSS_WINDOW_MS) w.shift();
    const kernel = ev.lostKernel - w[0].kernel, consumer = ev.lostConsumer - w[0].consumer;
    const lost = kernel > 0 || consumer > 0;
    this.store.health.set(
      "ringbuf",
      lost ? "degraded" : "healthy",
      lost
        ? `events lost in the last ${LOSS_WINDOW_MS / 1000} s: ${kernel} in the kernel (ring ` +
          `full), ${consumer} by the consumer`
        : `consumed ${ev.consumed} events, none lost in the last ${LOSS_WINDOW_MS / 1000} s` +
          ` (${ev.lostKernel + ev.lostConsumer} since start)`,
    );
  }

  /** Runs one part of a tick; if it throws, the part's health says so and the tick goes on. */
  #part(
    component: string,
    state: "degraded" | "unhealthy",
    what: string,
    run: () => void,
  ): void {
    try {
      run();
    } catch (e) {
      this.store.health.set(component, state, `${what}: ${(e as Error).message}`);
      this.#p.log("error", `${component}: ${what}`, { error: String(e) });
    }
  }

  /** Upgrades never fail silently; their record is re-read every 30 s, not every snapshot. */
  #upgradeHealth(): void {
    if (Date.now() - this.#upgradeReadAt >= UPGRADE_READ_MS) {
      this.#upgradeReadAt = Date.now();
      this.#upgrade = lastUpgrade(this.#config.state_dir);
    }
    const up = this.#upgrade;
    if (!up) return;
    this.store.health.set(
      "upgrade",
      up.ok ? "healthy" : "degraded",
      `last check ${up.at}: ${up.outcome}${up.error ? `: ${up.error}` : ""}`,
    );
  }

  /** Ready: a fresh snapshot exists. */
  ready(): { ready: boolean; reason: string } {
    const s = this.store.current;
    if (!s) return { ready: false, reason: "no snapshot yet" };
    const age = Date.now() - s.takenAt;
    if (age > 3 * this.#config.collect.interval_ms + 1000) {
      return { ready: false, reason: `last snapshot ${age} ms old` };
    }
    const c = this.#p.collector;
    return {
      ready: true,
      reason: c.mode === "ebpf" ? "eBPF datapath" : `fallback: ${c.fallbackReason}`,
    };
  }

  /** The /metrics page of the current snapshot; a failure marks the metrics unhealthy. */
  metrics(): string {
    const health = this.store.health;
    try {
      const s = this.store.current;
      const text = s ? this.#renderer.render(s, health.list(), this.#build) : "";
      health.set("metrics", "healthy", "rendering");
      return text;
    } catch (e) {
      health.set("metrics", "unhealthy", `render failed: ${(e as Error).message}`);
      throw e;
    }
  }

  /**
   * Applies a new configuration: interfaces, metrics, the interval and MAPE-K's settings and
   * allow-list. Changes to other keys wait for a restart, and the log says which. Returns the
   * keys that were not applied.
   */
  reload(next: Config): string[] {
    const { collector, mapek, allow, log } = this.#p;
    const changed = changedKeys(this.#config, next);
    const wanted = new Set(watchedInterfaces(next));
    for (const name of collector.watched()) if (!wanted.has(name)) collector.detach(name);
    for (const name of wanted) {
      if (collector.watched().includes(name)) continue;
      try {
        collector.attach(name);
      } catch (e) {
        log("warn", "attach on reload failed", { interface: name, error: String(e) });
      }
    }
    this.#renderer = MetricsRenderer.fromConfig(next, this.#renderer.topFlowsCap);
    mapek?.reconfigure(MapekLoop.optionsFrom(next));
    const intervalChanged = next.collect.interval_ms !== this.#config.collect.interval_ms;
    this.#config = next;
    if (intervalChanged && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = setInterval(() => this.tick(), next.collect.interval_ms);
    }
    allow?.reconfigure(next);
    allow?.refresh(this.store.current?.mesh?.peers ?? [], false);
    const notApplied = changed.filter((k) => !reloadable(k));
    log("info", "configuration reloaded (interfaces, metrics, interval, mapek)");
    if (notApplied.length) {
      log("warn", "changed keys that apply only after a restart", { keys: notApplied });
    }
    this.store.events.append("reload", { ok: true, ...(notApplied.length ? { notApplied } : {}) });
    return notApplied;
  }

  /**
   * Stops the snapshots and every part: detaches everything (pinned counters stay). The event
   * streams are closed first; `requestsDone` (the HTTP server's end) is awaited before the
   * parts that requests read are stopped.
   */
  async stop(requestsDone?: Promise<void>): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.store.events.closeAll();
    await requestsDone;
    await this.#p.mesh?.stop();
    await this.#p.cilium?.stop();
    this.#p.mapek?.close();
    await Promise.all((this.#p.exporters ?? []).map((e) => e.stop()));
    await this.#p.collector.stop();
  }
}
