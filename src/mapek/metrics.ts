/** The MAPE-K loop's families on /metrics: its mode, symptoms, decisions and live actions. */
import type { Families, SnapshotCollector } from "../metrics/collector.ts";
import type { Snapshot } from "../state/snapshot.ts";
import { SYMPTOM_KINDS } from "./analyze.ts";
import { ACTION_KINDS } from "./plan.ts";

/** The loop's counters and actions, what its blocks and rate limits did, degraded links. */
export class MapekMetrics implements SnapshotCollector {
  readonly #mode;
  readonly #symptoms;
  readonly #decisions;
  readonly #actions;
  readonly #enforced;
  readonly #enforcedBytes;
  readonly #meshDegraded;

  constructor(f: Families) {
    this.#mode = f.gauge(
      "mapek_mode",
      "1 for the MAPE-K loop's mode (observe or enforce), 0 for the other.",
      ["mode"],
    );
    this.#symptoms = f.counter(
      "mapek_symptoms_total",
      "Symptoms the MAPE-K analyzer found, by kind.",
      ["kind"],
    );
    this.#decisions = f.counter(
      "mapek_decisions_total",
      "MAPE-K decisions by symptom kind and outcome (executed, observed, reported, skipped, failed).",
      ["symptom", "outcome"],
    );
    this.#actions = f.gauge(
      "mapek_actions",
      "Live MAPE-K actions by kind and state (active: in force; observed: planned, not executed).",
      ["kind", "state"],
    );
    this.#enforced = f.counter(
      "mapek_enforced_packets_total",
      "Packets that MAPE-K blocks and rate limits dropped or let through, in the datapath.",
      ["verdict"],
    );
    this.#enforcedBytes = f.counter(
      "mapek_enforced_dropped_bytes_total",
      "Bytes that MAPE-K blocks and rate limits dropped in the datapath.",
    );
    this.#meshDegraded = f.gauge(
      "mesh_link_degraded",
      "1 while a MAPE-K action marks the link to a mesh peer degraded.",
      ["peer"],
    );
  }

  write(s: Snapshot): void {
    const m = s.mapek;
    if (!m) return;
    for (const mode of ["observe", "enforce"] as const) {
      this.#mode.set([mode], m.mode === mode ? 1 : 0);
    }
    for (const kind of SYMPTOM_KINDS) this.#symptoms.set([kind], m.symptoms[kind] ?? 0);
    for (const d of m.decisions) this.#decisions.set([d.symptom, d.outcome], d.count);
    for (const kind of ACTION_KINDS) {
      for (const state of ["active", "observed"]) {
        const live = m.actions.find((a) => a.kind === kind && a.state === state);
        this.#actions.set([kind, state], live?.count ?? 0);
      }
    }
    this.#enforced.set(["dropped"], m.enforced.droppedPackets);
    this.#enforced.set(["passed"], m.enforced.passedPackets);
    this.#enforcedBytes.set([], m.enforced.droppedBytes);
    for (const peer of m.degradedPeers) this.#meshDegraded.set([peer], 1);
  }
}
