/**
 * XDP and TC attachments, each owned by one object whose close() removes exactly what it
 * added. XDP uses a BPF link (the kernel detaches it if the process dies, and nobody can
 * replace it behind our back); TC uses a clsact qdisc with our own filter handle and priority.
 */
import { BPF, loadLibbpf, loadLibc, OPTS, opts } from "../../ffi/libbpf.ts";
import { check, KernelError } from "./errors.ts";
import { ifnameOf } from "./netdev.ts";
import { NetnsHandle } from "./netns.ts";
import { type Program, programInfo } from "./object.ts";

export type XdpMode = "native" | "generic";
export type XdpModeRequest = XdpMode | "auto";

const EEXIST = 17;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524;
const EINVAL = 22;
const ENOENT = 2;

function closeFd(fd: number) {
  if (fd >= 0) loadLibc().close(fd);
}

/** Who holds the XDP hook of an interface now, by mode; undefined when it is free. */
function xdpHolder(ifindex: number): { id: number; name: string; mode: string } | undefined {
  const lib = loadLibbpf();
  const q = OPTS.xdpQuery;
  const { buf, view } = opts(q.size);
  check(`query XDP on ${ifnameOf(ifindex) ?? ifindex}`, lib.bpf_xdp_query(ifindex, 0, buf));
  for (
    const [mode, off] of [["native", q.drvProgId], ["generic", q.skbProgId], [
      "offload",
      q.hwProgId,
    ]] as const
  ) {
    const id = view.getUint32(off, true);
    if (id === 0) continue;
    const fd = lib.bpf_prog_get_fd_by_id(id);
    let name = "?";
    if (fd >= 0) {
      try {
        name = programInfo(lib, fd, "query XDP program").name;
      } finally {
        closeFd(fd);
      }
    }
    return { id, name, mode };
  }
  return undefined;
}

export class XdpAttachment implements Disposable {
  #linkFd: number;

  private constructor(
    readonly program: Program,
    readonly ifindex: number,
    readonly mode: XdpMode,
    linkFd: number,
  ) {
    this.#linkFd = linkFd;
  }

  /**
   * Attaches `program` to the XDP hook of `ifindex`: native when the driver supports it,
   * generic otherwise (mode "auto"), or exactly the mode asked for. Refuses, naming the
   * holder, when another program already has the hook.
   */
  static attach(program: Program, ifindex: number, want: XdpModeRequest = "auto"): XdpAttachment {
    const lib = loadLibbpf();
    const where = ifnameOf(ifindex) ?? `ifindex ${ifindex}`;
    const op = `attach XDP program ${program.name} to ${where}`;
    const holder = xdpHolder(ifindex);
    if (holder) {
      throw new KernelError(
        op,
        16,
        `held by program "${holder.name}" (id ${holder.id}, ${holder.mode} mode)`,
        "x0tta6bl4 never replaces another XDP program: detach it, or watch this interface " +
          "with the TC hook instead (hook: tc)",
      );
    }
    const modes: XdpMode[] = want === "auto" ? ["native", "generic"] : [want];
    let last = 0;
    for (const mode of modes) {
      const { buf, view } = opts(OPTS.linkCreate.size);
      view.setUint32(
        OPTS.linkCreate.flags,
        mode === "native" ? BPF.xdpFlagsDrvMode : BPF.xdpFlagsSkbMode,
        true,
      );
      const fd = lib.bpf_link_create(program.fd, ifindex, BPF.attachXdp, buf);
      if (fd >= 0) return new XdpAttachment(program, ifindex, mode, fd);
      last = -fd;
      if (![EOPNOTSUPP, ENOTSUPP, EINVAL].includes(last)) break;
    }
    throw new KernelError(
      op,
      last,
      want === "auto" ? "tried native, then generic" : `${want} mode`,
    );
  }

