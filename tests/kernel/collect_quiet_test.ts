/**
 * The collector reads the flow table only when packets were counted since its last read: on a
 * quiet datapath a snapshot keeps the table in hand, and the next packet brings a full read
 * with every flow's counters up to date.
 */
import assert from "node:assert/strict";
import { Bpffs } from "../helpers/daemon.ts";
import { sh, VethPair } from "../helpers/netns.ts";

const HELPER = new URL("../helpers/collect_quiet.ts", import.meta.url).pathname;

Deno.test("collector: a quiet datapath's flow table is not read again; the next packet is", () => {
  using v = new VethPair(86);
  using bpffs = new Bpffs();
  const out = JSON.parse(
    sh(
      Deno.execPath(),
      ["run", "-A", HELPER, v.b.dev, `${bpffs.path}/x0tta6bl4`, v.a.ns, v.a.ip4, v.b.ip4],
      v.b.ns,
    ),
  );
  assert.deepEqual(out.first, { packets: 5, read: true });
  assert.deepEqual(out.quiet, { packets: 5, read: false }, "nothing counted: the table kept");
  assert.deepEqual(out.next, { packets: 8, read: true }, "packets counted: the table read");
  assert.equal(out.other.packets, 1);
});
