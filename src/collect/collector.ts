/**
 * The collector: runs the eBPF datapath when it can and the fallback collector when it cannot,
 * takes a snapshot every interval, keeps interfaces attached as they come and go, and reports
 * the truth about all of it to the health board and the event log.
 */
import { LibraryError } from "../../ffi/libbpf.ts";
import type { XdpModeRequest } from "../datapath/attach.ts";
import { KernelError } from "../datapath/errors.ts";
import { type AttachMode, FlowDatapath } from "../datapath/flow.ts";
import { ifnameOf } from "../datapath/netdev.ts";
import { RingBuffer } from "../datapath/ringbuf.ts";
import { type SignalName, SignalsProbe } from "../datapath/signals.ts";
import type { EventLog } from "../state/events.ts";
import type { HealthBoard } from "../state/health.ts";
import { decodeEvent, directionOf } from "../flows/key.ts";
import { FlowTable } from "../flows/table.ts";
import type {
  Family,
  InterfaceSnapshot,
  Protocol,
  SignalsSnapshot,
  Snapshot,
  TrafficCounter,
} from "../state/snapshot.ts";
import { readFlowTable, readIfaceStats } from "./decode.ts";
import { readSysfsInterface } from "./fallback.ts";

export interface CollectorOptions {
  /** Interface names to watch. */
  interfaces: string[];
  hook: AttachMode;
  xdpMode: XdpModeRequest;
  flowTableSize: number;
  ringBufferBytes: number;
  eventRate: number;
  maxInterfaces: number;
  ifindexLimit: number;
  tcHandle: number;
  tcPriority: number;
  btfPath: string;
  pinDir: string;
  /** Collect from /sys/class/net when eBPF cannot run, instead of failing. */
  fallback: boolean;
  /** Kernel signals to run (drops, retransmits, rtt); empty: none. */
  signals: SignalName[];
}

const CLASS_LABELS: Record<string, [Family, Protocol]> = {
  ipv4_tcp: ["ipv4", "tcp"],
  ipv4_udp: ["ipv4", "udp"],
  ipv4_icmp: ["ipv4", "icmp"],
  ipv4_other: ["ipv4", "other"],
  ipv6_tcp: ["ipv6", "tcp"],
  ipv6_udp: ["ipv6", "udp"],
  ipv6_icmp: ["ipv6", "icmp"],
  ipv6_other: ["ipv6", "other"],
  non_ip: ["other", "none"],
  malformed: ["malformed", "none"],
};

/** Drops of one reason on one interface within one interval that make a "drops" event. */
const DROP_BURST = 100;

/** Why eBPF cannot run, in one line, from whatever the datapath threw. */
function reasonOf(e: unknown): string {
  if (e instanceof KernelError || e instanceof LibraryError) return e.message.split("\n")[0];
  return e instanceof Error ? e.message : String(e);
}

function sysfsIfindex(name: string): number | undefined {
  try {
    return Number(Deno.readTextFileSync(`/sys/class/net/${name}/ifindex`).trim());
  } catch {
    return undefined;
  }
}

export class Collector {
  #dp?: FlowDatapath;
  #ring?: RingBuffer;
  #signals?: SignalsProbe;
  /** name → ifindex of what is attached now. */
  readonly #attached = new Map<string, number>();
  readonly #wanted: Set<string>;
  #mode: "ebpf" | "fallback" = "fallback";
  #fallbackReason = "";
  readonly #table = new FlowTable();

  constructor(
    readonly options: CollectorOptions,
    private readonly health: HealthBoard,
    private readonly events: EventLog,
  ) {
    this.#wanted = new Set(options.interfaces);
  }

  get mode(): "ebpf" | "fallback" {
    return this.#mode;
  }

  get fallbackReason(): string {
    return this.#fallbackReason;
  }

  get datapath(): FlowDatapath | undefined {
    return this.#dp;
  }

  /** Starts eBPF, or the fallback with the reason when eBPF cannot run (and fallback is on). */
  start(): void {
    try {
      this.#startEbpf();
    } catch (e) {
      if (!this.options.fallback) throw e;
      this.#enterFallback(reasonOf(e));
    }
    this.#reconcile();
  }

