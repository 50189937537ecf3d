/**
 * libbpf 1.x and the few libc calls the datapath needs, declared in one table and opened
 * lazily, so that a process without libbpf (fallback mode) never touches them. This is the
 * only module that knows symbol signatures; src/datapath/ wraps it in owned objects.
 */

const LIBBPF_SYMBOLS = {
  libbpf_set_print: { parameters: ["function"], result: "pointer" },
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__find_program_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_program__name: { parameters: ["pointer"], result: "pointer" },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  bpf_program__attach: { parameters: ["pointer"], result: "pointer" },
  bpf_program__set_autoload: { parameters: ["pointer", "bool"], result: "i32" },
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  bpf_map__name: { parameters: ["pointer"], result: "pointer" },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__type: { parameters: ["pointer"], result: "i32" },
  bpf_map__key_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__value_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" },
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  bpf_map__set_pin_path: { parameters: ["pointer", "buffer"], result: "i32" },
  bpf_map__initial_value: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" },
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_map_lookup_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  bpf_prog_test_run_opts: { parameters: ["i32", "buffer"], result: "i32" },
  /** The same call on a worker thread: the JS thread stays free (benchmarks, producers). */
  bpf_prog_test_run_opts_async: {
    name: "bpf_prog_test_run_opts",
    parameters: ["i32", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  bpf_prog_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bpf_obj_get: { parameters: ["buffer"], result: "i32" },
  bpf_link_create: { parameters: ["i32", "i32", "u32", "buffer"], result: "i32" },
  bpf_xdp_query: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  bpf_tc_hook_create: { parameters: ["buffer"], result: "i32" },
  bpf_tc_hook_destroy: { parameters: ["buffer"], result: "i32" },
  bpf_tc_attach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_detach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_query: { parameters: ["buffer", "buffer"], result: "i32" },
  ring_buffer__new: { parameters: ["i32", "function", "pointer", "buffer"], result: "pointer" },
  ring_buffer__consume: { parameters: ["pointer"], result: "i32" },
  ring_buffer__epoll_fd: { parameters: ["pointer"], result: "i32" },
  ring_buffer__free: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

const LIBC_SYMBOLS = {
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  mallopt: { parameters: ["i32", "i32"], result: "i32" },
  /** Waits on the ring buffer's epoll fd on a worker thread, so the event loop never blocks. */
  epoll_wait: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

export type Libbpf = Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS>["symbols"];
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/** Thrown when a shared library cannot be opened; carries the fix. */
export class LibraryError extends Error {
  constructor(readonly library: string, readonly hint: string, cause: unknown) {
    super(`cannot load ${library}: ${cause instanceof Error ? cause.message : cause}. ${hint}`, {
      cause,
    });
    this.name = "LibraryError";
  }
}

/** Environment variable naming another libbpf to load (for odd layouts and for tests). */
export const LIBBPF_ENV = "X0TTA6BL4_LIBBPF";
const LIBBPF_HINT =
  "Install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1; Fedora: dnf install libbpf; " +
  `Alpine: apk add libbpf) or set ${LIBBPF_ENV} to the path of libbpf.so.1.`;

let libbpf: Libbpf | undefined;
let libc: Libc | undefined;

export function loadLibbpf(): Libbpf {
  if (!libbpf) {
    const path = Deno.env.get(LIBBPF_ENV) || "libbpf.so.1";
    try {
      libbpf = Deno.dlopen(path, LIBBPF_SYMBOLS).symbols;
    } catch (e) {
      throw new LibraryError(path, LIBBPF_HINT, e);
    }
  }
  return libbpf;
}

export function loadLibc(): Libc {
  if (!libc) {
    try {
      libc = Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
    } catch (e) {
      throw new LibraryError("libc.so.6", "x0tta6bl4 needs a glibc-based Linux system.", e);
    }
  }
  return libc;
}

/** glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (malloc.h), and the largest mmap threshold
 * its dynamic adjustment reaches (which sets the trim threshold to twice that). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
const MMAP_THRESHOLD_MAX = 32 * 1024 * 1024;

/**
 * Runs `load` with glibc serving every allocation of 128 KiB or more with its own mmap, returned
 * to the kernel when freed. By default glibc raises that threshold (up to 32 MiB) each time such
 * a block is freed, so the large buffers of the BPF objects' load (libbpf's parse of the kernel
 * BTF for CO-RE, the objects' bytes) land in the C heap and stay resident after they are freed:
 * about 12 MiB of an idle appliance. Afterwards both thresholds are where the dynamic
 * adjustment ends, so that the buffers of every snapshot are reused from the heap instead of
 * mapped (or trimmed) and faulted in again each time (docs/BENCHMARKS.md, footprint).
 */
export async function returningLargeAllocations<T>(load: () => Promise<T>): Promise<T> {
  const libc = loadLibc();
  // A libc that refuses (not glibc's allocator) only keeps those buffers: the load goes on.
  if (libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024) !== 1) return await load();
  try {
    return await load();
  } finally {
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX);
    libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX);
  }
}

/** The calling thread's errno, right after a libc or libbpf call that failed. */
export function lastErrno(): number {
  const p = loadLibc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** A NUL-terminated copy of s, for `buffer` parameters that take `const char *`. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** Reads a NUL-terminated string from C memory. */
export function readCstr(p: Deno.PointerValue): string {
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

/**
 * Builds a libbpf `*_opts` struct: zeroed, `sz` at offset 0, fields written through the
 * returned DataView (little-endian on every architecture we build for).
 */
export function opts(size: number): { buf: Uint8Array<ArrayBuffer>; view: DataView } {
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, BigInt(size), true);
  return { buf, view };
}

/** Writes a pointer to `target` (a Uint8Array) at `offset` of an opts struct. */
export function setPtr(view: DataView, offset: number, target: Uint8Array<ArrayBuffer> | null) {
  const p = target === null ? 0n : Deno.UnsafePointer.value(Deno.UnsafePointer.of(target));
  view.setBigUint64(offset, BigInt(p), true);
}

/** libbpf's opts structs, as in libbpf 1.1 (bpf.h, libbpf.h): sizes and member offsets. */
export const OPTS = {
  objectOpen: { size: 80, objectName: 8, btfCustomPath: 48, logBuf: 56, logSize: 64, logLevel: 72 },
  linkCreate: { size: 64, flags: 8 },
  xdpQuery: { size: 32, progId: 8, drvProgId: 12, hwProgId: 16, skbProgId: 20, attachMode: 24 },
  tcHook: { size: 24, ifindex: 8, attachPoint: 12, parent: 16 },
  tcOpts: { size: 32, progFd: 8, flags: 12, progId: 16, handle: 20, priority: 24, replace: 1 },
  testRun: {
    size: 80,
    dataIn: 8,
    dataOut: 16,
    dataSizeIn: 24,
    dataSizeOut: 28,
    ctxIn: 32,
    ctxOut: 40,
    ctxSizeIn: 48,
    ctxSizeOut: 52,
    retval: 56,
    repeat: 60,
    duration: 64,
    flags: 68,
    cpu: 72,
    batchSize: 76,
  },
  batch: { size: 24 },
  /** struct bpf_prog_info (uapi/linux/bpf.h), the members we read. */
  progInfo: { size: 232, type: 0, id: 4, name: 64, nameLen: 16, runTimeNs: 192, runCnt: 200 },
  /** struct bpf_map_info (uapi/linux/bpf.h), the members we read. */
  // struct bpf_map_info: type, id, key_size, value_size, max_entries (u32 each) lead it.
  mapInfo: { size: 88, type: 0, id: 4, keySize: 8, valueSize: 12, maxEntries: 16 },
} as const;

/**
 * struct epoll_event (include/uapi/linux/eventpoll.h): `__u32 events; __u64 data;`, packed
 * (EPOLL_PACKED) on x86-64 only, so 12 bytes there; elsewhere the 64-bit `data` is 8-aligned
 * (AAPCS64 on aarch64), so 16 bytes. Offsets and sizes in bytes.
 */
export const EPOLL_EVENT_LAYOUTS = {
  x86_64: { size: 12, data: 4 },
  aarch64: { size: 16, data: 8 },
} as const;
export const EPOLL_EVENT = EPOLL_EVENT_LAYOUTS[Deno.build.arch];

/** uapi constants used by the datapath. */
export const BPF = {
  attachXdp: 37, // enum bpf_attach_type BPF_XDP
  xdpFlagsSkbMode: 2,
  xdpFlagsDrvMode: 4,
  tcIngress: 1,
  tcEgress: 2,
  noexist: 1n, // BPF_NOEXIST
  any: 0n,
  clockMonotonic: 1,
} as const;
