/**
 * The MAPE-K loop: at every snapshot it monitors (observation of the interval), analyzes
 * (symptoms with evidence), plans (decisions within guards) and executes (actions through the
 * datapath's Enforcer and the appliance's own settings), keeping its knowledge in SQLite.
 * Actions expire on their own (the kernel honours a block's expiry even if this process is
 * gone), can be revoked from the API, and survive a restart as their TTL says.
 */
import type { Enforcer } from "../datapath/enforce.ts";
import type { EventLog } from "../state/events.ts";
import type { HealthBoard } from "../state/health.ts";
import type { MapekSnapshot, Snapshot } from "../state/snapshot.ts";
import type { AllowList } from "./allow.ts";
import { Analyzer, type AnalyzerOptions, type Symptom, type SymptomKind } from "./analyze.ts";
import type { Config } from "../config/schema.ts";
import { Knowledge } from "./knowledge.ts";
import { Monitor } from "./monitor.ts";
import {
  type Action,
  type Decision,
  describe,
  ON_SOURCE,
  type Outcome,
  plan,
  type PlannerOptions,
} from "./plan.ts";

export interface MapekOptions extends PlannerOptions, AnalyzerOptions {}

/** What the loop acts through; each may be absent (fallback mode has no datapath). */
export interface Effectors {
  enforcer(): Enforcer | undefined;
  /** Caps the flows /metrics exports (undefined: the configured number). */
  setTopFlows(n: number | undefined): void;
}

export interface MapekDeps {
  knowledge: Knowledge;
  effectors: Effectors;
  allow: AllowList;
  events: EventLog;
  health: HealthBoard;
}

const SAVE_EVERY = 30;

export class MapekLoop {
  readonly analyzer: Analyzer;
  readonly #monitor: Monitor;
  readonly #recent = new Map<string, number>();
  /** Live actions by id (active or observed). */
  readonly #live = new Map<string, Action>();
  readonly symptomsTotal = new Map<SymptomKind, number>();
  readonly decisionsTotal = new Map<string, number>(); // "kind/outcome"
  /** Counters of blocks and rate limits that ended (live ones are read from the kernel). */
  readonly #endedTotals = { droppedPackets: 0, droppedBytes: 0, passedPackets: 0 };
  #steps = 0;
  /** A failed write to the knowledge store in the last interval. */
  #storeError: string | undefined;
  /** Symptoms of possibly spoofed sources left undecided because their budget was spent. */
  deferredTotal = 0;
  #lastSymptoms: Symptom[] = [];

  constructor(public o: MapekOptions, readonly d: MapekDeps) {
    this.analyzer = new Analyzer(o, d.knowledge.baselines());
    this.#monitor = new Monitor(o);
  }

  /** The loop's options from the configuration. */
  static optionsFrom(c: Config): MapekOptions {
    const m = c.mapek;
    return {
      mode: m.mode,
      // A rise of drops has no one source to act on: it is reported, never acted on.
      policies: { ...m.policy, drop_rise: "none" },
      ttlS: m.action_ttl_s,
      maxActions: m.max_actions,
      ratePps: m.rate_limit_pps,
      shrinkTopN: Math.max(1, Math.floor(c.metrics.top_flows / 10)),
      sampleShift: 3,
      maxUnverified: m.max_unverified_actions,
      unverifiedPerStep: m.unverified_per_interval,
      floodPps: m.flood_pps,
      halfOpenPerS: m.half_open_per_s,
      scanPorts: m.scan_ports,
      scanWindowS: m.scan_window_s,
      dropsPerS: m.drops_per_s,
      meshLoss: m.mesh_loss_percent / 100,
      flowTableFill: m.flow_table_fill_percent / 100,
    };
  }

  /**
   * The loop of a configuration, its knowledge in `<state_dir>/knowledge.db`, or in memory when
   * that cannot be opened (`onMemoryOnly` says why). Call `restore()` once its effectors work.
   */
  static fromConfig(
    c: Config,
    d: Omit<MapekDeps, "knowledge">,
    onMemoryOnly: (e: unknown) => void,
  ): MapekLoop {
    let knowledge: Knowledge;
    try {
      Deno.mkdirSync(c.state_dir, { recursive: true });
      knowledge = new Knowledge(`${c.state_dir.replace(/\/+$/, "")}/knowledge.db`);
    } catch (e) {
      onMemoryOnly(e);
      knowledge = new Knowledge(":memory:");
    }
    return new MapekLoop(MapekLoop.optionsFrom(c), { ...d, knowledge });
  }

