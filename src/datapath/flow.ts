/**
 * The flow-accounting datapath: the embedded flow.bpf.o loaded once, attached to any number
 * of interfaces by XDP or TC, with its maps and ring buffer. Owns every attachment it made.
 */
import flowObject from "../../bpf/build/flow.bpf.o" with { type: "bytes" };
import {
  DEFAULT_IFINDEX_LIMIT,
  DEFAULT_SLOTS,
  HOOK_NAMES,
  type HookName,
} from "../../ffi/layout.ts";
import {
  DEFAULT_TC_FILTER,
  TcAttachment,
  type TcFilterId,
  XdpAttachment,
  type XdpMode,
  type XdpModeRequest,
} from "./attach.ts";
import { Enforcer } from "./enforce.ts";
import { KernelError } from "./errors.ts";
import { ifnameOf } from "./netdev.ts";
import { type BpfMap, Collection, PinMismatchError, type Program } from "./object.ts";

export const FLOW_OBJECT: Uint8Array<ArrayBuffer> = flowObject as Uint8Array<ArrayBuffer>;

export interface DatapathOptions {
  /** Flow table capacity (LRU: the least recently used flow is evicted when full). */
  flowTableSize?: number;
  /** Ring buffer size in bytes, a power of two and a multiple of the page size. */
  ringBufferBytes?: number;
  /** New-flow events per second, per CPU and interface (0: none). Default 1000. */
  eventRate?: number;
  /** Interfaces that can be attached at once (each has its own counters). */
  slots?: number;
  /** Highest ifindex + 1 that can be attached. */
  ifindexLimit?: number;
  /**
   * A bpffs directory where the counters and the flow table are pinned: a later start adopts
   * them, so counters survive a restart of the daemon.
   */
  pinDir?: string;
  btfPath?: string;
  /** Another build of flow.bpf.c (the benchmarks' baseline without the enforcement check). */
  object?: Uint8Array<ArrayBuffer>;
}

/** "xdp": XDP on ingress plus TC on egress. "tc": TC on ingress and egress. */
export type AttachMode = "xdp" | "tc";

export interface InterfaceAttachment {
  ifindex: number;
  name: string;
  mode: AttachMode;
  /** The XDP mode the kernel accepted, when mode is "xdp". */
  xdpMode?: XdpMode;
  hooks: HookName[];
}

export class FlowDatapath implements Disposable {
  readonly collection: Collection;
  readonly xdp: Program;
  readonly tcIngress: Program;
  readonly tcEgress: Program;
  /** ifindex → slot, and per slot and hook the interface counters. */
  readonly ifslot: BpfMap;
  readonly ifstats: BpfMap;
  readonly flows: BpfMap;
  readonly flowCache: BpfMap;
  readonly events: BpfMap;
  /** Enforcement actions (block, rate limit) and runtime settings of the programs. */
  readonly enforcer: Enforcer;
  readonly #attached = new Map<number, { info: InterfaceAttachment; links: Disposable[] }>();
  readonly #slotOf = new Map<number, number>();
  /** True when counters were adopted from the pins of an earlier run. */
  readonly adopted: boolean = false;
  /** Why pinned counters could not be adopted, when they could not. */
  readonly resetReason: string = "";