  /** Tries eBPF again (after the cause of the fallback was fixed); true when it now runs. */
  retry(): boolean {
    if (this.#mode === "ebpf") return true;
    try {
      this.#startEbpf();
    } catch (e) {
      this.#enterFallback(reasonOf(e));
      return false;
    }
    this.#attached.clear();
    this.#reconcile();
    this.events.append("mode", { mode: "ebpf" });
    return true;
  }

  #startEbpf(): void {
    const o = this.options;
    const dp = new FlowDatapath({
      flowTableSize: o.flowTableSize,
      ringBufferBytes: o.ringBufferBytes,
      eventRate: o.eventRate,
      slots: o.maxInterfaces + 1,
      ifindexLimit: o.ifindexLimit,
      btfPath: o.btfPath || undefined,
      pinDir: o.pinDir || undefined,
    });
    let ring: RingBuffer;
    try {
      ring = new RingBuffer(dp.events, (rec) => {
        const e = decodeEvent(rec);
        this.events.append("flow", {
          ...e.flow,
          interface: this.#ifname(e.flow.ifindex),
          packetBytes: e.packetBytes,
          tcpFlags: e.tcpFlags,
        });
      });
    } catch (e) {
      dp.close();
      throw e;
    }
    ring.start();
    this.#dp = dp;
    this.#ring = ring;
    this.#startSignals();
    this.#mode = "ebpf";
    this.#fallbackReason = "";
    this.health.set("fallback", "healthy", "not active: eBPF is running");
    this.health.set(
      "ringbuf",
      "healthy",
      dp.resetReason || (dp.adopted ? "counters adopted from the previous run" : "consuming"),
    );
  }

  /** The kernel-signals probe: optional, so a failure here only degrades its own health. */
  #startSignals(): void {
    const wanted = this.options.signals;
    if (wanted.length === 0) {
      this.health.set("signals", "healthy", "switched off in the configuration");
      return;
    }
    try {
      this.#signals = new SignalsProbe(wanted);
    } catch (e) {
      this.health.set("signals", "unhealthy", `cannot load: ${reasonOf(e)}`);
      return;
    }
    const off = [...this.#signals.unavailable].filter(([n]) => wanted.includes(n));
    this.health.set(
      "signals",
      off.length ? "degraded" : "healthy",
      off.length
        ? off.map(([n, why]) => `${n} unavailable: ${why}`).join("; ")
        : `running: ${[...this.#signals.links.keys()].join(", ")}`,
    );
  }

