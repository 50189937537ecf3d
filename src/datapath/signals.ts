/**
 * The kernel-signals probe: loads bpf/signals.bpf.o and attaches, each on its own, the drop
 * (skb:kfree_skb), retransmit (tcp:tcp_retransmit_skb) and RTT (tcp:tcp_probe) programs that
 * this kernel has hooks for and the configuration wants. What it cannot attach is reported as
 * unavailable with the reason. Drop reason names come from the running kernel's BTF.
 */
import signalsObject from "../../bpf/build/signals.bpf.o" with { type: "bytes" };
import { IFINDEX_UNKNOWN, RTT_BUCKET_COUNT, SIG_KEY, SIG_VALUE } from "../../ffi/layout.ts";
import { type Btf, parseBtf } from "./btf.ts";
import { formatAddress } from "../net/address.ts";
import { type FlowSignal, flowSignalKey } from "../flows/signals.ts";
import { Collection, type TracingLink, VMLINUX_BTF } from "./object.ts";

export type SignalName = "drops" | "retransmits" | "rtt";
export const SIGNALS: Record<SignalName, { program: string; tracepoint: string }> = {
  drops: { program: "x0_kfree_skb", tracepoint: "kfree_skb" },
  retransmits: { program: "x0_tcp_retransmit", tracepoint: "tcp_retransmit_skb" },
  rtt: { program: "x0_tcp_probe", tracepoint: "tcp_probe" },
};

/**
 * The running kernel's BTF, parsed anew on each call: about 17 MB with its index, so callers
 * keep it only while they look things up (the probe copies the drop reasons it needs).
 */
export function vmlinuxBtf(): Btf {
  return parseBtf(Deno.readFileSync(VMLINUX_BTF));
}

/** Drop reason number → name without the SKB_DROP_REASON_ prefix, from the kernel's BTF. */
export function dropReasonNames(btf = vmlinuxBtf()): Map<number, string> {
  const names = new Map<number, string>();
  for (const [name, value] of btf.enumValues("skb_drop_reason") ?? []) {
    names.set(value, name.replace(/^SKB_DROP_REASON_/, ""));
  }
  return names;
}

/**
 * The interface of records whose ifindex the kernel could not tell (IFINDEX_UNKNOWN): a drop
 * with no device and no known arrival interface, a socket with no route cached. No interface
 * can have this name: it is longer than the 15 characters an interface name may have.
 */
export const UNKNOWN_INTERFACE = "unknown_interface";

/** Names the ifindex of a signal record with `name`, the unknown one with UNKNOWN_INTERFACE. */
export function signalInterface(ifindex: number, name: (ifindex: number) => string): string {
  return ifindex === IFINDEX_UNKNOWN ? UNKNOWN_INTERFACE : name(ifindex);
}

const u64 = (v: DataView, o: number) => v.getUint32(o, true) + v.getUint32(o + 4, true) * 2 ** 32;

export class SignalsProbe implements Disposable {
  readonly collection: Collection;
  readonly links = new Map<SignalName, TracingLink>();
  /** Signals that are not running, with why. */
  readonly unavailable = new Map<SignalName, string>();
  readonly reasons: Map<number, string>;

  constructor(wanted: SignalName[]) {
    const btf = vmlinuxBtf();
    const skip: string[] = [];
    for (const [name, s] of Object.entries(SIGNALS) as [SignalName, typeof SIGNALS.drops][]) {
      if (!wanted.includes(name)) {
        this.unavailable.set(name, "switched off in the configuration");
        skip.push(s.program);
      } else if (btf.idsByName(`btf_trace_${s.tracepoint}`).length === 0) {
        this.unavailable.set(name, `this kernel has no ${s.tracepoint} tracepoint`);
        skip.push(s.program);
      }
    }
    this.reasons = dropReasonNames(btf);
    // Tracepoints see every namespace; keep to ours, where interface indexes mean something.
    const netns = Deno.statSync("/proc/thread-self/ns/net").ino ?? 0;
    this.collection = Collection.load(signalsObject as Uint8Array<ArrayBuffer>, {
      name: "x0tta6bl4_sig",
      skip,
      rodata: { x0_netns_ino: netns },
    });
    for (const [name, s] of Object.entries(SIGNALS) as [SignalName, typeof SIGNALS.drops][]) {
      if (this.unavailable.has(name)) continue;
      try {
        this.links.set(name, this.collection.program(s.program).attachTracing());
      } catch (e) {
        this.unavailable.set(name, (e as Error).message.split("\n")[0]);
      }
    }
  }