  constructor(o: DatapathOptions = {}) {
    const maxEntries: Record<string, number> = {};
    if (o.flowTableSize) maxEntries.x0_flows = o.flowTableSize;
    if (o.ringBufferBytes) maxEntries.x0_events = o.ringBufferBytes;
    maxEntries.x0_ifstats = (o.slots ?? DEFAULT_SLOTS) * HOOK_NAMES.length;
    maxEntries.x0_flowcache = maxEntries.x0_ifstats;
    maxEntries.x0_ifslot = o.ifindexLimit ?? DEFAULT_IFINDEX_LIMIT;
    const load = () =>
      Collection.load(o.object ?? FLOW_OBJECT, {
        name: "x0tta6bl4_flow",
        maxEntries,
        btfPath: o.btfPath,
        rodata: o.eventRate === undefined ? undefined : { x0_event_rate: o.eventRate },
        pins: o.pinDir ? Object.fromEntries(PINNED.map((m) => [m, `${o.pinDir}/${m}`])) : {},
      });
    if (o.pinDir) {
      ensureBpffs(o.pinDir);
      this.adopted = PINNED.some((m) => exists(`${o.pinDir}/${m}`));
      try {
        this.collection = load();
      } catch (e) {
        // Pins of another shape (the flow table was resized, or an older version): start over.
        if (!(e instanceof PinMismatchError)) throw e;
        for (const m of PINNED) Deno.removeSync(`${o.pinDir}/${m}`, { recursive: true });
        this.adopted = false;
        this.resetReason = "the pinned maps did not match this configuration; counters restarted";
        this.collection = load();
      }
    } else {
      this.collection = load();
    }
    this.xdp = this.collection.program("x0_xdp");
    this.tcIngress = this.collection.program("x0_tc_ingress");
    this.tcEgress = this.collection.program("x0_tc_egress");
    this.ifslot = this.collection.map("x0_ifslot");
    this.ifstats = this.collection.map("x0_ifstats");
    this.flows = this.collection.map("x0_flows");
    this.flowCache = this.collection.map("x0_flowcache");
    this.events = this.collection.map("x0_events");
    this.enforcer = new Enforcer(
      this.collection.map("x0_enforce"),
      this.collection.map("x0_runtime"),
    );
    if (this.adopted) this.#adoptSlots();
  }

