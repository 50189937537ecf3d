/**
 * What a subsystem implements to put its families on the /metrics page, after node_exporter's
 * collectors: a class whose constructor adds its families to the page (through Families, which
 * names them with PREFIX) and whose `write` sets their series from each snapshot. Each one lives
 * next to its subsystem's code; MetricsRenderer (exposition.ts) composes them in a fixed order.
 */
import type { FlowFilter } from "../flows/table.ts";
import type { ComponentHealth, Snapshot } from "../state/snapshot.ts";
import type { MetricFamily, MetricGroup, MetricHistogram, MetricSet } from "./writer.ts";

/** The start of every family name the appliance exports. */
export const PREFIX = "x0tta6bl4_";

export interface BuildInfo {
  version: string;
  commit: string;
  denoVersion: string;
}

/** One scrape: the page's options and what it shows beside the snapshot. */
export interface Scrape {
  /** Whether an interface's series are exported (its name passes the allow and deny globs). */
  accepts(interfaceName: string): boolean;
  /** The flows that may be exported (those on accepted interfaces), for FlowTable.query. */
  readonly flows: FlowFilter;
  /** How many flows are exported at most, the largest by bytes. */
  readonly topFlows: number;
  readonly health: readonly ComponentHealth[];
  readonly build: BuildInfo;
}

/** The families of one subsystem. */
export interface SnapshotCollector {
  /** Sets this scrape's series of the collector's families. */
  write(s: Snapshot, scrape: Scrape): void;
}

/** A collector's class: the constructor adds its families, in the order they are rendered. */
export type SnapshotCollectorClass = new (families: Families) => SnapshotCollector;

/** Adds families to a set, each named PREFIX + name. */
export class Families {
  readonly #set: MetricSet;

  constructor(set: MetricSet) {
    this.#set = set;
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): MetricFamily {
    return this.#set.gauge(PREFIX + name, help, labelNames);
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): MetricFamily {
    return this.#set.counter(PREFIX + name, help, labelNames);
  }

  /** Counters that share their labels and series (one lookup for all; see MetricGroup). */
  counters(
    labelNames: readonly string[],
    ...families: [name: string, help: string][]
  ): MetricGroup {
    return this.#set.group(
      families.map(([name, help]) => ({ name: PREFIX + name, type: "counter", help })),
      labelNames,
    );
  }

  histogram(
    name: string,
    help: string,
    bounds: readonly number[],
    labelNames: readonly string[] = [],
  ): MetricHistogram {
    return this.#set.histogram(PREFIX + name, help, bounds, labelNames);
  }
}