  reasonName(n: number): string {
    return this.reasons.get(n) ?? `reason_${n}`;
  }

  /** Drops per interface and reason, per-CPU counts summed. */
  drops(): { ifindex: number; reason: string; count: number }[] {
    const m = this.collection.map("x0_drops");
    const out: { ifindex: number; reason: string; count: number }[] = [];
    for (const { count, keys, values } of m.batches()) {
      const k = new DataView(keys.buffer), v = new DataView(values.buffer);
      for (let i = 0; i < count; i++) {
        let n = 0;
        for (let c = 0; c < m.cpus; c++) n += u64(v, i * m.valueBytes + c * m.valueStride);
        out.push({
          ifindex: k.getUint32(i * 8, true),
          reason: this.reasonName(k.getUint32(i * 8 + 4, true)),
          count: n,
        });
      }
    }
    return out;
  }

  /**
   * Per flow: drops, retransmits and the last smoothed RTT. Retransmits and RTT are kept for
   * every TCP socket the kernel reported (x0_sigflows), drops only for the flows that drop most
   * (x0_dropflows: at most DROP_FLOWS); a flow in both gets both.
   */
  flows(): Map<string, FlowSignal> {
    const out = new Map<string, FlowSignal>();
    for (const name of ["x0_sigflows", "x0_dropflows"]) {
      const m = this.collection.map(name);
      const K = SIG_KEY.members, V = SIG_VALUE.members;
      for (const { count, keys, values } of m.batches()) {
        const kv = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
        const vv = new DataView(values.buffer, values.byteOffset, values.byteLength);
        for (let i = 0; i < count; i++) {
          const k = i * SIG_KEY.size, v = i * m.valueBytes;
          const family = kv.getUint8(k + K.family[0]);
          const addr = (at: number) =>
            formatAddress(keys.subarray(k + at, k + at + 16), family === 4 ? 4 : 6);
          const key = flowSignalKey(
            family,
            kv.getUint8(k + K.proto[0]),
            addr(K.saddr[0]),
            kv.getUint16(k + K.sport[0], false),
            addr(K.daddr[0]),
            kv.getUint16(k + K.dport[0], false),
          );
          const s: FlowSignal = {
            drops: u64(vv, v + V.drops[0]),
            retransmits: u64(vv, v + V.retransmits[0]),
            rttSamples: u64(vv, v + V.rtt_samples[0]),
            srttUs: vv.getUint32(v + V.srtt_us[0], true),
            ifindex: vv.getUint32(v + V.ifindex[0], true),
            lastDropReason: vv.getUint32(v + V.last_drop_reason[0], true),
          };
          const tcp = out.get(key);
          out.set(key, tcp ? { ...tcp, drops: s.drops, lastDropReason: s.lastDropReason } : s);
        }
      }
    }
    return out;
  }

  /** RTT histogram per interface: counts per log2(µs) bucket. */
  rttHistogram(): Map<number, number[]> {
    const m = this.collection.map("x0_rtt_hist");
    const out = new Map<number, number[]>();
    for (const { count, keys, values } of m.batches()) {
      const k = new DataView(keys.buffer), v = new DataView(values.buffer);
      for (let i = 0; i < count; i++) {
        const ifindex = k.getUint32(i * 8, true), bucket = k.getUint32(i * 8 + 4, true);
        let n = 0;
        for (let c = 0; c < m.cpus; c++) n += u64(v, i * m.valueBytes + c * m.valueStride);
        const row = out.get(ifindex) ?? new Array(RTT_BUCKET_COUNT).fill(0);
        row[bucket] += n;
        out.set(ifindex, row);
      }
    }
    return out;
  }

  close(): void {
    for (const l of this.links.values()) l.close();
    this.links.clear();
    this.collection.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