  /** Slots the earlier run assigned, read back from the pinned ifindex → slot table. */
  #adoptSlots(): void {
    for (const { count, keys, values } of this.ifslot.batches()) {
      const k = new DataView(keys.buffer), v = new DataView(values.buffer);
      for (let i = 0; i < count; i++) {
        const slot = v.getUint32(i * this.ifslot.valueBytes, true);
        if (slot !== 0) this.#slotOf.set(k.getUint32(i * 4, true), slot);
      }
    }
  }

  /** Frees the slots of adopted interfaces that this run did not attach again. */
  releaseUnattached(): number[] {
    const released = [...this.#slotOf.keys()].filter((i) => !this.#attached.has(i));
    for (const ifindex of released) this.#untrack(ifindex);
    return released;
  }

  /** Attaches to one interface; everything attached so far stays if a later hook fails. */
  attach(
    ifindex: number,
    mode: AttachMode,
    xdpMode: XdpModeRequest = "auto",
    filter: TcFilterId = DEFAULT_TC_FILTER,
  ): InterfaceAttachment {
    const name = ifnameOf(ifindex);
    if (name === undefined) throw new KernelError(`attach to ifindex ${ifindex}`, 19);
    if (this.#attached.has(ifindex)) {
      throw new KernelError(
        `attach to ${name}`,
        17,
        `ifindex ${ifindex} is already watched (here or in another network namespace)`,
      );
    }
    const links: Disposable[] = [];
    this.track(ifindex);
    try {
      let accepted: XdpMode | undefined;
      if (mode === "xdp") {
        const x = XdpAttachment.attach(this.xdp, ifindex, xdpMode);
        accepted = x.mode;
        links.push(x);
      } else {
        links.push(TcAttachment.attach(this.tcIngress, ifindex, "ingress", filter));
      }
      links.push(TcAttachment.attach(this.tcEgress, ifindex, "egress", filter));
      const info: InterfaceAttachment = {
        ifindex,
        name,
        mode,
        xdpMode: accepted,
        hooks: mode === "xdp" ? ["xdp", "tcEgress"] : ["tcIngress", "tcEgress"],
      };
      this.#attached.set(ifindex, { info, links });
      return info;
    } catch (e) {
      for (const l of links.reverse()) l[Symbol.dispose]();
      this.#untrack(ifindex);
      throw e;
    }
  }

  /**
   * Gives an interface its own counters (a slot), zeroed. attach() does this; it is public for
   * BPF_PROG_TEST_RUN, which runs programs as if on the loopback. Returns the slot.
   */
  track(ifindex: number): number {
    const known = this.#slotOf.get(ifindex);
    if (known !== undefined) return known;
    if (ifindex >= this.ifslot.maxEntries) {
      throw new KernelError(
        `count interface ${ifindex}`,
        7,
        `ifindex ${ifindex} is beyond the limit of ${this.ifslot.maxEntries}`,
        "raise ifindex_limit",
      );
    }
    const used = new Set(this.#slotOf.values());
    const slots = this.ifstats.maxEntries / HOOK_NAMES.length;
    let slot = 1;
    while (used.has(slot)) slot++;
    if (slot >= slots) {
      throw new KernelError(
        `count interface ${ifindex}`,
        28,
        `all ${slots - 1} interface slots are in use`,
        "raise max_interfaces",
      );
    }
    const zero = new Uint8Array(this.ifstats.valueBytes);
    for (let h = 0; h < HOOK_NAMES.length; h++) {
      this.ifstats.update(u32(slot * HOOK_NAMES.length + h), zero);
    }
    this.ifslot.update(u32(ifindex), u32(slot));
    this.#slotOf.set(ifindex, slot);
    return slot;
  }

  #untrack(ifindex: number): void {
    if (!this.#slotOf.delete(ifindex)) return;
    this.ifslot.update(u32(ifindex), u32(0));
  }

  /** The interface a slot counts, 0 for slot 0 (interfaces without a slot). */
  ifindexOfSlot(slot: number): number | undefined {
    if (slot === 0) return 0;
    for (const [ifindex, s] of this.#slotOf) if (s === slot) return ifindex;
    return undefined;
  }

  /** Removes exactly what attach() added on that interface. Returns false if nothing was. */
  detach(ifindex: number): boolean {
    const a = this.#attached.get(ifindex);
    if (!a) return false;
    this.#attached.delete(ifindex);
    this.#untrack(ifindex);
    const errors: unknown[] = [];
    for (const l of a.links.reverse()) {
      try {
        l[Symbol.dispose]();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length) throw errors[0];
    return true;
  }

  attachments(): InterfaceAttachment[] {
    return [...this.#attached.values()].map((a) => a.info);
  }

  /** Detaches everything, then closes programs and maps. */
  close(): void {
    const errors: unknown[] = [];
    for (const ifindex of [...this.#attached.keys()]) {
      try {
        this.detach(ifindex);
      } catch (e) {
        errors.push(e);
      }
    }
    this.collection.close();
    if (errors.length) throw errors[0];
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function u32(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([n]).buffer);
}

/** The maps that outlive the process when a pin directory is configured. */
const PINNED = [
  "x0_ifslot",
  "x0_ifstats",
  "x0_flows",
  "x0_flowcache",
  "x0_enforce",
  "x0_runtime",
] as const;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes sure `dir` is inside a mounted bpffs, mounting /sys/fs/bpf if nobody has. */
function ensureBpffs(dir: string): void {
  const mounts = Deno.readTextFileSync("/proc/mounts").split("\n").map((l) => l.split(" "));
  const bpffs = mounts.filter((m) => m[2] === "bpf").map((m) => m[1]);
  if (!bpffs.some((m) => dir === m || dir.startsWith(`${m}/`))) {
    if (!dir.startsWith("/sys/fs/bpf/")) {
      throw new KernelError(
        `pin maps in ${dir}`,
        22,
        "not inside a bpffs mount",
        "use a " +
          "directory under /sys/fs/bpf (bpffs_dir)",
      );
    }
    const out = new Deno.Command("mount", { args: ["-t", "bpf", "bpf", "/sys/fs/bpf"] })
      .outputSync();
    if (!out.success) {
      throw new KernelError(
        "mount bpffs at /sys/fs/bpf",
        1,
        new TextDecoder().decode(out.stderr).trim(),
        "mount it first: mount -t bpf bpf /sys/fs/bpf (systemd does this on most systems)",
      );
    }
  }
  Deno.mkdirSync(dir, { recursive: true });
}