  /**
   * Reads the live actions back: each is applied again until its expiry, or ended if that
   * passed while the appliance was down. In observe mode, enforced actions are revoked.
   */
  restore(now = Date.now()): void {
    const kept = new Set<string>();
    for (const a of this.d.knowledge.actions()) {
      if (a.expiresAt <= now) {
        this.#end(
          a,
          "expired",
          `expired at ${
            new Date(a.expiresAt).toISOString()
          } (its TTL) while the appliance was down or restarting`,
          a.expiresAt,
        );
        continue;
      }
      if (a.state !== (this.o.mode === "enforce" ? "active" : "observed")) {
        this.#end(a, "revoked", `mapek.mode is ${this.o.mode}`, now);
        continue;
      }
      try {
        if (a.state === "active") this.#apply(a);
        this.#live.set(a.id, a);
        if (a.state === "active") kept.add(a.target);
        this.d.events.append("mapek", {
          action: a.id,
          state: a.state,
          restored: true,
          target: a.target,
        });
      } catch (e) {
        this.#end(
          a,
          "failed",
          `could not be applied again after the restart: ${(e as Error).message}`,
          now,
        );
      }
    }
    // Kernel rules that no live action explains (the store was lost, or they ended while the
    // appliance was down) are removed: the map belongs to this appliance alone.
    const enf = this.d.effectors.enforcer();
    for (const r of enf?.list() ?? []) if (!kept.has(r.address)) enf!.remove(r.address);
    // Events are sampled (a pinned setting) only while a live action says so.
    const sampling = [...this.#live.values()].some((a) =>
      a.kind === "sample_events" && a.state === "active"
    );
    if (!sampling) enf?.setEventRateShift(0);
    this.#health();
  }

  /** One turn of the loop on a fresh snapshot. */
  step(s: Snapshot, nowMonoNs: number): Decision[] {
    const now = s.takenAt;
    this.#storeError = undefined; // until a write of this interval fails
    this.#expire(now);
    this.#readCounters();
    const obs = this.#monitor.observe(s, nowMonoNs);
    if (!obs) return [];
    const symptoms = this.analyzer.analyze(obs);
    this.#lastSymptoms = symptoms;
    for (const x of symptoms) {
      this.symptomsTotal.set(x.kind, (this.symptomsTotal.get(x.kind) ?? 0) + 1);
    }
    const plans = plan(symptoms, [...this.#live.values()], this.#recent, this.d.allow, this.o, now);
    this.deferredTotal += plans.deferred;
    const decisions: Decision[] = [];
    for (const p of plans) {
      const d = p.decision;
      if (p.action) {
        if (p.action.state === "active") {
          try {
            this.#apply(p.action);
          } catch (e) {
            d.outcome = "failed";
            d.reason = `could not ${describe(p.action)}: ${(e as Error).message}`;
            p.action.state = "failed";
            p.action.endedAt = now;
            p.action.endReason = d.reason;
          }
        }
        if (p.action.state !== "failed") this.#live.set(p.action.id, p.action);
        this.#persist(() => this.d.knowledge.putAction(p.action!));
      }
      this.#count(d.symptom.kind, d.outcome);
      this.#persist(() => this.d.knowledge.addDecision(d));
      this.d.events.append("mapek", {
        decision: d.id,
        symptom: d.symptom.kind,
        subject: d.symptom.subject,
        outcome: d.outcome,
        reason: d.reason,
      });
      decisions.push(d);
    }
    if (++this.#steps % SAVE_EVERY === 0) this.#persist(() => this.save());
    for (const [k, t] of this.#recent) if (now - t > this.o.ttlS * 1000) this.#recent.delete(k);
    this.#health();
    return decisions;
  }

  /**
   * A write to the knowledge store. One that fails (a full disk) is reported in health and the
   * loop goes on: the other plans of the interval still run, and what is live stays in memory.
   */
  #persist(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.#storeError = (e as Error).message;
    }
  }

  #count(kind: SymptomKind, outcome: Outcome): void {
    const k = `${kind}/${outcome}`;
    this.decisionsTotal.set(k, (this.decisionsTotal.get(k) ?? 0) + 1);
  }

  #apply(a: Action): void {
    switch (a.kind) {
      case "block":
      case "rate_limit": {
        const enf = this.d.effectors.enforcer();
        if (!enf) throw new Error("no eBPF datapath (fallback mode): nothing can enforce");
        enf.put({
          address: a.target,
          kind: a.kind === "block" ? "block" : "rateLimit",
          ratePps: a.value ?? 0,
          expiresAt: a.expiresAt,
        });
        break;
      }
      case "sample_events": {
        const enf = this.d.effectors.enforcer();
        if (!enf) throw new Error("no eBPF datapath (fallback mode): no events to sample");
        enf.setEventRateShift(a.value ?? 0);
        break;
      }
      case "shrink_top_n":
        this.d.effectors.setTopFlows(a.value);
        break;
      case "mark_degraded":
        break; // the live action itself is the mark (API, metrics)
    }
  }

  #undo(a: Action): void {
    if (a.state !== "active") return;
    switch (a.kind) {
      case "block":
      case "rate_limit":
        this.d.effectors.enforcer()?.remove(a.target);
        break;
      case "sample_events":
        this.d.effectors.enforcer()?.setEventRateShift(0);
        break;
      case "shrink_top_n":
        this.d.effectors.setTopFlows(undefined);
        break;
      case "mark_degraded":
        break;
    }
  }

  #end(a: Action, state: "expired" | "revoked" | "failed", reason: string, at: number): void {
    if (a.state === "active") {
      this.#readCounters();
      this.#endedTotals.droppedPackets += a.droppedPackets ?? 0;
      this.#endedTotals.droppedBytes += a.droppedBytes ?? 0;
      this.#endedTotals.passedPackets += a.passedPackets ?? 0;
    }
    try {
      this.#undo(a);
    } finally {
      this.#live.delete(a.id);
      a.state = state;
      a.endedAt = at;
      a.endReason = reason;
      this.#persist(() => this.d.knowledge.putAction(a));
      this.d.events.append("mapek", {
        action: a.id,
        kind: a.kind,
        target: a.target,
        state,
        reason,
      });
    }
  }

  #expire(now: number): void {
    for (const a of [...this.#live.values()]) {
      if (a.expiresAt <= now) {
        this.#end(a, "expired", `its TTL ended at ${new Date(a.expiresAt).toISOString()}`, now);
      }
    }
  }

  /** Copies the kernel's counters of blocks and rate limits into their actions. */
  #readCounters(): void {
    const enf = this.d.effectors.enforcer();
    // The kernel's rules are read only when some are in force.
    const inForce = [...this.#live.values()].filter((a) =>
      a.state === "active" && ON_SOURCE.has(a.kind)
    );
    if (!enf || inForce.length === 0) return;
    const rules = new Map(enf.list().map((r) => [r.address, r]));
    for (const a of inForce) {
      const r = rules.get(a.target);
      if (!r) continue;
      a.droppedPackets = r.droppedPackets;
      a.droppedBytes = r.droppedBytes;
      a.passedPackets = r.passedPackets;
    }
  }

  /** Ends a live action now (from the API); undefined when there is none with that id. */
  revoke(id: string, by: string): Action | undefined {
    const a = this.#live.get(id);
    if (!a) return undefined;
    this.#end(a, "revoked", `revoked by ${by}`, Date.now());
    this.#health();
    return a;
  }

  live(): Action[] {
    this.#readCounters();
    return [...this.#live.values()];
  }

  /** Live actions first, then those that ended, newest first. */
  actions(all: boolean): Action[] {
    const live = this.live();
    if (!all) return live;
    const ids = new Set(live.map((a) => a.id));
    return [...live, ...this.d.knowledge.actions(true).filter((a) => !ids.has(a.id))];
  }

  decisions(limit: number): Decision[] {
    return this.d.knowledge.decisions(limit);
  }

  /** Peers whose link a live mark_degraded action marks. */
  degradedPeers(): string[] {
    return [...this.#live.values()].filter((a) => a.kind === "mark_degraded").map((a) => a.target);
  }

  /** New options (a reload); leaving enforce mode revokes what is in force. */
  reconfigure(o: MapekOptions): void {
    const wasEnforcing = this.o.mode === "enforce";
    this.o = o;
    this.analyzer.o = o;
    this.#monitor.o = o;
    if (wasEnforcing !== (o.mode === "enforce")) this.#leaveMode(Date.now());
    this.#health();
  }

  /**
   * Ends what the other mode left live: actions in force when entering observe mode, and the
   * plans of observe mode when entering enforce mode (else they would hold back the real
   * decisions on the same targets until they expired).
   */
  #leaveMode(now: number): void {
    const left = this.o.mode === "enforce" ? "observed" : "active";
    for (const a of [...this.#live.values()]) {
      if (a.state !== left) continue;
      this.#end(a, "revoked", `mapek.mode is ${this.o.mode}`, now);
    }
    this.#recent.clear(); // decide afresh in the new mode
  }

  /** What GET /api/v1/mapek shows. */
  status() {
    const live = [...this.#live.values()];
    return {
      mode: this.o.mode,
      actionTtlSeconds: this.o.ttlS,
      maxActions: this.o.maxActions,
      policies: this.o.policies,
      active: live.filter((a) => a.state === "active").length,
      observed: live.filter((a) => a.state === "observed").length,
      unverified: {
        maxLive: this.o.maxUnverified,
        perInterval: this.o.unverifiedPerStep,
        live: live.filter((a) => a.verified === false).length,
        deferred: this.deferredTotal,
      },
      symptoms: this.#lastSymptoms,
      allow: this.d.allow.entries().map((e) => ({ network: e.cidr.text, why: e.why })),
      baselines: [...this.analyzer.baselines].slice(0, 50).map(([key, b]) => ({
        key,
        ...b.stats(),
      })),
    };
  }

  /** The loop's counters for /metrics and the status page. */
  snapshot(): MapekSnapshot {
    const enforced = { ...this.#endedTotals };
    const byKind = new Map<string, number>();
    for (const a of this.#live.values()) {
      byKind.set(`${a.kind}/${a.state}`, (byKind.get(`${a.kind}/${a.state}`) ?? 0) + 1);
      if (a.state !== "active") continue;
      enforced.droppedPackets += a.droppedPackets ?? 0;
      enforced.droppedBytes += a.droppedBytes ?? 0;
      enforced.passedPackets += a.passedPackets ?? 0;
    }
    return {
      mode: this.o.mode,
      symptoms: Object.fromEntries(this.symptomsTotal),
      decisions: [...this.decisionsTotal].map(([k, count]) => {
        const [symptom, outcome] = k.split("/");
        return { symptom, outcome, count };
      }),
      actions: [...byKind].map(([k, count]) => {
        const [kind, state] = k.split("/");
        return { kind, state, count };
      }),
      enforced,
      degradedPeers: this.degradedPeers(),
    };
  }

  #health(): void {
    const active = [...this.#live.values()].filter((a) => a.state === "active").length;
    const observed = this.#live.size - active;
    const volatile = this.d.knowledge.path === ":memory:";
    const store = this.#storeError;
    this.d.health.set(
      "mapek",
      volatile || store ? "degraded" : "healthy",
      (this.o.mode === "enforce"
        ? `enforce mode: ${active} action(s) in force`
        : `observe mode: ${observed} plan(s) shown, nothing executed`) +
        (volatile ? "; knowledge kept in memory only (the store could not be opened)" : "") +
        (store ? `; the knowledge store cannot be written: ${store}` : ""),
    );
  }

  /** Writes the baselines; decisions and actions are written as they happen. */
  save(): void {
    this.d.knowledge.saveBaselines(this.analyzer.saved());
    this.d.knowledge.prune();
  }

  close(): void {
    this.save();
    this.d.knowledge.close();
  }
}
