/**
 * Enforcement in the datapath: the x0_enforce map (source address → block or rate limit, with
 * an expiry the kernel honours on its own) and the x0_runtime settings (the check's gate and
 * generation, the event sampling shift). The MAPE-K executor acts only through this class.
 */
import { BPF, loadLibc } from "../../ffi/libbpf.ts";
import {
  ENFORCE_FILTER_BITS,
  ENFORCE_KEY,
  ENFORCE_KIND,
  ENFORCE_VALUE,
  RUNTIME,
} from "../../ffi/layout.ts";
import { KernelError } from "./errors.ts";
import type { BpfMap } from "./object.ts";
import { formatAddress, parseAddress } from "../net/address.ts";

export type EnforceKind = keyof typeof ENFORCE_KIND;

export interface EnforceRule {
  /** Source address, IPv4 dotted or IPv6. */
  address: string;
  kind: EnforceKind;
  /** Rate limit: packets per second let through (ignored for block). */
  ratePps: number;
  /** When the kernel stops applying it, ms since the epoch (undefined: never). */
  expiresAt?: number;
}

export interface EnforceState extends EnforceRule {
  droppedPackets: number;
  droppedBytes: number;
  passedPackets: number;
  /** True once the kernel no longer applies it (its expiry passed). */
  expired: boolean;
}

const KM = ENFORCE_KEY.members;
const VM = ENFORCE_VALUE.members;
const RM = RUNTIME.members;

/** CLOCK_MONOTONIC in ns: the datapath's clock. */
export function monotonicNs(): bigint {
  const ts = new BigInt64Array(2);
  if (loadLibc().clock_gettime(BPF.clockMonotonic, ts) !== 0) {
    throw new KernelError("clock_gettime(CLOCK_MONOTONIC)", 22);
  }
  return ts[0] * 1_000_000_000n + ts[1];
}

/** Wall-clock ms since the epoch → the datapath's monotonic ns. */
function toMonotonic(wallMs: number): bigint {
  return monotonicNs() + BigInt(Math.round((wallMs - Date.now()) * 1e6));
}

/** The enforcement key of an address; throws a TypeError on a malformed one. */
function enforceKey(address: string): Uint8Array<ArrayBuffer> {
  const k = new Uint8Array(ENFORCE_KEY.size);
  const a = parseAddress(address);
  k.set(a.bytes, KM.addr[0]);
  k[KM.family[0]] = a.family;
  return k;
}

/**
 * The bit of an address in the datapath's enforcement prefilter, as x0_addr_hash computes it:
 * the address's 32-bit words (little-endian loads, as the programs do on the little-endian
 * machines the appliance is built for) XOR-folded, times 0x9E3779B1, top bits.
 */
export function enforceFilterIndex(address: string): number {
  const a = parseAddress(address);
  return filterIndex(a.bytes, a.family);
}

/** enforceFilterIndex of an address's bytes (4 or 16 of them at the start of `bytes`). */
function filterIndex(bytes: Uint8Array, family: number): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let x = v.getUint32(0, true);
  if (family === 6) x ^= v.getUint32(4, true) ^ v.getUint32(8, true) ^ v.getUint32(12, true);
  return Math.imul(x >>> 0, 0x9e3779b1) >>> (32 - ENFORCE_FILTER_BITS);
}

export class Enforcer {
  constructor(readonly rules: BpfMap, readonly runtime: BpfMap) {
    if (rules.keySize !== ENFORCE_KEY.size || rules.valueSize !== ENFORCE_VALUE.size) {
      throw new Error(`${rules.name} does not have the x0_enforce layout`);
    }
    // Rules adopted from pins: the gate, the prefilter and the generation agree with them.
    this.#sync();
  }

