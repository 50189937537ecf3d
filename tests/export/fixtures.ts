/**
 * What the IPFIX tests share: flows and snapshots made from objects, a transport that keeps what
 * it is given (or fails as told), a clock the test moves, and the records a collector would see.
 */
import type { Transport } from "../../src/export/ipfix_exporter.ts";
import type { FlowSnapshot } from "../../src/flows/key.ts";
import { formatAddress, parseAddress } from "../../src/net/address.ts";
import type { Snapshot } from "../../src/state/snapshot.ts";
import { Collector, type DataRecord } from "./decode.ts";
import { snapshotOf } from "../helpers/snapshot.ts";

export const SECOND = 1e9;

/** Flow number `i`: IPv4 or IPv6, TCP or UDP, received or sent, all distinct by 5-tuple. */
export function flow(i: number, o: Partial<FlowSnapshot> = {}): FlowSnapshot {
  const v6 = i % 3 === 0;
  const tx = i % 2 === 1;
  return {
    ifindex: 2 + (i % 2),
    hook: tx ? "tcEgress" : "tcIngress",
    family: v6 ? 6 : 4,
    proto: i % 4 === 0 ? 6 : 17,
    saddr: v6
      ? `fd00:1::${(i & 0xffff).toString(16)}`
      : `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    daddr: v6 ? "fd00:2::1" : "192.0.2.1",
    sport: 1024 + (i % 60000),
    dport: 53,
    packets: 1,
    bytes: 100,
    firstSeenNs: SECOND,
    lastSeenNs: SECOND,
    tcpFlags: 0,
    fragment: false,
    interface: `eth${i % 2}`,
    direction: tx ? "tx" : "rx",
    ...o,
  };
}

/** The 5-tuple and direction of a flow, as the test compares records with flows. */
export function flowKey(f: FlowSnapshot): string {
  const a = (x: string) => {
    const p = parseAddress(x);
    return formatAddress(p.bytes, p.family);
  };
  return `${a(f.saddr)} ${f.sport} ${a(f.daddr)} ${f.dport} ${f.proto} ${f.direction}`;
}

export function snapshot(flows: FlowSnapshot[], mode: "ebpf" | "fallback" = "ebpf"): Snapshot {
  const s = snapshotOf(flows, { mode });
  s.flowTable.capacity = 0;
  return s;
}

/** A clock the test moves: the datapath's ns and the wall's ms, together. */
export class Clock {
  ns = 100 * SECOND;
  /** The wall clock's ms at the datapath's 0, so that now is now (collectors check times). */
  readonly wallAtZero = Date.now() - 100_000;
  mono = () => this.ns;
  wall = () => this.wallAtZero + this.ns / 1e6;
  advance(seconds: number): void {
    this.ns += seconds * SECOND;
  }
}

/** A transport that keeps every message, or fails with `failWith` (an errno code). */
export class FakeTransport implements Transport {
  sent: Uint8Array[] = [];
  failWith?: string;
  attempts = 0;
  closed = false;

  send(msg: Uint8Array): Promise<void> {
    this.attempts++;
    if (this.failWith) {
      return Promise.reject(Object.assign(new Error(this.failWith), { code: this.failWith }));
    }
    this.sent.push(msg.slice());
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
  }
}

/** Lets the exporter's pump run (the fake transport answers at once). */
export const settle = () => new Promise((r) => setTimeout(r, 0));

export interface Rec {
  key: string;
  packets: number;
  octets: number;
  reason: number;
  startMs: number;
  endMs: number;
  flags: number;
  ifindex: number;
}

/** A flow record as the test compares it. */
export function rec(r: DataRecord): Rec {
  const egress = r.get(61) === 1;
  const v6 = r.has(27);
  return {
    key: `${r.get(v6 ? 27 : 8)} ${r.get(7)} ${r.get(v6 ? 28 : 12)} ${r.get(11)} ${r.get(4)} ${
      egress ? "tx" : "rx"
    }`,
    packets: r.get(2) as number,
    octets: r.get(1) as number,
    reason: r.get(136) as number,
    startMs: r.get(152) as number,
    endMs: r.get(153) as number,
    flags: r.get(6) as number,
    ifindex: (egress ? r.get(14) : r.get(10)) as number,
  };
}

/** Parses messages in order as one collector; flow records and the headers' checks. */
export function collect(messages: Uint8Array[], c = new Collector()) {
  const records: Rec[] = [];
  const sequences: { sequence: number; dataRecords: number }[] = [];
  let templateMessages = 0;
  for (const m of messages) {
    const p = c.parse(m);
    sequences.push({ sequence: p.header.sequence, dataRecords: p.dataRecords });
    if (p.sets.some((s) => s.templates)) templateMessages++;
    for (const s of p.sets) {
      if (s.id >= 256 && s.id <= 259) records.push(...s.records!.map(rec));
    }
  }
  return { records, sequences, templateMessages };
}

/** Sum of packets and octets per flow key. */
export function sums(records: Rec[]): Map<string, { packets: number; octets: number }> {
  const out = new Map<string, { packets: number; octets: number }>();
  for (const r of records) {
    const s = out.get(r.key) ?? { packets: 0, octets: 0 };
    s.packets += r.packets;
    s.octets += r.octets;
    out.set(r.key, s);
  }
  return out;
}
