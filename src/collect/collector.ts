/**
 * The collector: runs the eBPF datapath when it can and the fallback collector when it cannot,
 * and takes a snapshot when asked. Its parts: the watched interfaces (interfaces.ts), the
 * kernel signals (signals.ts), the map readers (decode.ts) and the snapshot's assembly
 * (assemble.ts); this file owns the mode and the order of the reads.
 */
import type { XdpModeRequest } from "../datapath/attach.ts";
import { reasonOf } from "../datapath/errors.ts";
import { type AttachMode, FlowDatapath } from "../datapath/flow.ts";
import { defaultRouteInterface } from "../datapath/netdev.ts";
import { RingBuffer } from "../datapath/ringbuf.ts";
import type { SignalName } from "../datapath/signals.ts";
import type { Config } from "../config/schema.ts";
import { decodeEvent } from "../flows/key.ts";
import { FlowTable } from "../flows/table.ts";
import type { EventLog } from "../state/events.ts";
import type { HealthBoard } from "../state/health.ts";
import type { InterfaceSnapshot, Snapshot } from "../state/snapshot.ts";
import { bpfStatsEnabled, interfaceSnapshots, programStats } from "./assemble.ts";
import { type IfaceStats, readFlowTable, readIfaceStats, totals } from "./decode.ts";
import { readSysfsInterface } from "./fallback.ts";
import { WatchedInterfaces } from "./interfaces.ts";
import { SignalsReader } from "./signals.ts";

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

/** The interfaces to watch: the configured ones, else the default route's (if any). */
export function watchedInterfaces(c: Config): string[] {
  const d = c.datapath;
  return d.interfaces.length
    ? [...d.interfaces]
    : [defaultRouteInterface()].filter((x): x is string => x !== undefined);
}

export class Collector {
  #dp?: FlowDatapath;
  #ring?: RingBuffer;
  #signals?: SignalsReader;
  #mode: "ebpf" | "fallback" = "fallback";
  #fallbackReason = "";
  readonly #interfaces: WatchedInterfaces;
  /**
   * The snapshot's flows, sized for a full flow table from the start: its columns are mapped
   * zero pages until flows fill them, and never regrown. Growing by doubling left every
   * outgrown column behind in the C heap (glibc raises its mmap threshold after the first free
   * of a large block): about 10 MiB of RSS at 100k flows.
   */
  readonly #table: FlowTable;
  /**
   * Packets the per-hook records counted when the table in hand was read, if none was counted
   * during that read: the table is then still the kernel's for as long as that count stands.
   */
  #quietAt?: number;

