/**
 * The mesh at fleet scale through the simulator (scripts/mesh_sim.ts): 100 real MeshNodes on a
 * virtual network that drops 10% of datagrams, 10 of them killed at random moments. Every
 * survivor must come to know of every death, soon, and no live node may ever be declared dead.
 */
import assert from "node:assert/strict";
import { simulate } from "../../scripts/mesh_sim.ts";

Deno.test("mesh sim: 100 nodes, 10% loss, 10 kills: every death known by every survivor, no false death", () => {
  const r = simulate({ nodes: 100, seconds: 30, loss: 0.1, kills: 10, seed: 16 });
  assert.equal(r.killed, 10);
  assert.equal(r.detected, 90 * 10, JSON.stringify(r));
  assert.equal(r.false_dead, 0, JSON.stringify(r));
  assert.ok(r.detect_ms.median !== null && r.detect_ms.median <= 2000, JSON.stringify(r));
  // Nodes join within half a second of each other: all know all before the first kill (9 s).
  assert.ok(r.converge_ms !== null, JSON.stringify(r));
});

Deno.test("mesh sim: 10 nodes without loss: the fleet forms before the first kill, every death known, none false", () => {
  const r = simulate({ nodes: 10, seconds: 20, loss: 0, kills: 3, seed: 3 });
  assert.equal(r.detected, 7 * 3, JSON.stringify(r));
  assert.equal(r.false_dead, 0, JSON.stringify(r));
  assert.ok(r.converge_ms !== null, JSON.stringify(r));
});
