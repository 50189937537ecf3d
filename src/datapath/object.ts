/**
 * Owned kernel objects: a Collection (one loaded BPF object file) hands out its Programs and
 * Maps; closing the Collection closes them all. Opened from embedded bytes, never from a path.
 */
import {
  BPF,
  cstr,
  lastErrno,
  type Libbpf,
  loadLibbpf,
  loadLibc,
  OPTS,
  opts,
  readCstr,
  setPtr,
} from "../../ffi/libbpf.ts";
import { check, hintFor, KernelError } from "./errors.ts";
import { elfSymbols } from "./btf.ts";
import { captureLibbpfLog, libbpfMessages } from "./log.ts";

export const VMLINUX_BTF = "/sys/kernel/btf/vmlinux";

export interface OpenOptions {
  /** Object name as the kernel shows it (bpftool prog show). */
  name: string;
  /** max_entries per map name, set before load. */
  maxEntries?: Record<string, number>;
  /** Kernel BTF to relocate against, where the kernel has none of its own. */
  btfPath?: string;
  /** Pin these maps at these bpffs paths, reusing what is pinned there already. */
  pins?: Record<string, string>;
  /** Values of `const volatile` globals (the .rodata section), by name, set before load. */
  rodata?: Record<string, number | bigint>;
  /** Programs not to load (absent hooks, or switched off). */
  skip?: string[];
}

const MAP_TYPE_PERCPU = new Set([5, 6, 10]); // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
const ENOENT = 2;

function testRunOpts(data: Uint8Array<ArrayBuffer>, repeat: number) {
  const o = OPTS.testRun;
  const opt = opts(o.size);
  setPtr(opt.view, o.dataIn, data);
  opt.view.setUint32(o.dataSizeIn, data.length, true);
  opt.view.setInt32(o.repeat, repeat, true);
  return opt;
}

/** A tracing attachment (tp_btf, fentry…) made by libbpf from the program's section name. */
export class TracingLink implements Disposable {
  #link: Deno.PointerValue;

  constructor(link: Deno.PointerValue, readonly program: string) {
    this.#link = link;
  }

