/**
 * The flows of one snapshot, column by column: raw keys and summed counters in typed arrays,
 * not one object per flow. At 100k flows every second, objects cost the appliance hundreds of
 * megabytes of heap; columns cost 80 bytes a flow. Flows become objects only when read: the
 * top N for the API or /metrics.
 */
import { FLOW_KEY } from "../../ffi/layout.ts";
import { type Address, formatAddress } from "../net/address.ts";
import { hasPorts } from "../net/protocol.ts";
import { decodeFlowKey, directionOf, encodeFlowKey, type FlowSnapshot } from "./key.ts";

const K = FLOW_KEY.members;
export type FlowOrder = "bytes" | "packets" | "lastSeenNs";

/** Counters of one flow, summed over CPUs (and the flow cache). */
export interface FlowCounters {
  packets: number;
  bytes: number;
  firstSeenNs: number;
  lastSeenNs: number;
  tcpFlags: number;
  fragment: number;
}

/** Which flows a query wants; a condition left out accepts every flow. */
export interface FlowFilter {
  /** Flows seen on one of these interfaces. */
  ifindexes?: ReadonlySet<number>;
  /** Flows on an interface whose name passes (e.g. /metrics' allow and deny patterns). */
  interfaceName?: (name: string) => boolean;
  /** IP protocol number. */
  proto?: number;
  /** Flows from or to this address. */
  address?: Address;
  /** TCP or UDP flows from or to this port. */
  port?: number;
}

export class FlowTable {
  #size = 0;
  #keys: Uint8Array;
  #packets: Float64Array;
  #bytes: Float64Array;
  #first: Float64Array;
  #last: Float64Array;
  #flags: Uint8Array;
  #fragment: Uint8Array;

  /**
   * Interface names by ifindex, resolved when the snapshot was taken (never by a reader: a
   * scrape or an API call asks the kernel nothing); an ifindex without one shows as its number.
   */
  names: ReadonlyMap<number, string> = new Map();

  constructor(capacity = 1024) {
    capacity = Math.max(16, capacity);
    this.#keys = new Uint8Array(capacity * FLOW_KEY.size);
    this.#packets = new Float64Array(capacity);
    this.#bytes = new Float64Array(capacity);
    this.#first = new Float64Array(capacity);
    this.#last = new Float64Array(capacity);
    this.#flags = new Uint8Array(capacity);
    this.#fragment = new Uint8Array(capacity);
  }

  /** A table of objects (for tests and small callers). */
  static from(flows: FlowSnapshot[]): FlowTable {
    const t = new FlowTable(flows.length);
    t.names = new Map(flows.map((f) => [f.ifindex, f.interface]));
    const key = new Uint8Array(FLOW_KEY.size);
    for (const f of flows) t.push(encodeFlowKey(f, key), 0, { ...f, fragment: f.fragment ? 1 : 0 });
    return t;
  }

  get size(): number {
    return this.#size;
  }

  /** Empties the table, keeping its storage for the next snapshot. */
  clear(): void {
    this.#size = 0;
  }

  push(keys: Uint8Array, at: number, c: FlowCounters): void {
    if (this.#size === this.#packets.length) this.#grow();
    const i = this.#size++;
    this.#keys.set(keys.subarray(at, at + FLOW_KEY.size), i * FLOW_KEY.size);
    this.#packets[i] = c.packets;
    this.#bytes[i] = c.bytes;
    this.#first[i] = c.firstSeenNs;
    this.#last[i] = c.lastSeenNs;
    this.#flags[i] = c.tcpFlags;
    this.#fragment[i] = c.fragment;
  }

  #grow(): void {
    const n = this.#packets.length * 2;
    const grow = <T extends Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(a === this.#keys ? n * FLOW_KEY.size : n);
      b.set(a);
      return b;
    };
    this.#keys = grow(this.#keys, (m) => new Uint8Array(m));
    this.#packets = grow(this.#packets, (m) => new Float64Array(m));
    this.#bytes = grow(this.#bytes, (m) => new Float64Array(m));
    this.#first = grow(this.#first, (m) => new Float64Array(m));
    this.#last = grow(this.#last, (m) => new Float64Array(m));
    this.#flags = grow(this.#flags, (m) => new Uint8Array(m));
    this.#fragment = grow(this.#fragment, (m) => new Uint8Array(m));
  }

