/**
 * For the remote-write tests: snapshots to render (one interface's counters and flows), a
 * request body decoded back to series and samples (with the bits of each value, so a stale
 * marker can be told from a NaN), and a free loopback port.
 */
import { uncompress } from "snappyjs";
import { WRITE_REQUEST } from "../../src/export/remote_write_wire.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { FlowTable } from "../../src/flows/table.ts";
import type { Snapshot } from "../../src/state/snapshot.ts";

export const BUILD = { version: "0.1.0", commit: "0123abc", denoVersion: "2.9.6" };

/** A UDP flow received on eth0 to `dport`, of `bytes` bytes (100 per packet). */
export function flow(dport: number, bytes: number): FlowSnapshot {
  return {
    ifindex: 2,
    hook: "tcIngress",
    family: 4,
    proto: 17,
    saddr: "10.0.0.1",
    daddr: "10.0.0.2",
    sport: 40000,
    dport,
    packets: bytes / 100,
    bytes,
    firstSeenNs: 1,
    lastSeenNs: 2,
    tcpFlags: 0,
    fragment: false,
    interface: "eth0",
    direction: "rx",
  };
}

/** A snapshot of eth0 with `rxPackets` UDP packets received (150 bytes each) and `flows`. */
export function snapshot(
  flows: FlowSnapshot[],
  o: { rxPackets?: number; takenAt?: number } = {},
): Snapshot {
  const packets = o.rxPackets ?? 10;
  return {
    takenAt: o.takenAt ?? 1_700_000_000_250,
    mode: "ebpf",
    interfaces: [{
      ifindex: 2,
      name: "eth0",
      source: "ebpf",
      hooks: ["tcIngress"],
      traffic: [
        { direction: "rx", family: "ipv4", protocol: "udp", packets, bytes: packets * 150 },
      ],
      malformed: {},
      fragments: 0,
      vlanTagged: 0,
    }],
    flowTable: {
      entries: flows.length,
      capacity: 1024,
      created: flows.length,
      evicted: 0,
      insertFailed: 0,
    },
    events: { sent: 0, suppressed: 0, lostKernel: 0, lostConsumer: 0, consumed: 0 },
    programs: [],
    bpfStatsEnabled: false,
    flows: FlowTable.from(flows),
  };
}

export interface DecodedSeries {
  labels: Record<string, string>;
  samples: { value: number; bits: bigint; timestamp: number }[];
}

interface Wire {
  timeseries?: {
    labels?: { name: string; value: string }[];
    samples?: { value: { low: number; high: number }; timestamp: number }[];
  }[];
}

/** A remote-write body (snappy, then WriteRequest) as series and samples; throws if invalid. */
export function decodeWriteRequest(body: Uint8Array): DecodedSeries[] {
  const req = WRITE_REQUEST.toObject(WRITE_REQUEST.decode(uncompress(body)), {
    longs: Object, // fixed64 values as { low, high }: their bits
    defaults: true,
  }) as Wire;
  return (req.timeseries ?? []).map((ts) => ({
    labels: Object.fromEntries((ts.labels ?? []).map((l) => [l.name, l.value])),
    samples: (ts.samples ?? []).map((s) => {
      const d = new DataView(new ArrayBuffer(8));
      d.setUint32(0, s.value.low >>> 0, true);
      d.setUint32(4, s.value.high >>> 0, true);
      return {
        value: d.getFloat64(0, true),
        bits: d.getBigUint64(0, true),
        timestamp: Number(s.timestamp),
      };
    }),
  }));
}

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it at once). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