  close(): void {
    if (this.#link === null) return;
    loadLibbpf().bpf_link__destroy(this.#link);
    this.#link = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export class Program {
  constructor(
    readonly name: string,
    readonly fd: number,
    private readonly lib: Libbpf,
    private readonly ptr: Deno.PointerValue = null,
  ) {}

  /** Attaches as its section says (tp_btf/…, fentry/…); throws the kernel's reason. */
  attachTracing(): TracingLink {
    const link = this.ptr === null ? null : this.lib.bpf_program__attach(this.ptr);
    if (link === null) throw new KernelError(`attach ${this.name}`, lastErrno() || 22);
    return new TracingLink(link, this.name);
  }

  /** Runs the program once or `repeat` times on `data` with BPF_PROG_TEST_RUN. */
  testRun(data: Uint8Array<ArrayBuffer>, repeat = 1): { retval: number; durationNs: number } {
    const { buf, view } = testRunOpts(data, repeat);
    check(`test-run ${this.name}`, this.lib.bpf_prog_test_run_opts(this.fd, buf));
    return {
      retval: view.getInt32(OPTS.testRun.retval, true),
      durationNs: view.getUint32(OPTS.testRun.duration, true),
    };
  }

  /** testRun on a worker thread, leaving the JS thread free meanwhile. */
  async testRunAsync(
    data: Uint8Array<ArrayBuffer>,
    repeat = 1,
  ): Promise<{ retval: number; durationNs: number }> {
    const { buf, view } = testRunOpts(data, repeat);
    check(`test-run ${this.name}`, await this.lib.bpf_prog_test_run_opts_async(this.fd, buf));
    return {
      retval: view.getInt32(OPTS.testRun.retval, true),
      durationNs: view.getUint32(OPTS.testRun.duration, true),
    };
  }

  /** Kernel-side facts: id, and run time and count when kernel.bpf_stats_enabled is 1. */
  info(): { id: number; name: string; runTimeNs: number; runCount: number } {
    return programInfo(this.lib, this.fd, `query ${this.name}`);
  }
}

export function programInfo(lib: Libbpf, fd: number, op: string) {
  const o = OPTS.progInfo;
  const buf = new Uint8Array(o.size);
  const len = new Uint32Array([o.size]);
  check(op, lib.bpf_obj_get_info_by_fd(fd, buf, len));
  const view = new DataView(buf.buffer);
  const nameBytes = buf.subarray(o.name, o.name + o.nameLen);
  const nul = nameBytes.indexOf(0);
  return {
    id: view.getUint32(o.id, true),
    name: new TextDecoder().decode(nameBytes.subarray(0, nul < 0 ? o.nameLen : nul)),
    runTimeNs: Number(view.getBigUint64(o.runTimeNs, true)),
    runCount: Number(view.getBigUint64(o.runCnt, true)),
  };
}

/** One batch of a map read: `count` keys and values, in buffers reused between batches. */
export interface Batch {
  count: number;
  keys: Uint8Array;
  values: Uint8Array;
}

class BatchBuffers {
  readonly keys: Uint8Array<ArrayBuffer>;
  readonly values: Uint8Array<ArrayBuffer>;
  readonly inBatch: Uint8Array<ArrayBuffer>;
  readonly outBatch: Uint8Array<ArrayBuffer>;
  readonly count = new Uint32Array(1);
  readonly opts = opts(OPTS.batch.size).buf;
  busy = false;

  constructor(readonly size: number, keySize: number, valueBytes: number) {
    this.keys = new Uint8Array(size * keySize);
    this.values = new Uint8Array(size * valueBytes);
    const token = Math.max(8, keySize);
    this.inBatch = new Uint8Array(token);
    this.outBatch = new Uint8Array(token);
  }
}

export class BpfMap {
  readonly percpu: boolean;
  /** Bytes of one CPU's value (value_size rounded up to 8, as the kernel lays them out). */
  readonly valueStride: number;
  /** Bytes of one element's value as user space reads it (all CPUs for per-CPU maps). */
  readonly valueBytes: number;

  constructor(
    readonly name: string,
    readonly fd: number,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    readonly cpus: number,
    private readonly lib: Libbpf,
  ) {
    this.percpu = MAP_TYPE_PERCPU.has(type);
    this.valueStride = this.percpu ? (valueSize + 7) & ~7 : valueSize;
    this.valueBytes = this.valueStride * (this.percpu ? cpus : 1);
  }

  lookup(key: Uint8Array<ArrayBuffer>): Uint8Array | undefined {
    const value = new Uint8Array(this.valueBytes);
    const ret = this.lib.bpf_map_lookup_elem(this.fd, key, value);
    if (ret === -ENOENT) return undefined;
    check(`lookup in map ${this.name}`, ret);
    return value;
  }

  update(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>, flags = BPF.any): void {
    check(`update map ${this.name}`, this.lib.bpf_map_update_elem(this.fd, key, value, flags));
  }

  /** Deletes a key; returns false when it was not there. */
  delete(key: Uint8Array<ArrayBuffer>): boolean {
    const ret = this.lib.bpf_map_delete_elem(this.fd, key);
    if (ret === -ENOENT) return false;
    check(`delete from map ${this.name}`, ret);
    return true;
  }

  /** Buffers of the last batched read, reused by the next (a read every snapshot would
   * otherwise leave half a MiB of external garbage per second at the flow table's size). */
  #batchBuffers?: BatchBuffers;

  /**
   * Reads the whole map with bpf_map_lookup_batch, `batchSize` elements a call. The buffers
   * each batch lives in are reused by the next batch and the next read: copy what you keep.
   */
  *batches(batchSize = 4096): Generator<Batch> {
    // A read inside another read of the same map gets buffers of its own.
    let b = this.#batchBuffers;
    if (b === undefined || b.size !== batchSize || b.busy) {
      b = new BatchBuffers(batchSize, this.keySize, this.valueBytes);
      if (this.#batchBuffers === undefined || !this.#batchBuffers.busy) this.#batchBuffers = b;
    }
    b.busy = true;
    try {
      let first = true;
      for (;;) {
        b.count[0] = batchSize;
        const ret = this.lib.bpf_map_lookup_batch(
          this.fd,
          first ? null : b.inBatch,
          b.outBatch,
          b.keys,
          b.values,
          b.count,
          b.opts,
        );
        if (ret < 0 && ret !== -ENOENT) check(`read map ${this.name}`, ret);
        if (b.count[0] > 0) yield { count: b.count[0], keys: b.keys, values: b.values };
        if (ret < 0) return;
        b.inBatch.set(b.outBatch);
        first = false;
      }
    } finally {
      b.busy = false;
    }
  }

  /** The kernel's id of this map (bpftool map show id N). */
  id(): number {
    const o = OPTS.mapInfo;
    const buf = new Uint8Array(o.size);
    check(
      `query map ${this.name}`,
      this.lib.bpf_obj_get_info_by_fd(this.fd, buf, new Uint32Array([o.size])),
    );
    return new DataView(buf.buffer).getUint32(o.id, true);
  }
}

/** Maps pinned by an earlier run whose shape differs from this object's: they cannot be reused. */
export class PinMismatchError extends KernelError {
  constructor(object: string, readonly maps: string[]) {
    super(
      `load ${object}`,
      22,
      `pinned maps of another shape: ${maps.join(", ")}`,
      "remove the pins (or let the appliance start its counters over)",
    );
    this.name = "PinMismatchError";
  }
}

/**
 * How the map pinned at `path` differs from map `m` of the object being opened ("" when it
 * matches or nothing is pinned there): type, key size, value size, max entries.
 */
function pinnedDiffers(lib: Libbpf, m: Deno.PointerValue, path: string): string {
  const fd = lib.bpf_obj_get(cstr(path));
  if (fd < 0) return "";
  try {
    const o = OPTS.mapInfo;
    const buf = new Uint8Array(o.size);
    check(
      `query pinned map ${path}`,
      lib.bpf_obj_get_info_by_fd(fd, buf, new Uint32Array([o.size])),
    );
    const v = new DataView(buf.buffer);
    const want: [string, number, number][] = [
      ["type", lib.bpf_map__type(m), o.type],
      ["key size", lib.bpf_map__key_size(m), o.keySize],
      ["value size", lib.bpf_map__value_size(m), o.valueSize],
      ["max entries", lib.bpf_map__max_entries(m), o.maxEntries],
    ];
    return want.filter(([, x, at]) => v.getUint32(at, true) !== x)
      .map(([what, x, at]) => `${what} ${v.getUint32(at, true)}, not ${x}`).join(", ");
  } finally {
    loadLibc().close(fd);
  }
}

/** Writes `const volatile` globals into the object's .rodata before load, at their ELF offsets. */
function setRodata(
  lib: Libbpf,
  obj: Deno.PointerValue,
  bytes: Uint8Array,
  name: string,
  values: Record<string, number | bigint>,
): void {
  const vars = elfSymbols(bytes, ".rodata");
  let map: Deno.PointerValue = null;
  for (let m = lib.bpf_object__next_map(obj, null); m; m = lib.bpf_object__next_map(obj, m)) {
    if (readCstr(lib.bpf_map__name(m)).endsWith(".rodata")) map = m;
  }
  const size = new BigUint64Array(1);
  const data = map && lib.bpf_map__initial_value(map, new Uint8Array(size.buffer));
  if (!data) throw new Error(`${name} has no .rodata to set`);
  const view = new DataView(Deno.UnsafePointerView.getArrayBuffer(data, Number(size[0])));
  for (const [key, value] of Object.entries(values)) {
    const v = vars.get(key);
    if (!v) throw new Error(`${name} has no .rodata variable ${key}`);
    if (v.size === 8) view.setBigUint64(v.offset, BigInt(value), true);
    else if (v.size === 4) view.setUint32(v.offset, Number(value), true);
    else throw new Error(`${name}: .rodata variable ${key} has an unsupported size ${v.size}`);
  }
}

export class Collection implements Disposable {
  #obj: Deno.PointerValue;
  readonly programs = new Map<string, Program>();
  readonly maps = new Map<string, BpfMap>();

  private constructor(obj: Deno.PointerValue, readonly name: string, lib: Libbpf) {
    this.#obj = obj;
    const cpus = check("count possible CPUs", lib.libbpf_num_possible_cpus());
    for (
      let p = lib.bpf_object__next_program(obj, null);
      p;
      p = lib.bpf_object__next_program(obj, p)
    ) {
      const pname = readCstr(lib.bpf_program__name(p));
      this.programs.set(pname, new Program(pname, lib.bpf_program__fd(p), lib, p));
    }
    for (let m = lib.bpf_object__next_map(obj, null); m; m = lib.bpf_object__next_map(obj, m)) {
      const mname = readCstr(lib.bpf_map__name(m));
      this.maps.set(
        mname,
        new BpfMap(
          mname,
          lib.bpf_map__fd(m),
          lib.bpf_map__type(m),
          lib.bpf_map__key_size(m),
          lib.bpf_map__value_size(m),
          lib.bpf_map__max_entries(m),
          cpus,
          lib,
        ),
      );
    }
  }

  /** Opens an object from its bytes, sizes its maps and loads it into the kernel. */
  static load(bytes: Uint8Array<ArrayBuffer>, o: OpenOptions): Collection {
    const lib = loadLibbpf();
    captureLibbpfLog();
    const btfPath = o.btfPath;
    if (!btfPath) {
      try {
        Deno.statSync(VMLINUX_BTF);
      } catch {
        throw new KernelError(`load ${o.name}`, 3, `${VMLINUX_BTF} is missing`);
      }
    }
    const log = new Uint8Array(1 << 20);
    const oo = OPTS.objectOpen;
    const { buf, view } = opts(oo.size);
    const name = cstr(o.name);
    const btf = btfPath ? cstr(btfPath) : null;
    setPtr(view, oo.objectName, name);
    setPtr(view, oo.btfCustomPath, btf);
    setPtr(view, oo.logBuf, log);
    view.setBigUint64(oo.logSize, BigInt(log.length), true);
    libbpfMessages.splice(0);
    const obj = lib.bpf_object__open_mem(bytes, BigInt(bytes.length), buf);
    if (obj === null) {
      throw new KernelError(`open ${o.name}`, lastErrno(), libbpfMessages.join("; "));
    }
    try {
      for (const [mapName, n] of Object.entries(o.maxEntries ?? {})) {
        const m = lib.bpf_object__find_map_by_name(obj, cstr(mapName));
        if (m === null) throw new Error(`${o.name} has no map ${mapName}`);
        check(`size map ${mapName}`, lib.bpf_map__set_max_entries(m, n));
      }
      const mismatched: string[] = [];
      for (const [mapName, path] of Object.entries(o.pins ?? {})) {
        const m = lib.bpf_object__find_map_by_name(obj, cstr(mapName));
        if (m === null) throw new Error(`${o.name} has no map ${mapName}`);
        const differs = pinnedDiffers(lib, m, path);
        if (differs) mismatched.push(`${mapName} (${differs})`);
        check(`pin map ${mapName} at ${path}`, lib.bpf_map__set_pin_path(m, cstr(path)));
      }
      if (mismatched.length) throw new PinMismatchError(o.name, mismatched);
      if (o.rodata) setRodata(lib, obj, bytes, o.name, o.rodata);
      for (const prog of o.skip ?? []) {
        const p = lib.bpf_object__find_program_by_name(obj, cstr(prog));
        if (p === null) throw new Error(`${o.name} has no program ${prog}`);
        check(`skip program ${prog}`, lib.bpf_program__set_autoload(p, false));
      }
      const ret = lib.bpf_object__load(obj);
      if (ret < 0) {
        const nul = log.indexOf(0);
        const text = new TextDecoder().decode(log.subarray(0, nul < 0 ? log.length : nul));
        const said = libbpfMessages.filter((m) => !m.includes("-- ") && !m.startsWith(";"));
        // CO-RE needs the kernel's BTF: name that fix rather than the errno's generic one.
        const btfProblem = said.some((m) => /target BTF|kernel BTF/.test(m));
        throw new KernelError(
          `load ${o.name}`,
          -ret,
          said.slice(-3).join("; "),
          btfProblem
            ? `the kernel BTF${btfPath ? ` at ${btfPath}` : ""} is missing or unreadable: ` +
              hintFor("load", 3)
            : undefined,
          text.trim().split("\n").slice(-40).join("\n"),
        );
      }
      // keep the option buffers alive until libbpf no longer reads them
      void [name, btf, log];
      return new Collection(obj, o.name, lib);
    } catch (e) {
      lib.bpf_object__close(obj);
      throw e;
    }
  }

  program(name: string): Program {
    const p = this.programs.get(name);
    if (!p) throw new Error(`object ${this.name} has no program ${name}`);
    return p;
  }

  map(name: string): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new Error(`object ${this.name} has no map ${name}`);
    return m;
  }

  get closed(): boolean {
    return this.#obj === null;
  }

  close(): void {
    if (this.#obj === null) return;
    loadLibbpf().bpf_object__close(this.#obj);
    this.#obj = null;
    this.programs.clear();
    this.maps.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
