/**
 * The mesh's HTTP routes: this node's status, its peers (with the links a MAPE-K action marks
 * degraded) and Prometheus HTTP service discovery. Each is a 404 problem while the mesh is off.
 */
import { type Context, Hono } from "hono";
import { problem } from "../http/problem.ts";
import type { MeshService } from "./service.ts";

const off = (c: Context) =>
  problem(c, 404, "mesh not enabled", "set mesh.enabled (and mesh.key_file) to join a mesh");

export function meshRoutes(
  mesh: Pick<MeshService, "last" | "discovery"> | undefined,
  /** Names of the peers whose link is marked degraded. */
  degradedPeers: () => string[],
): Hono {
  const r = new Hono();
  r.get("/api/v1/mesh/status", (c) => {
    if (!mesh) return off(c);
    const m = mesh.last;
    const counts = { alive: 0, suspect: 0, dead: 0, left: 0 };
    for (const p of m?.peers ?? []) counts[p.state]++;
    return c.json({
      id: m?.id,
      name: m?.name,
      listen: m?.listen,
      peers: counts,
      datagrams: m?.datagrams,
      dropped: m?.dropped,
    });
  });
  r.get("/api/v1/mesh/peers", (c) => {
    if (!mesh) return off(c);
    // A link a MAPE-K action marks degraded says so, for consumers of this list.
    const degraded = new Set(degradedPeers());
    return c.json({
      peers: (mesh.last?.peers ?? []).map((p) => ({
        ...p,
        since: new Date(p.since).toISOString(),
        degraded: degraded.has(p.name),
      })),
    });
  });
  r.get("/api/v1/mesh/sd", (c) => mesh ? c.json(mesh.discovery()) : off(c));
  return r;
}
