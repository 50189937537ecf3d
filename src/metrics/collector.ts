/** What a module needs to add families to the /metrics page: their prefix, and Families. */
import type { MetricFamily, MetricSet } from "./writer.ts";

/** The start of every family name the appliance exports. */
export const PREFIX = "x0tta6bl4_";

/** Adds families to a set, each named PREFIX + name. */
export class Families {
  constructor(readonly set: MetricSet) {}

  gauge(name: string, help: string, labelNames: readonly string[] = []): MetricFamily {
    return this.set.gauge(PREFIX + name, help, labelNames);
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): MetricFamily {
    return this.set.counter(PREFIX + name, help, labelNames);
  }
}
