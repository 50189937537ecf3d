/**
 * Runs inside a test namespace (`ip netns exec`, which gives the collector that namespace's
 * /sys): a collector watching IFACE, with UDP datagrams sent from namespace NS_A to DST
 * between its snapshots; prints what each step saw as JSON for collect_quiet_test.ts.
 *   deno run -A collect_quiet.ts IFACE BPFFS_DIR NS_A SRC DST
 */
import { Collector } from "../../src/collect/collector.ts";
import { defaultConfig } from "../../src/config/schema.ts";
import { EventLog } from "../../src/state/events.ts";
import { HealthBoard } from "../../src/state/health.ts";
import { udpSend } from "./netns.ts";

const [iface, bpffsDir, nsA, src, dst] = Deno.args;
const c = defaultConfig();
c.datapath.interfaces = [iface];
c.datapath.bpffs_dir = bpffsDir;
c.datapath.fallback = false;
c.signals = { drops: false, retransmits: false, rtt: false };
const collector = new Collector(Collector.optionsFrom(c), new HealthBoard(), new EventLog());
try {
  collector.start();
  const flows = collector.datapath!.flows;
  let reads = 0;
  const batches = flows.batches.bind(flows);
  flows.batches = (n?: number) => (reads++, batches(n));
  /** Packets from SRC to `port` in a new snapshot (every sending socket is a flow of its
   * own), and whether the snapshot read the table. */
  const snapshot = (port: number) => {
    const before = reads;
    const packets = collector.collect().flows.toArray()
      .filter((f) => f.dport === port && f.saddr === src)
      .reduce((n, f) => n + f.packets, 0);
    return { packets, read: reads > before };
  };
  udpSend(nsA, dst, 7001, 5, 20);
  const first = snapshot(7001);
  // Wait until a snapshot finds nothing counted since the last read (the namespace's own ND
  // and MLD traffic dies down).
  let quiet = snapshot(7001);
  for (let i = 0; i < 50 && quiet.read; i++) {
    await new Promise((r) => setTimeout(r, 100));
    quiet = snapshot(7001);
  }
  udpSend(nsA, dst, 7001, 3, 20);
  udpSend(nsA, dst, 7002, 1, 20);
  const next = snapshot(7001);
  console.log(JSON.stringify({ first, quiet, next, other: snapshot(7002) }));
} finally {
  await collector.stop();
}