  /** Puts or replaces a rule; the kernel applies it from the next packet. */
  put(rule: EnforceRule): void {
    const v = new Uint8Array(ENFORCE_VALUE.size);
    const dv = new DataView(v.buffer);
    dv.setBigUint64(
      VM.expires_ns[0],
      rule.expiresAt === undefined ? 0n : toMonotonic(rule.expiresAt),
      true,
    );
    dv.setBigUint64(VM.rate_pps[0], BigInt(Math.max(0, Math.round(rule.ratePps))), true);
    dv.setUint32(VM.kind[0], ENFORCE_KIND[rule.kind], true);
    const key = enforceKey(rule.address);
    const old = this.rules.lookup(key);
    if (old) v.set(old.subarray(VM.dropped_packets[0], VM.kind[0]), VM.dropped_packets[0]);
    this.rules.update(key, v);
    this.#sync();
  }

  /** Removes a rule; false when there was none. */
  remove(address: string): boolean {
    const had = this.rules.delete(enforceKey(address));
    if (had) this.#sync();
    return had;
  }

  /** Every rule the kernel holds, with what it dropped and let through. */
  list(): EnforceState[] {
    const out: EnforceState[] = [];
    const nowMono = monotonicNs(), nowWall = Date.now();
    for (const { count, keys, values } of this.rules.batches(256)) {
      for (let i = 0; i < count; i++) {
        const k = keys.subarray(i * ENFORCE_KEY.size, (i + 1) * ENFORCE_KEY.size);
        const dv = new DataView(values.buffer, i * ENFORCE_VALUE.size, ENFORCE_VALUE.size);
        const family = k[KM.family[0]];
        const expires = dv.getBigUint64(VM.expires_ns[0], true);
        const kind = dv.getUint32(VM.kind[0], true);
        out.push({
          address: formatAddress(k.subarray(0, 16), family === 4 ? 4 : 6),
          kind: kind === ENFORCE_KIND.rateLimit ? "rateLimit" : "block",
          ratePps: Number(dv.getBigUint64(VM.rate_pps[0], true)),
          expiresAt: expires === 0n ? undefined : nowWall + Number(expires - nowMono) / 1e6,
          droppedPackets: Number(dv.getBigUint64(VM.dropped_packets[0], true)),
          droppedBytes: Number(dv.getBigUint64(VM.dropped_bytes[0], true)),
          passedPackets: Number(dv.getBigUint64(VM.passed_packets[0], true)),
          expired: expires !== 0n && expires <= nowMono,
        });
      }
    }
    return out;
  }

  /** New-flow events: the configured rate divided by 2^shift (0 restores it). */
  setEventRateShift(shift: number): void {
    const v = this.#readRuntime();
    new DataView(v.buffer).setUint32(RM.event_rate_shift[0], shift, true);
    this.runtime.update(new Uint8Array(4), v);
  }

  get eventRateShift(): number {
    return new DataView(this.#readRuntime().buffer).getUint32(RM.event_rate_shift[0], true);
  }

  #readRuntime(): Uint8Array<ArrayBuffer> {
    const v = this.runtime.lookup(new Uint8Array(4));
    const out = new Uint8Array(RUNTIME.size);
    if (v) out.set(v.subarray(0, RUNTIME.size));
    return out;
  }

  /**
   * Tells the programs how many rules exist, which prefilter bits their sources set, and that
   * they changed (a new generation). One write of the whole value.
   */
  #sync(): void {
    const v = this.#readRuntime();
    const dv = new DataView(v.buffer);
    const filter = v.subarray(RM.enforce_filter[0], RM.enforce_filter[0] + RM.enforce_filter[1]);
    filter.fill(0);
    let n = 0;
    for (const { count, keys } of this.rules.batches(256)) {
      for (let i = 0; i < count; i++, n++) {
        const k = keys.subarray(i * ENFORCE_KEY.size, (i + 1) * ENFORCE_KEY.size);
        const h = filterIndex(k.subarray(KM.addr[0], KM.addr[0] + 16), k[KM.family[0]]);
        filter[h >> 3] |= 1 << (h & 7);
      }
    }
    const gen = (dv.getUint32(RM.enforce_gen[0], true) + 1) >>> 0 || 1;
    dv.setUint32(RM.enforce_entries[0], n, true);
    dv.setUint32(RM.enforce_gen[0], gen, true);
    this.runtime.update(new Uint8Array(4), v);
  }
}
