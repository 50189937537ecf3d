/**
 * The interfaces the collector watches: the ones wanted (configured, or attached through the
 * API), which of them are attached now and at which ifindex, and their names by ifindex. Keeps
 * them attached as interfaces come and go, and reports each one's state to the health board.
 */
import type { XdpModeRequest } from "../datapath/attach.ts";
import { KernelError, reasonOf } from "../datapath/errors.ts";
import type { AttachMode, FlowDatapath } from "../datapath/flow.ts";
import { ifnameOf } from "../datapath/netdev.ts";
import type { EventLog } from "../state/events.ts";
import type { HealthBoard } from "../state/health.ts";

export interface AttachOptions {
  hook: AttachMode;
  xdpMode: XdpModeRequest;
  tcHandle: number;
  tcPriority: number;
}

/** What attaching needs to know of the collector's mode. */
export interface AttachTarget {
  /** The running datapath; undefined in fallback mode. */
  datapath(): FlowDatapath | undefined;
  /** Why the fallback runs (shown per interface). */
  fallbackReason(): string;
}

function sysfsIfindex(name: string): number | undefined {
  try {
    return Number(Deno.readTextFileSync(`/sys/class/net/${name}/ifindex`).trim());
  } catch {
    return undefined;
  }
}

export class WatchedInterfaces {
  readonly #wanted: Set<string>;
  /** name → ifindex of what is attached now. */
  readonly #attached = new Map<string, number>();
  /** Names by ifindex, asked of the kernel at most once a snapshot (each ask is a syscall). */
  readonly #names = new Map<number, string>();

  constructor(
    wanted: readonly string[],
    private readonly o: AttachOptions,
    private readonly target: AttachTarget,
    private readonly health: HealthBoard,
    private readonly events: EventLog,
  ) {
    this.#wanted = new Set(wanted);
  }

  watched(): string[] {
    return [...this.#wanted];
  }

  /** name → ifindex of the interfaces attached now. */
  get attached(): ReadonlyMap<string, number> {
    return this.#attached;
  }

  /** Forgets what is attached (the datapath was replaced): the next reconcile attaches all. */
  forgetAttached(): void {
    this.#attached.clear();
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
      this.target.datapath()?.detach(ifindex);
    }
    this.health.remove(`datapath:${name}`);
    if (had) this.events.append("detach", { interface: name });
    return had;
  }

  #attachOne(name: string, rethrow: boolean): void {
    const ifindex = sysfsIfindex(name);
    const component = `datapath:${name}`;
    if (ifindex === undefined) {
      this.health.set(component, "degraded", "interface not present; attaching when it appears");
      if (rethrow) throw new KernelError(`attach to ${name}`, 19);
      return;
    }
    const dp = this.target.datapath();
    if (!dp) {
      this.health.set(
        component,
        "degraded",
        `fallback counters only: ${this.target.fallbackReason()}`,
      );
      this.#attached.set(name, ifindex);
      return;
    }
    try {
      const a = dp.attach(ifindex, this.o.hook, this.o.xdpMode, {
        handle: this.o.tcHandle,
        priority: this.o.tcPriority,
      });
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

  /**
   * Attaches what appeared, re-attaches what came back with a new ifindex, marks what left;
   * starts a new snapshot's name cache.
   */
  reconcile(): void {
    this.#names.clear();
    const dp = this.target.datapath();
    for (const name of this.#wanted) {
      const now = sysfsIfindex(name);
      const had = this.#attached.get(name);
      if (had !== undefined && now === had) continue;
      if (had !== undefined) { // gone, or replaced by a new interface of the same name
        this.#attached.delete(name);
        try {
          dp?.detach(had);
        } catch { /* the interface and its hooks went away with it */ }
        this.events.append("detach", { interface: name, reason: "interface disappeared" });
      }
      this.#attachOne(name, false);
    }
    dp?.releaseUnattached();
  }

  /** The name of interface `ifindex`: a watched one's, else the kernel's, else its number. */
  nameOf(ifindex: number): string {
    let n = this.#names.get(ifindex);
    if (n === undefined) {
      n = [...this.#attached].find(([, x]) => x === ifindex)?.[0] ?? ifnameOf(ifindex) ??
        String(ifindex);
      this.#names.set(ifindex, n);
    }
    return n;
  }
}
