/** The loop's options from the configuration (one place: the appliance and the benchmarks). */
import type { Config } from "../config/schema.ts";
import type { MapekOptions } from "./loop.ts";

export function mapekOptions(c: Config): MapekOptions {
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
    floodPps: m.flood_pps,
    halfOpenPerS: m.half_open_per_s,
    scanPorts: m.scan_ports,
    scanWindowS: m.scan_window_s,
    dropsPerS: m.drops_per_s,
    meshLoss: m.mesh_loss_percent / 100,
    flowTableFill: m.flow_table_fill_percent / 100,
  };
}