  close(): void {
    closeFd(this.#linkFd);
    this.#linkFd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export type TcDirection = "ingress" | "egress";

/** Our TC filter identity: handle and priority (higher numbers run after other filters). */
export interface TcFilterId {
  handle: number;
  priority: number;
}

export const DEFAULT_TC_FILTER: TcFilterId = { handle: 0x7830, priority: 0xc000 };

/** clsact qdiscs this process created, by ifindex, with the number of our filters on each. */
const createdQdiscs = new Map<number, number>();

function tcHook(ifindex: number, point: number) {
  const h = OPTS.tcHook;
  const { buf, view } = opts(h.size);
  view.setInt32(h.ifindex, ifindex, true);
  view.setUint32(h.attachPoint, point, true);
  return buf;
}

function tcOpts(id: TcFilterId, progFd = 0) {
  const t = OPTS.tcOpts;
  const o = opts(t.size);
  o.view.setInt32(t.progFd, progFd, true);
  o.view.setUint32(t.handle, id.handle, true);
  o.view.setUint32(t.priority, id.priority, true);
  return o;
}

/** The program behind a TC filter of ours (same handle and priority), if there is one. */
function tcFilterProgram(ifindex: number, point: number, filter: TcFilterId) {
  const lib = loadLibbpf();
  const q = tcOpts(filter);
  if (lib.bpf_tc_query(tcHook(ifindex, point), q.buf) !== 0) return undefined;
  const fd = lib.bpf_prog_get_fd_by_id(q.view.getUint32(OPTS.tcOpts.progId, true));
  if (fd < 0) return undefined;
  try {
    return programInfo(lib, fd, "query TC program");
  } finally {
    closeFd(fd);
  }
}

/** True when `tc` lists no filter at all on either clsact hook of the interface. */
function clsactEmpty(ifname: string): boolean {
  for (const dir of ["ingress", "egress"]) {
    try {
      const out = new Deno.Command("tc", { args: ["filter", "show", "dev", ifname, dir] })
        .outputSync();
      if (!out.success || out.stdout.length > 0) return false;
    } catch {
      return false; // no tc binary: leave the qdisc rather than guess
    }
  }
  return true;
}

export class TcAttachment implements Disposable {
  #attached = true;
  readonly #netns = NetnsHandle.current();

  private constructor(
    readonly program: Program,
    readonly ifindex: number,
    readonly direction: TcDirection,
    readonly filter: TcFilterId,
    readonly progId: number,
  ) {}

  /** Adds our filter on the clsact hook (created if absent) of `ifindex`. */
  static attach(
    program: Program,
    ifindex: number,
    direction: TcDirection,
    filter: TcFilterId = DEFAULT_TC_FILTER,
  ): TcAttachment {
    const lib = loadLibbpf();
    const where = ifnameOf(ifindex) ?? `ifindex ${ifindex}`;
    const op = `attach TC ${direction} program ${program.name} to ${where}`;
    const point = direction === "ingress" ? BPF.tcIngress : BPF.tcEgress;
    const ret = lib.bpf_tc_hook_create(tcHook(ifindex, point));
    if (ret < 0 && ret !== -EEXIST) check(op, ret, "creating the clsact qdisc");
    if (ret === 0) createdQdiscs.set(ifindex, 0);
    let o = tcOpts(filter, program.fd);
    let r = lib.bpf_tc_attach(tcHook(ifindex, point), o.buf);
    if (r === -EEXIST) {
      // Ours, left by a run that crashed: take its place without a gap. Anyone else's: refuse.
      const holder = tcFilterProgram(ifindex, point, filter);
      if (holder?.name === program.name) {
        o = tcOpts(filter, program.fd);
        o.view.setUint32(OPTS.tcOpts.flags, OPTS.tcOpts.replace, true);
        r = lib.bpf_tc_attach(tcHook(ifindex, point), o.buf);
      } else {
        throw new KernelError(
          op,
          EEXIST,
          `a filter with handle 0x${filter.handle.toString(16)} and priority ` +
            `${filter.priority} is already there (program "${holder?.name ?? "?"}")`,
          "another tool holds our filter slot: choose another tc_handle / tc_priority",
        );
      }
    }
    check(op, r);
    const users = createdQdiscs.get(ifindex);
    if (users !== undefined) createdQdiscs.set(ifindex, users + 1);
    return new TcAttachment(
      program,
      ifindex,
      direction,
      filter,
      o.view.getUint32(OPTS.tcOpts.progId, true),
    );
  }

  /**
   * Removes our filter if it is still ours (same handle, priority and program), and the
   * clsact qdisc too when this process created it and no filter of anyone is left on it.
   */
  close(): void {
    if (!this.#attached) return;
    this.#attached = false;
    try {
      this.#netns.run(() => this.#detach());
    } finally {
      this.#netns.close();
    }
  }

  #detach(): void {
    const lib = loadLibbpf();
    const point = this.direction === "ingress" ? BPF.tcIngress : BPF.tcEgress;
    const q = tcOpts(this.filter);
    const found = lib.bpf_tc_query(tcHook(this.ifindex, point), q.buf);
    const op = `detach TC ${this.direction} from ifindex ${this.ifindex}`;
    if (found === 0 && q.view.getUint32(OPTS.tcOpts.progId, true) === this.progId) {
      const r = lib.bpf_tc_detach(tcHook(this.ifindex, point), tcOpts(this.filter).buf);
      if (r !== -ENOENT && r !== -EINVAL) check(op, r);
    } else if (found < 0 && found !== -ENOENT && found !== -EINVAL) {
      check(op, found); // ENOENT/EINVAL: the filter or the interface went away
    }
    const users = createdQdiscs.get(this.ifindex);
    if (users === undefined) return;
    if (users > 1) {
      createdQdiscs.set(this.ifindex, users - 1);
      return;
    }
    createdQdiscs.delete(this.ifindex);
    const name = ifnameOf(this.ifindex);
    if (name && clsactEmpty(name)) {
      lib.bpf_tc_hook_destroy(tcHook(this.ifindex, BPF.tcIngress | BPF.tcEgress));
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
