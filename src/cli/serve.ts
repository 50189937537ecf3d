/**
 * `x0tta6bl4 serve`: the appliance. Reads the configuration, starts the collector (eBPF, or
 * the fallback with the reason), serves the HTTP API and /metrics, takes a snapshot every
 * interval, reloads on SIGHUP, and detaches everything on SIGTERM or SIGINT.
 */
import { buildApp } from "../api/app.ts";
import { SummaryBuilder } from "../api/summary.ts";
import { loadOrCreateToken } from "../api/token.ts";
import { Collector, type CollectorOptions } from "../collect/collector.ts";
import { loadConfig } from "../config/load.ts";
import { type Config, tokenFilePath } from "../config/schema.ts";
import { joinHostPort, parseHostPort } from "../net/hostport.ts";
import { defaultRouteInterface } from "../datapath/netdev.ts";
import { monotonicNs } from "../datapath/enforce.ts";
import { type AllowEntry, AllowList, localEntries } from "../mapek/allow.ts";
import { parseCidr } from "../net/cidr.ts";
import { Knowledge } from "../mapek/knowledge.ts";
import { MapekLoop } from "../mapek/loop.ts";
import { mapekOptions } from "../mapek/options.ts";
import { MeshService } from "../mesh/service.ts";
import { ciliumHealth, CiliumIdentities, detectCilium } from "../cilium/cilium.ts";
import { lastUpgrade } from "./upgrade.ts";
import { MetricsRenderer } from "../metrics/exposition.ts";
import { StateStore } from "../state/store.ts";
import { BUILD, VERSION } from "../version.ts";

function log(
  level: "info" | "warn" | "error",
  msg: string,
  fields: Record<string, unknown> = {},
) {
  const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join("");
  console.error(`${new Date().toISOString()} ${level} ${msg}${extra}`);
}

/** The /metrics renderer of a configuration, keeping a MAPE-K cap on the top flows. */
function metricsRenderer(c: Config, topFlowsCap?: number): MetricsRenderer {
  const r = new MetricsRenderer({
    topFlows: c.metrics.top_flows,
    interfaceAllow: [...c.metrics.interface_allow],
    interfaceDeny: [...c.metrics.interface_deny],
  });
  r.topFlowsCap = topFlowsCap;
  return r;
}

/** The interfaces to watch: the configured ones, else the default route's (if any). */
function watchedInterfaces(c: Config): string[] {
  const d = c.datapath;
  return d.interfaces.length ? [...d.interfaces] : [defaultRouteInterface()].filter(
    (x): x is string => x !== undefined,
  );
}

function collectorOptions(c: Config): CollectorOptions {
  const d = c.datapath;
  return {
    interfaces: watchedInterfaces(c),
    hook: d.hook,
    xdpMode: d.xdp_mode,
    flowTableSize: d.flow_table_size,
    ringBufferBytes: d.ring_buffer_bytes,
    eventRate: d.event_rate,
    maxInterfaces: d.max_interfaces,
    ifindexLimit: d.ifindex_limit,
    tcHandle: d.tc_handle,
    tcPriority: d.tc_priority,
    btfPath: d.btf_path,
    pinDir: d.bpffs_dir,
    fallback: d.fallback,
    signals: (["drops", "retransmits", "rtt"] as const).filter((k) => c.signals[k]),
  };
}

/** Allow-list entries of mesh peers, HOST:PORT and why; hosts that are names are left out
 * (their addresses are learned from the peers themselves). */
function meshPeerEntries(peers: { hostPort: string; why: string }[]): AllowEntry[] {
  return peers.flatMap(({ hostPort, why }) => {
    try {
      return [{ cidr: parseCidr(parseHostPort(hostPort).hostname), why }];
    } catch {
      return [];
    }
  });
}

export interface ServeInputs {
  file?: string;
  env: Record<string, string>;
  flags: Record<string, string | string[] | boolean>;
}