  #enterFallback(reason: string): void {
    this.#mode = "fallback";
    this.#fallbackReason = reason;
    this.health.set("fallback", "degraded", `active: ${reason}`);
    this.health.set("ringbuf", "degraded", "no ring buffer in fallback mode: no flow events");
    this.events.append("mode", { mode: "fallback", reason });
  }

  /**
   * Attaches an interface now and keeps it attached; throws what the kernel said, and then
   * watches nothing new.
   */
  attach(name: string): void {
    const had = this.#wanted.has(name);
    this.#wanted.add(name);
    try {
      this.#attachOne(name, true);
    } catch (e) {
      if (!had) {
        this.#wanted.delete(name);
        this.health.remove(`datapath:${name}`);
      }
      throw e;
    }
  }

  /** Detaches an interface and stops watching it; false when it was not watched. */
  detach(name: string): boolean {
    const had = this.#wanted.delete(name);
    const ifindex = this.#attached.get(name);
    if (ifindex !== undefined) {
      this.#attached.delete(name);
      this.#dp?.detach(ifindex);
    }
    this.health.remove(`datapath:${name}`);
    if (had) this.events.append("detach", { interface: name });
    return had;
  }

  watched(): string[] {
    return [...this.#wanted];
  }

  #attachOne(name: string, rethrow: boolean): void {
    const ifindex = sysfsIfindex(name);
    const component = `datapath:${name}`;
    if (ifindex === undefined) {
      this.health.set(component, "degraded", "interface not present; attaching when it appears");
      if (rethrow) throw new KernelError(`attach to ${name}`, 19);
      return;
    }
    if (this.#mode === "fallback") {
      this.health.set(component, "degraded", `fallback counters only: ${this.#fallbackReason}`);
      this.#attached.set(name, ifindex);
      return;
    }
    try {
      const a = this.#dp!.attach(
        ifindex,
        this.options.hook,
        this.options.xdpMode,
        { handle: this.options.tcHandle, priority: this.options.tcPriority },
      );
      this.#attached.set(name, ifindex);
      this.health.set(
        component,
        "healthy",
        `attached: ${a.hooks.join(", ")}${a.xdpMode ? ` (XDP ${a.xdpMode})` : ""}`,
      );
      this.events.append("attach", {
        interface: name,
        ifindex,
        hooks: a.hooks,
        xdpMode: a.xdpMode,
      });
    } catch (e) {
      this.health.set(component, "unhealthy", reasonOf(e));
      if (rethrow) throw e;
    }
  }

  /** Attaches what appeared, re-attaches what came back with a new ifindex, marks what left. */
  #reconcile(): void {
    for (const name of this.#wanted) {
      const now = sysfsIfindex(name);
      const had = this.#attached.get(name);
      if (had !== undefined && now === had) continue;
      if (had !== undefined) { // gone, or replaced by a new interface of the same name
        this.#attached.delete(name);
        try {
          this.#dp?.detach(had);
        } catch { /* the interface and its hooks went away with it */ }
        this.events.append("detach", { interface: name, reason: "interface disappeared" });
      }
      this.#attachOne(name, false);
    }
    this.#dp?.releaseUnattached();
  }

  /** One snapshot of everything; also keeps interfaces attached as they come and go. */
  collect(): Snapshot {
    this.#ifnames.clear();
    this.#reconcile();
    return this.#mode === "ebpf" ? this.#collectEbpf() : this.#collectFallback();
  }

  #collectFallback(): Snapshot {
    const interfaces: InterfaceSnapshot[] = [];
    for (const name of this.#attached.keys()) {
      const s = readSysfsInterface(name);
      if (s) interfaces.push(s);
    }
    return {
      takenAt: Date.now(),
      mode: "fallback",
      interfaces,
      flows: new FlowTable(0),
      flowTable: { entries: 0, capacity: 0, created: 0, evicted: 0, insertFailed: 0 },
      events: {
        sent: 0,
        suppressed: 0,
        lostKernel: 0,
        lostConsumer: this.events.lostConsumer,
        consumed: 0,
      },
      programs: [],
      bpfStatsEnabled: bpfStatsEnabled(),
    };
  }

  #collectEbpf(): Snapshot {
    const dp = this.#dp!;
    const names = new Map([...this.#attached].map(([n, i]) => [i, n]));
    const byIf = new Map<number, InterfaceSnapshot>();
    let created = 0, insertFailed = 0, sent = 0, suppressed = 0, lost = 0;
    for (const s of readIfaceStats(dp)) {
      created += s.flowsCreated;
      insertFailed += s.flowInsertFailed;
      sent += s.eventsSent;
      suppressed += s.eventsSuppressed;
      lost += s.eventsLost;
      const name = names.get(s.ifindex);
      if (name === undefined) continue;
      let snap = byIf.get(s.ifindex);
      if (!snap) {
        const a = dp.attachments().find((x) => x.ifindex === s.ifindex);
        snap = {
          ifindex: s.ifindex,
          name,
          source: "ebpf",
          hooks: a?.hooks ?? [],
          xdpMode: a?.xdpMode,
          traffic: [],
          malformed: {},
          fragments: 0,
          vlanTagged: 0,
        };
        byIf.set(s.ifindex, snap);
      }
      const direction = directionOf(s.hook);
      for (const [cls, c] of Object.entries(s.classes)) {
        const [family, protocol] = CLASS_LABELS[cls];
        snap.traffic.push({ direction, family, protocol, packets: c.packets, bytes: c.bytes });
      }
      for (const [reason, n] of Object.entries(s.malformed)) {
        snap.malformed[reason] = (snap.malformed[reason] ?? 0) + n;
      }
      snap.fragments += s.fragments;
      snap.vlanTagged += s.vlanTagged;
    }
    // An interface whose counters live in two hooks (XDP and TC ingress never both) is merged.
    for (const snap of byIf.values()) snap.traffic = mergeTraffic(snap.traffic);
    // One table, refilled in place (at 100k flows, no megabytes allocated every interval):
    // every reader runs synchronously between two snapshots, so none sees it half refilled.
    // A read that fails empties it rather than leave a mix of two moments behind.
    let flows: FlowTable;
    try {
      flows = readFlowTable(dp, this.#table);
    } catch (e) {
      this.#table.clear();
      throw e;
    }
    // Names are resolved now, once per interface seen: a reader never asks the kernel.
    const flowNames = new Map<number, string>();
    for (let i = 0; i < flows.size; i++) {
      const x = flows.ifindex(i);
      if (!flowNames.has(x)) flowNames.set(x, this.#ifname(x));
    }
    flows.names = flowNames;
    const programs = [
      dp.xdp,
      dp.tcIngress,
      dp.tcEgress,
      ...[...(this.#signals?.links.values() ?? [])].map((l) =>
        this.#signals!.collection.program(l.program)
      ),
    ].map((p) => {
      const i = p.info();
      return { name: p.name, runTimeNs: i.runTimeNs, runCount: i.runCount };
    });
    return {
      takenAt: Date.now(),
      mode: "ebpf",
      interfaces: [...byIf.values()],
      flows,
      flowTable: {
        entries: flows.size,
        capacity: dp.flows.maxEntries,
        created,
        evicted: Math.max(0, created - flows.size),
        insertFailed,
      },
      events: {
        sent,
        suppressed,
        lostKernel: lost,
        lostConsumer: this.events.lostConsumer,
        consumed: this.#ring?.consumed ?? 0,
      },
      programs,
      bpfStatsEnabled: bpfStatsEnabled(),
      signals: this.#signals && this.#readSignals(this.#signals),
    };
  }

  /** Drop counts of the previous snapshot, to announce bursts on the event stream. */
  #lastDrops = new Map<string, number>();
  #dropsPrimed = false;

  /** Interface names by ifindex: the watched ones, else the kernel's, asked once a snapshot
   * (not once per event or per map entry: each ask is a syscall). */
  readonly #ifnames = new Map<number, string>();

  #ifname(i: number): string {
    let n = this.#ifnames.get(i);
    if (n === undefined) {
      n = [...this.#attached].find(([, x]) => x === i)?.[0] ?? ifnameOf(i) ?? String(i);
      this.#ifnames.set(i, n);
    }
    return n;
  }

  #readSignals(p: SignalsProbe): SignalsSnapshot {
    const name = (i: number) => this.#ifname(i);
    const drops = p.drops().map((d) => ({
      interface: name(d.ifindex),
      reason: d.reason,
      count: d.count,
    }));
    // After the first read, a reason not seen before counts from 0.
    const primed = this.#dropsPrimed;
    this.#dropsPrimed = true;
    for (const d of drops) {
      const k = `${d.interface}/${d.reason}`;
      const before = this.#lastDrops.get(k) ?? (primed ? 0 : d.count);
      if (d.count - before >= DROP_BURST) {
        this.events.append("drops", { ...d, new: d.count - before });
      }
      this.#lastDrops.set(k, d.count);
    }
    const flows = p.flows();
    const retransmitsByInterface: Record<string, number> = {};
    for (const f of flows.values()) {
      if (f.retransmits) {
        const n = name(f.ifindex);
        retransmitsByInterface[n] = (retransmitsByInterface[n] ?? 0) + f.retransmits;
      }
    }
    return {
      drops,
      flows,
      rtt: [...p.rttHistogram()].map(([i, buckets]) => ({ interface: name(i), buckets })),
      retransmitsByInterface,
      unavailable: Object.fromEntries(p.unavailable),
    };
  }

  /** Detaches everything and closes every kernel object; pinned counters stay for next time. */
  async stop(): Promise<void> {
    await this.#ring?.stop();
    this.#ring = undefined;
    this.#signals?.close();
    this.#signals = undefined;
    this.#dp?.close();
    this.#dp = undefined;
    this.#attached.clear();
  }
}

function mergeTraffic(t: TrafficCounter[]): TrafficCounter[] {
  const m = new Map<string, TrafficCounter>();
  for (const c of t) {
    const k = `${c.direction}/${c.family}/${c.protocol}`;
    const prev = m.get(k);
    if (prev) {
      prev.packets += c.packets;
      prev.bytes += c.bytes;
    } else m.set(k, { ...c });
  }
  return [...m.values()];
}

function bpfStatsEnabled(): boolean {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/bpf_stats_enabled").trim() === "1";
  } catch {
    return false;
  }
}
