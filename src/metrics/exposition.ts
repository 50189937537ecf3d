/**
 * The Prometheus /metrics page: one snapshot, the components' health and the build, as text
 * exposition format 0.0.4, with the appliance's own process metrics appended (`render`);
 * `renderSnapshot` gives the same text without the process metrics.
 *
 * Each subsystem writes its own families with a collector next to its code (see collector.ts);
 * the renderer owns the page's families, the interface filter and the top-N cap, and calls the
 * collectors in a fixed order, the order of the page.
 *
 * Every family is re-set from the snapshot on each render, so series that are gone from the
 * snapshot (an interface removed, a flow that left the top N) are gone from the page too. Base
 * units throughout: bytes, seconds, ratios in [0, 1].
 */
import {
  FlowTableMetrics,
  InterfaceMetrics,
  ProgramMetrics,
  RingBufferMetrics,
  TopFlowMetrics,
} from "../collect/metrics.ts";
import { SignalMetrics, TcpRttMetrics } from "../collect/signals_metrics.ts";
import type { Config } from "../config/schema.ts";
import type { FlowFilter } from "../flows/table.ts";
import { ExportMetrics } from "../export/metrics.ts";
import { MapekMetrics } from "../mapek/metrics.ts";
import { MeshMetrics, MeshRttMetrics } from "../mesh/metrics.ts";
import { ApplianceMetrics, EventClientMetrics } from "../state/metrics.ts";
import type { ComponentHealth, Snapshot } from "../state/snapshot.ts";
import {
  type BuildInfo,
  Families,
  type Scrape,
  type SnapshotCollector,
  type SnapshotCollectorClass,
} from "./collector.ts";
import { ProcessMetrics } from "./process.ts";
import { MetricSet } from "./writer.ts";

export type { BuildInfo } from "./collector.ts";

/** The Content-Type of what `render` returns. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface MetricsOptions {
  /** Flows exported, the largest by bytes (0: none). */
  topFlows: number;
  /** Glob patterns (`*`, `?`) of interfaces to export; empty: all. */
  interfaceAllow: string[];
  /** Glob patterns of interfaces never exported; wins over interfaceAllow. */
  interfaceDeny: string[];
  /** Append the process's own metrics (default true). */
  processMetrics?: boolean;
}

/** A glob (`*` any run, `?` any one character, everything else literal) as a RegExp. */
export function globToRegExp(glob: string): RegExp {
  let re = "^";
  for (const c of glob) {
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else re += c.replace(/[\\^$.|+(){}[\]*?]/g, "\\$&");
  }
  return new RegExp(`${re}$`, "u");
}

/** Which interface names pass the allow and deny globs (deny wins; no allow: all allowed). */
export class InterfaceFilter {
  readonly #allow: RegExp[];
  readonly #deny: RegExp[];
  readonly #memo = new Map<string, boolean>();
  /** The last name asked about and the answer: flows come in runs of one interface. */
  #lastName: string | undefined;
  #lastOk = true;

  constructor(allow: readonly string[], deny: readonly string[]) {
    this.#allow = allow.map(globToRegExp);
    this.#deny = deny.map(globToRegExp);
  }

  /** Whether every name passes (no patterns at all). */
  get acceptsAll(): boolean {
    return this.#allow.length === 0 && this.#deny.length === 0;
  }

  accepts(name: string): boolean {
    if (name === this.#lastName) return this.#lastOk;
    let ok = this.#memo.get(name);
    if (ok === undefined) {
      ok = !this.#deny.some((r) => r.test(name)) &&
        (this.#allow.length === 0 || this.#allow.some((r) => r.test(name)));
      if (this.#memo.size >= 4096) this.#memo.clear();
      this.#memo.set(name, ok);
    }
    this.#lastName = name;
    this.#lastOk = ok;
    return ok;
  }
}

/**
 * The page's collectors, in the order their families are rendered: the two histograms last,
 * where the page has always had them.
 */
const COLLECTORS: readonly SnapshotCollectorClass[] = [
  InterfaceMetrics,
  FlowTableMetrics,
  TopFlowMetrics,
  RingBufferMetrics,
  ProgramMetrics,
  SignalMetrics,
  MeshMetrics,
  MapekMetrics,
  ExportMetrics,
  EventClientMetrics,
  ApplianceMetrics,
  MeshRttMetrics,
  TcpRttMetrics,
];

/** Renders snapshots as Prometheus text; keep one per scrape endpoint (it caches series text). */
export class MetricsRenderer {
  readonly #opts: MetricsOptions;
  readonly #accepts: (interfaceName: string) => boolean;
  readonly #flows: FlowFilter;
  readonly #set = new MetricSet();
  readonly #collectors: SnapshotCollector[];
  readonly #process: ProcessMetrics | undefined;
  /** A lower top-N while the appliance is under pressure (a MAPE-K shrink_top_n action). */
  topFlowsCap?: number;

  constructor(opts: MetricsOptions) {
    this.#opts = { ...opts };
    const filter = new InterfaceFilter(opts.interfaceAllow, opts.interfaceDeny);
    this.#accepts = (name) => filter.accepts(name);
    // With no pattern at all, no interface test per flow.
    this.#flows = { interfaceName: filter.acceptsAll ? undefined : this.#accepts };
    const families = new Families(this.#set);
    this.#collectors = COLLECTORS.map((C) => new C(families));
    if (opts.processMetrics ?? true) {
      this.#process = new ProcessMetrics();
      const clash = this.#process.names.filter((n) => this.#set.has(n));
      if (clash.length) throw new Error(`metric families defined twice: ${clash.join(", ")}`);
    }
  }

  /** The renderer of a configuration's `metrics` section, with a MAPE-K cap on the top flows. */
  static fromConfig(c: Config, topFlowsCap?: number): MetricsRenderer {
    const r = new MetricsRenderer({
      topFlows: c.metrics.top_flows,
      interfaceAllow: [...c.metrics.interface_allow],
      interfaceDeny: [...c.metrics.interface_deny],
    });
    r.topFlowsCap = topFlowsCap;
    return r;
  }

  /** Names of the families this renderer writes itself, in order. */
  get familyNames(): string[] {
    return this.#set.names;
  }

  /** Names of the process metric families (none when disabled). */
  get processFamilyNames(): string[] {
    return this.#process?.names ?? [];
  }

  /** The whole page: `renderSnapshot`, then the process metrics. */
  render(s: Snapshot, health: ComponentHealth[], build: BuildInfo): string {
    const own = this.renderSnapshot(s, health, build);
    if (this.#process === undefined) return own;
    return `${own}${this.#process.render()}`;
  }

  /** Every family from the snapshot, health and build; synchronous, no process metrics. */
  renderSnapshot(s: Snapshot, health: ComponentHealth[], build: BuildInfo): string {
    const scrape: Scrape = {
      accepts: this.#accepts,
      flows: this.#flows,
      topFlows: Math.min(this.#opts.topFlows, this.topFlowsCap ?? Infinity),
      health,
      build,
    };
    for (const c of this.#collectors) c.write(s, scrape);
    return this.#set.render();
  }
}