export async function serve(inputs: ServeInputs): Promise<number> {
  let config = loadConfig(inputs);
  const store = new StateStore();
  const health = store.health;
  const { token, created } = loadOrCreateToken(tokenFilePath(config));
  if (created) log("info", "generated an API token", { file: tokenFilePath(config) });

  const collectorOpts = collectorOptions(config);
  const collector = new Collector(collectorOpts, health, store.events);
  const startedAt = performance.now();
  collector.start();
  const dp = collector.datapath;
  if (dp?.adopted) {
    log("info", "counters adopted from the previous run", { dir: config.datapath.bpffs_dir });
  }
  if (dp?.resetReason) log("warn", dp.resetReason, { dir: config.datapath.bpffs_dir });
  if (collector.mode === "fallback") {
    log("warn", "eBPF cannot run: fallback collector active", { reason: collector.fallbackReason });
  }
  if (collectorOpts.interfaces.length === 0) {
    health.set(
      "datapath",
      "degraded",
      "no interface to watch: no default route and none configured",
    );
  }
  // Cilium: we only look (its pins and API socket), never touch its programs; when its API
  // answers, flows get the endpoint identities of their addresses.
  const ciliumFound = config.cilium.enabled
    ? detectCilium({ socketPath: config.cilium.socket, bpffsRoot: config.cilium.bpffs_root })
    : undefined;
  const cilium = ciliumFound?.found
    ? new CiliumIdentities({ socketPath: config.cilium.socket })
    : undefined;
  const ciliumNote = " x0tta6bl4 runs its TC filters after Cilium's (priority " +
    `${config.datapath.tc_priority}), refuses XDP where Cilium holds it, and never touches its programs.`;
  if (cilium) {
    cilium.start(config.cilium.refresh_s * 1000, (st) => {
      const h = ciliumHealth(ciliumFound!, st);
      health.set("cilium", h.state, h.reason + ciliumNote);
    });
  } else {
    health.set(
      "cilium",
      "healthy",
      ciliumFound?.summary ?? "not looked for (cilium.enabled is false)",
    );
  }

  let mesh: MeshService | undefined;
  if (config.mesh.enabled) {
    try {
      mesh = new MeshService(config, store);
      await mesh.start();
      log("info", `mesh listening on udp ${config.mesh.listen}`, { id: mesh.node.o.id });
    } catch (e) {
      mesh = undefined;
      health.set("mesh", "unhealthy", `cannot start: ${(e as Error).message}`);
      log("error", "mesh cannot start", { error: String(e) });
    }
  }

  let renderer = metricsRenderer(config);
  let mapek: MapekLoop | undefined;
  const allow = new AllowList();
  let localAllow: AllowEntry[] = [];
  const refreshAllow = (full: boolean) => {
    const peers = config.mapek.allow_mesh_peers;
    if (full) {
      localAllow = [
        ...localEntries(parseHostPort(config.api.listen).hostname, config.mapek.allow_management),
        ...config.mapek.allow.map((c) => ({ cidr: parseCidr(c), why: "configured (mapek.allow)" })),
        ...(peers
          ? meshPeerEntries(
            config.mesh.peers.map((p) => ({ hostPort: p, why: "mesh peer (configured)" })),
          )
          : []),
      ];
    }
    // Learned peers come and go: every tick.
    const learned = peers ? store.current?.mesh?.peers ?? [] : [];
    allow.set([
      ...localAllow,
      ...meshPeerEntries(learned.map((p) => ({ hostPort: p.mesh, why: `mesh peer ${p.name}` }))),
    ]);
  };
  if (config.mapek.enabled) {
    let knowledge: Knowledge;
    const file = `${config.state_dir.replace(/\/+$/, "")}/knowledge.db`;
    try {
      Deno.mkdirSync(config.state_dir, { recursive: true });
      knowledge = new Knowledge(file);
    } catch (e) {
      log("error", "knowledge store unavailable: MAPE-K keeps its knowledge in memory only", {
        error: String(e),
      });
      knowledge = new Knowledge(":memory:");
    }
    refreshAllow(true);
    mapek = new MapekLoop(mapekOptions(config), {
      knowledge,
      allow,
      events: store.events,
      health,
      effectors: {
        enforcer: () => collector.datapath?.enforcer,
        setTopFlows: (n) => {
          renderer.topFlowsCap = n;
        },
      },
    });
    mapek.restore();
  } else health.set("mapek", "healthy", "switched off in the configuration (mapek.enabled)");
  let mapekTicks = 0;

  const build = {
    version: VERSION,
    commit: BUILD.commit,
    denoVersion: Deno.version.deno,
  };

  const summaries = new SummaryBuilder(store);
  let upgrade: ReturnType<typeof lastUpgrade>;
  let upgradeReadAt = -Infinity;
  const tick = () => {
    try {
      store.put(collector.collect());
      if (mesh) store.current!.mesh = mesh.refresh();
      if (mapek) {
        try {
          refreshAllow(++mapekTicks % 30 === 0);
          mapek.step(store.current!, Number(monotonicNs()));
          store.current!.mapek = mapek.snapshot();
        } catch (e) {
          health.set("mapek", "unhealthy", `loop failed: ${(e as Error).message}`);
          log("error", "MAPE-K step failed", { error: String(e) });
        }
      }
      if (store.events.summaryListeners > 0) {
        store.events.broadcast(
          "summary",
          summaries.build(collector.mode, collector.fallbackReason),
        );
      }
      health.set("collector", "healthy", `snapshot every ${config.collect.interval_ms} ms`);
      // Upgrades never fail silently; their record is re-read every 30 s, not every snapshot.
      if (Date.now() - upgradeReadAt >= 30_000) {
        upgradeReadAt = Date.now();
        upgrade = lastUpgrade(config.state_dir);
      }
      const up = upgrade;
      if (up) {
        health.set(
          "upgrade",
          up.ok ? "healthy" : "degraded",
          `last check ${up.at}: ${up.outcome}${up.error ? `: ${up.error}` : ""}`,
        );
      }
      const ev = store.current!.events;
      if (collector.mode === "ebpf") {
        health.set(
          "ringbuf",
          ev.lostKernel > 0 || ev.lostConsumer > 0 ? "degraded" : "healthy",
          ev.lostKernel > 0 || ev.lostConsumer > 0
            ? `events lost: ${ev.lostKernel} in the kernel (ring full), ${ev.lostConsumer} by slow clients`
            : `consumed ${ev.consumed} events, none lost`,
        );
      }
    } catch (e) {
      health.set("collector", "unhealthy", `snapshot failed: ${(e as Error).message}`);
      log("error", "snapshot failed", { error: String(e) });
    }
  };
  tick();
  let timer = setInterval(tick, config.collect.interval_ms);

  const app = buildApp({
    store,
    collector,
    mesh,
    mapek,
    cilium,
    token,
    maxBodyBytes: config.api.max_body_bytes,
    metrics: () => {
      try {
        const text = store.current ? renderer.render(store.current, health.list(), build) : "";
        health.set("metrics", "healthy", "rendering");
        return text;
      } catch (e) {
        health.set("metrics", "unhealthy", `render failed: ${(e as Error).message}`);
        throw e;
      }
    },
    ready: () => {
      const s = store.current;
      if (!s) return { ready: false, reason: "no snapshot yet" };
      const age = Date.now() - s.takenAt;
      if (age > 3 * config.collect.interval_ms + 1000) {
        return { ready: false, reason: `last snapshot ${age} ms old` };
      }
      return {
        ready: true,
        reason: collector.mode === "ebpf"
          ? "eBPF datapath"
          : `fallback: ${collector.fallbackReason}`,
      };
    },
    summary: () => summaries.build(collector.mode, collector.fallbackReason),
    logError: (e) => log("error", "request failed", { error: String(e) }),
  });

  const { hostname, port } = parseHostPort(config.api.listen);
  const stop = new AbortController();
  const server = Deno.serve({
    hostname,
    port,
    signal: stop.signal,
    onListen: ({ hostname, port }) => {
      log("info", `listening on http://${joinHostPort(hostname, port)}`, {
        mode: collector.mode,
        startup_ms: Math.round(performance.now() - startedAt),
      });
    },
  }, app.fetch);

  const done = Promise.withResolvers<void>();
  const onStop = () => done.resolve();
  const onHup = () => {
    try {
      const next = loadConfig(inputs);
      const wanted = new Set(watchedInterfaces(next));
      for (const name of collector.watched()) if (!wanted.has(name)) collector.detach(name);
      for (const name of wanted) {
        if (!collector.watched().includes(name)) {
          try {
            collector.attach(name);
          } catch (e) {
            log("warn", "attach on reload failed", { interface: name, error: String(e) });
          }
        }
      }
      renderer = metricsRenderer(next, renderer.topFlowsCap);
      mapek?.reconfigure(mapekOptions(next));
      if (next.collect.interval_ms !== config.collect.interval_ms) {
        clearInterval(timer);
        timer = setInterval(tick, next.collect.interval_ms);
      }
      config = next;
      refreshAllow(true);
      log("info", "configuration reloaded (interfaces, metrics, interval, mapek)");
      store.events.append("reload", { ok: true });
    } catch (e) {
      log("error", "reload refused: the running configuration stays", { error: String(e) });
      store.events.append("reload", { ok: false, error: String(e) });
    }
  };
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGHUP", onHup);
  try {
    await done.promise;
  } finally {
    Deno.removeSignalListener("SIGTERM", onStop);
    Deno.removeSignalListener("SIGINT", onStop);
    Deno.removeSignalListener("SIGHUP", onHup);
    clearInterval(timer);
    stop.abort();
    store.events.closeAll();
    await server.finished;
    await mesh?.stop();
    await cilium?.stop();
    mapek?.close();
    await collector.stop();
    log("info", "stopped: everything detached");
  }
  return 0;
}
