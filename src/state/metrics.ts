/**
 * The appliance's own families on /metrics: each component's health, the collector mode, when
 * the snapshot was taken, and the build.
 */
import type { Families, Scrape, SnapshotCollector } from "../metrics/collector.ts";
import type { HealthState, Snapshot } from "./snapshot.ts";

const HEALTH_STATES: readonly HealthState[] = ["healthy", "degraded", "unhealthy"];

/** Clients of the live event stream (/api/v1/events): a slow one costs only itself. */
export class EventClientMetrics implements SnapshotCollector {
  readonly #connected;
  readonly #lost;
  readonly #letGo;

  constructor(f: Families) {
    this.#connected = f.gauge("event_clients", "Clients of the live event stream now.");
    this.#lost = f.counter(
      "event_client_lost_events_total",
      "Events slow clients of the live event stream lost (each only its own; told with a gap).",
    );
    this.#letGo = f.counter(
      "event_clients_disconnected_total",
      "Clients of the live event stream disconnected for falling a whole queue behind.",
    );
  }

  write(s: Snapshot): void {
    const c = s.eventClients;
    if (!c) return;
    this.#connected.set([], c.connected);
    this.#lost.set([], c.lost);
    this.#letGo.set([], c.letGo);
  }
}

/** Component health, the collector mode, the snapshot's time and the build (always 1). */
export class ApplianceMetrics implements SnapshotCollector {
  readonly #health;
  readonly #mode;
  readonly #snapshotTime;
  readonly #buildInfo;

  constructor(f: Families) {
    this.#health = f.gauge(
      "component_health",
      "1 for a component's current state (healthy, degraded, unhealthy), 0 for the others.",
      ["component", "state"],
    );
    this.#mode = f.gauge(
      "mode",
      "1 for the collector mode in use (ebpf or fallback), 0 for the other.",
      ["mode"],
    );
    this.#snapshotTime = f.gauge(
      "snapshot_timestamp_seconds",
      "When the snapshot shown was taken, in seconds since the epoch.",
    );
    this.#buildInfo = f.gauge(
      "build_info",
      "Build of the appliance; always 1.",
      ["version", "commit", "deno"],
    );
  }

  write(s: Snapshot, scrape: Scrape): void {
    const pair = ["", ""];
    for (const h of scrape.health) {
      pair[0] = h.component;
      for (const state of HEALTH_STATES) {
        pair[1] = state;
        this.#health.set(pair, h.state === state ? 1 : 0);
      }
    }
    for (const mode of ["ebpf", "fallback"] as const) {
      this.#mode.set([mode], s.mode === mode ? 1 : 0);
    }
    this.#snapshotTime.set([], s.takenAt / 1000);
    const b = scrape.build;
    this.#buildInfo.set([b.version, b.commit, b.denoVersion], 1);
  }
}