  constructor(
    readonly options: CollectorOptions,
    private readonly health: HealthBoard,
    private readonly events: EventLog,
  ) {
    this.#table = new FlowTable(options.flowTableSize);
    this.#interfaces = new WatchedInterfaces(
      options.interfaces,
      options,
      {
        datapath: () => this.#dp,
        fallbackReason: () => this.#fallbackReason,
      },
      health,
      events,
    );
  }

  /** The collector's options from the configuration. */
  static optionsFrom(c: Config): CollectorOptions {
    const d = c.datapath;
    return {
      interfaces: watchedInterfaces(c),
      hook: d.hook,
      xdpMode: d.xdp_mode,
      flowTableSize: d.flow_table_size,
      ringBufferBytes: d.ring_buffer_bytes,
      eventRate: d.event_rate,
      maxInterfaces: d.max_interfaces,
      ifindexLimit: d.ifindex_limit,
      tcHandle: d.tc_handle,
      tcPriority: d.tc_priority,
      btfPath: d.btf_path,
      pinDir: d.bpffs_dir,
      fallback: d.fallback,
      signals: (["drops", "retransmits", "rtt"] as const).filter((k) => c.signals[k]),
    };
  }

  static fromConfig(c: Config, health: HealthBoard, events: EventLog): Collector {
    return new Collector(Collector.optionsFrom(c), health, events);
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
    this.#interfaces.reconcile();
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
    this.#interfaces.forgetAttached();
    this.#interfaces.reconcile();
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
          interface: this.#interfaces.nameOf(e.flow.ifindex),
          packetBytes: e.packetBytes,
          tcpFlags: e.tcpFlags,
        });
      });
    } catch (e) {
      dp.close();
      throw e;
    }
    ring.start();
    this.#quietAt = undefined;
    this.#dp = dp;
    this.#ring = ring;
    this.#signals = new SignalsReader(o.signals, this.health, this.events);
    this.#mode = "ebpf";
    this.#fallbackReason = "";
    this.health.set("fallback", "healthy", "not active: eBPF is running");
    this.health.set(
      "ringbuf",
      "healthy",
      dp.resetReason || (dp.adopted ? "counters adopted from the previous run" : "consuming"),
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
    this.#interfaces.attach(name);
  }

  /** Detaches an interface and stops watching it; false when it was not watched. */
  detach(name: string): boolean {
    return this.#interfaces.detach(name);
  }

  watched(): string[] {
    return this.#interfaces.watched();
  }

  /** One snapshot of everything; also keeps interfaces attached as they come and go. */
  collect(): Snapshot {
    this.#interfaces.reconcile();
    return this.#mode === "ebpf" ? this.#collectEbpf(this.#dp!) : this.#collectFallback();
  }

  #collectFallback(): Snapshot {
    const interfaces: InterfaceSnapshot[] = [];
    for (const name of this.#interfaces.attached.keys()) {
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
        lostConsumer: 0,
        consumed: 0,
      },
      eventClients: this.#eventClients(),
      programs: [],
      bpfStatsEnabled: bpfStatsEnabled(),
    };
  }

  #collectEbpf(dp: FlowDatapath): Snapshot {
    const watched = this.#interfaces;
    // The per-hook records are read on both sides of the flow table (they are a few dozen
    // entries): the flows created before the table was read give its evictions (a flow made
    // during the read is not taken for an evicted one), and the interface counters read after
    // it are never behind a flow they contain (both only grow). One table, refilled in place
    // (at 100k flows, no megabytes allocated every interval): every reader runs synchronously
    // between two snapshots, so none sees it half refilled. A read that fails empties it
    // rather than leave a mix of two moments behind.
    //
    // Work that scales with what changed: every change to the flow table or a flow cache comes
    // with a packet counted in the per-hook records (in the same program run, before a read
    // can start), so while their packet count stands where it was when the table was last read
    // (with none counted during that read), the table is not read again: at 100k flows on a
    // quiet box, 36-50 ms of kernel time a snapshot saved.
    const before = readIfaceStats(dp);
    const created = interfaceSnapshots(before, new Map(), []).totals;
    const counted = packetsCounted(before);
    const flows = this.#table;
    if (counted !== this.#quietAt) {
      this.#quietAt = undefined;
      try {
        readFlowTable(dp, flows);
      } catch (e) {
        flows.clear();
        throw e;
      }
    }
    // Names are resolved now, once per interface seen: a reader never asks the kernel.
    const flowNames = new Map<number, string>();
    for (let i = 0; i < flows.size; i++) {
      const x = flows.ifindex(i);
      if (!flowNames.has(x)) flowNames.set(x, watched.nameOf(x));
    }
    flows.names = flowNames;
    const names = new Map([...watched.attached].map(([n, i]) => [i, n]));
    const after = readIfaceStats(dp);
    if (packetsCounted(after) === counted) this.#quietAt = counted;
    const { interfaces, totals } = interfaceSnapshots(after, names, dp.attachments());
    const signals = this.#signals;
    return {
      takenAt: Date.now(),
      mode: "ebpf",
      interfaces,
      flows,
      flowTable: {
        entries: flows.size,
        capacity: dp.flows.maxEntries,
        created: totals.flowsCreated,
        evicted: Math.max(0, created.flowsCreated - flows.size),
        insertFailed: totals.flowInsertFailed,
      },
      events: {
        sent: totals.eventsSent,
        suppressed: totals.eventsSuppressed,
        lostKernel: totals.eventsLost,
        lostConsumer: this.#ring?.handlerErrors ?? 0,
        consumed: this.#ring?.consumed ?? 0,
      },
      eventClients: this.#eventClients(),
      programs: programStats([
        dp.xdp,
        dp.tcIngress,
        dp.tcEgress,
        ...(signals?.programs() ?? []),
      ]),
      bpfStatsEnabled: bpfStatsEnabled(),
      signals: signals?.read((i) => watched.nameOf(i)),
    };
  }

  #eventClients(): Snapshot["eventClients"] {
    const e = this.events;
    return { connected: e.subscribers, lost: e.clientLost, letGo: e.clientsLetGo };
  }

  /** Detaches everything and closes every kernel object; pinned counters stay for next time. */
  async stop(): Promise<void> {
    await this.#ring?.stop();
    this.#ring = undefined;
    this.#signals?.close();
    this.#signals = undefined;
    this.#dp?.close();
    this.#dp = undefined;
    this.#interfaces.forgetAttached();
  }
}

/** Packets counted over every per-hook record: any packet that reaches a program adds one. */
function packetsCounted(stats: readonly IfaceStats[]): number {
  let n = 0;
  for (const s of stats) n += totals(s).packets;
  return n;
}