  /**
   * Index of the flow with each of these raw keys, or -1: one pass over the table, comparing
   * whole keys only where a cheap fingerprint (ports and the source's first bytes) matches.
   */
  findAll(keys: Uint8Array[]): number[] {
    const out = keys.map(() => -1);
    if (keys.length === 0) return out;
    const fp = (k: Uint8Array, at: number) =>
      ((k[at + K.sport[0]] << 24) | (k[at + K.sport[0] + 1] << 16) |
        (k[at + K.dport[0]] << 8) | k[at + K.dport[0] + 1]) ^
      ((k[at + 2] << 8) | k[at + 3]);
    const wanted = new Map<number, number[]>();
    keys.forEach((k, j) => {
      const f = fp(k, 0);
      wanted.set(f, [...(wanted.get(f) ?? []), j]);
    });
    let left = keys.length;
    for (let i = 0, at = 0; i < this.#size && left > 0; i++, at += FLOW_KEY.size) {
      const js = wanted.get(fp(this.#keys, at));
      if (!js) continue;
      for (const j of js) {
        if (out[j] >= 0 || !this.#sameKey(at, keys[j])) continue;
        out[j] = i;
        left--;
      }
    }
    return out;
  }

  #sameKey(at: number, key: Uint8Array): boolean {
    for (let j = 0; j < FLOW_KEY.size; j++) if (this.#keys[at + j] !== key[j]) return false;
    return true;
  }

  /** Adds counters (from a flow cache) to flow i. */
  add(i: number, c: FlowCounters): void {
    this.#packets[i] += c.packets;
    this.#bytes[i] += c.bytes;
    this.#last[i] = Math.max(this.#last[i], c.lastSeenNs);
    this.#flags[i] |= c.tcpFlags;
  }

  // Column readers, for filters that need no decoding.
  ifindex(i: number): number {
    const at = i * FLOW_KEY.size + K.ifindex[0];
    const k = this.#keys;
    return k[at] | (k[at + 1] << 8) | (k[at + 2] << 16) | (k[at + 3] << 24) >>> 0;
  }
  proto(i: number): number {
    return this.#keys[i * FLOW_KEY.size + K.proto[0]];
  }
  port(i: number, which: "sport" | "dport"): number {
    const at = i * FLOW_KEY.size + K[which][0];
    return (this.#keys[at] << 8) | this.#keys[at + 1];
  }
  packets(i: number): number {
    return this.#packets[i];
  }
  bytes(i: number): number {
    return this.#bytes[i];
  }
  firstSeenNs(i: number): number {
    return this.#first[i];
  }
  lastSeenNs(i: number): number {
    return this.#last[i];
  }
  /**
   * The raw keys, FLOW_KEY.size bytes each as the kernel wrote them; the first `size` are this
   * snapshot's. A live view, valid until the table is refilled (for readers that compare or copy
   * keys without decoding them).
   */
  get keys(): Uint8Array {
    return this.#keys;
  }
  tcpFlags(i: number): number {
    return this.#flags[i];
  }
  /** enum x0_hook: 0 XDP, 1 TC ingress, 2 TC egress. */
  hook(i: number): number {
    return this.#keys[i * FLOW_KEY.size + K.hook[0]];
  }
  family(i: number): 4 | 6 {
    return this.#keys[i * FLOW_KEY.size + K.family[0]] === 6 ? 6 : 4;
  }
  /**
   * A cheap identity of the flow's source or destination address, for grouping without
   * formatting: an IPv4 address as a number, an IPv6 address as text (as addressIdOf gives it).
   */
  addressId(i: number, which: "saddr" | "daddr"): number | string {
    const at = i * FLOW_KEY.size + K[which][0];
    const k = this.#keys;
    if (k[i * FLOW_KEY.size + K.family[0]] === 6) return this.address(i, which);
    return ((k[at] << 24) | (k[at + 1] << 16) | (k[at + 2] << 8) | k[at + 3]) >>> 0;
  }

  /** The flow's source or destination address as text. */
  address(i: number, which: "saddr" | "daddr"): string {
    const at = i * FLOW_KEY.size + K[which][0];
    return formatAddress(this.#keys.subarray(at, at + 16), this.family(i));
  }

  /** Whether `addr` (4 or 16 bytes, with its family) is flow i's source or destination. */
  addressSide(i: number, family: number, addr: Uint8Array): "source" | "destination" | undefined {
    const base = i * FLOW_KEY.size;
    if (this.#keys[base + K.family[0]] !== family) return undefined;
    const same = (at: number) => {
      for (let j = 0; j < addr.length; j++) if (this.#keys[base + at + j] !== addr[j]) return false;
      return true;
    };
    return same(K.saddr[0]) ? "source" : same(K.daddr[0]) ? "destination" : undefined;
  }

  /** True when the flow's source or destination is `addr`. */
  hasAddress(i: number, family: number, addr: Uint8Array): boolean {
    return this.addressSide(i, family, addr) !== undefined;
  }

  /** The name of interface `ifindex` as the snapshot knew it, else its number. */
  ifname(ifindex: number): string {
    return this.names.get(ifindex) ?? String(ifindex);
  }

  /**
   * A matcher of the flows a filter accepts (every condition given must hold), or undefined
   * when the filter has no condition: the one place the API and /metrics filter flows.
   */
  matcher(f: FlowFilter): ((i: number) => boolean) | undefined {
    const { ifindexes, proto, address, port, interfaceName } = f;
    if (
      ifindexes === undefined && proto === undefined && address === undefined &&
      port === undefined && interfaceName === undefined
    ) return undefined;
    return (i) =>
      (ifindexes === undefined || ifindexes.has(this.ifindex(i))) &&
      (interfaceName === undefined || interfaceName(this.ifname(this.ifindex(i)))) &&
      (proto === undefined || this.proto(i) === proto) &&
      (address === undefined || this.hasAddress(i, address.family, address.bytes)) &&
      (port === undefined || (hasPorts(this.proto(i)) &&
        (this.port(i, "sport") === port || this.port(i, "dport") === port)));
  }

  /** The `limit` flows a filter accepts with the largest `order`, and how many it accepts. */
  query(
    filter: FlowFilter,
    order: FlowOrder,
    limit: number,
  ): { total: number; flows: FlowSnapshot[] } {
    return this.top(order, limit, this.matcher(filter));
  }

  /** Flow i as an object. */
  get(i: number): FlowSnapshot {
    const k = decodeFlowKey(this.#keys, i * FLOW_KEY.size);
    return {
      ...k,
      packets: this.#packets[i],
      bytes: this.#bytes[i],
      firstSeenNs: this.#first[i],
      lastSeenNs: this.#last[i],
      tcpFlags: this.#flags[i],
      fragment: this.#fragment[i] !== 0,
      interface: this.ifname(k.ifindex),
      direction: directionOf(k.hook),
    };
  }

  toArray(): FlowSnapshot[] {
    return Array.from({ length: this.#size }, (_, i) => this.get(i));
  }

  /**
   * The `limit` flows with the largest `order` among those `match` accepts, largest first
   * (ties: the earlier flow first), and how many matched. A bounded heap: O(n log limit).
   */
  top(order: FlowOrder, limit: number, match?: (i: number) => boolean): {
    total: number;
    flows: FlowSnapshot[];
  } {
    const col = order === "bytes" ? this.#bytes : order === "packets" ? this.#packets : this.#last;
    // Min-heap of indices: the root is the smallest kept (the latest index among equals).
    const heap = new Uint32Array(Math.max(0, Math.min(limit, this.#size)));
    let n = 0, total = 0;
    const less = (a: number, b: number) => col[a] < col[b] || (col[a] === col[b] && a > b);
    const down = (p: number) => {
      for (;;) {
        const l = 2 * p + 1, r = l + 1;
        let m = p;
        if (l < n && less(heap[l], heap[m])) m = l;
        if (r < n && less(heap[r], heap[m])) m = r;
        if (m === p) return;
        [heap[p], heap[m]] = [heap[m], heap[p]];
        p = m;
      }
    };
    for (let i = 0; i < this.#size; i++) {
      if (match && !match(i)) continue;
      total++;
      if (heap.length === 0) continue;
      if (n < heap.length) {
        let c = n++;
        heap[c] = i;
        while (c > 0) {
          const p = (c - 1) >> 1;
          if (!less(heap[c], heap[p])) break;
          [heap[c], heap[p]] = [heap[p], heap[c]];
          c = p;
        }
      } else if (less(heap[0], i)) {
        heap[0] = i;
        down(0);
      }
    }
    const kept = Array.from(heap.subarray(0, n)).sort((a, b) => col[b] - col[a] || a - b);
    return { total, flows: kept.map((i) => this.get(i)) };
  }
}

/** The identity FlowTable.addressId gives an address of this family (4 or 16 bytes). */
export function addressIdOf(family: 4 | 6, b: Uint8Array): number | string {
  return family === 4
    ? ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0
    : formatAddress(b, 6);
}
