/**
 * One error type for kernel and libbpf failures: the operation, the errno name and a fix.
 * The API turns it into application/problem+json; the CLI prints message and hint.
 */
import { LibraryError } from "../../ffi/libbpf.ts";

/** A shared library (libbpf, libc) that cannot be loaded: defined beside the FFI symbols. */
export { LibraryError };

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  28: "ENOSPC",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  524: "ENOTSUPP",
  4001: "LIBBPF_ERRNO__FORMAT",
  4003: "LIBBPF_ERRNO__ENDIAN",
  4005: "LIBBPF_ERRNO__RELOC",
  4006: "LIBBPF_ERRNO__LOAD",
  4007: "LIBBPF_ERRNO__VERIFY",
  4008: "LIBBPF_ERRNO__PROG2BIG",
  4010: "LIBBPF_ERRNO__PROGTYPE",
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

const PRIVILEGE_HINT =
  "run as root, or grant the capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and " +
  "CAP_SYS_RESOURCE (systemd: AmbientCapabilities=; a file: setcap cap_bpf,cap_perfmon," +
  "cap_net_admin,cap_sys_resource+ep BINARY)";

/** The fix users should try for an errno during an operation, when one is known. */
export function hintFor(op: string, errno: number): string {
  switch (errno) {
    case 1:
      return PRIVILEGE_HINT;
    case 13:
      return op.startsWith("load")
        ? `the kernel refused the program: ${PRIVILEGE_HINT}; if the process is privileged, ` +
          "the verifier log below says why"
        : PRIVILEGE_HINT;
    case 19:
      return "no such network interface: check the name with `ip link`";
    case 16:
      return "another program already holds this hook; detach it first or choose the TC hook";
    case 3:
      return "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (it provides /sys/kernel/btf/vmlinux), " +
        "or point btf_path at a BTF file made for this kernel";
    case 95:
    case 524:
      return "this kernel or driver does not support the operation";
    case 12:
      return op.startsWith("load")
        ? "out of memory for BPF maps: lower the flow table size, or raise RLIMIT_MEMLOCK " +
          "(LimitMEMLOCK=infinity) on kernels older than 5.11"
        : "";
    case 7:
      return "a program or map is too large for this kernel";
    default:
      return "";
  }
}

export class KernelError extends Error {
  readonly errno: number;
  readonly errnoName: string;
  readonly hint: string;

  constructor(
    readonly op: string,
    errno: number,
    detail = "",
    hint?: string,
    /** The verifier's log, when the kernel rejected a program. */
    readonly verifierLog = "",
  ) {
    const name = errnoName(errno);
    const fix = hint ?? hintFor(op, errno);
    super(
      `${op}: ${name}${detail ? ` (${detail})` : ""}${fix ? `; fix: ${fix}` : ""}` +
        (verifierLog ? `\nverifier log:\n${verifierLog}` : ""),
    );
    this.name = "KernelError";
    this.errno = errno;
    this.errnoName = name;
    this.hint = fix;
  }
}

/** Throws a KernelError when a libbpf call returned a negative errno. */
export function check(op: string, ret: number, detail = ""): number {
  if (ret < 0) throw new KernelError(op, -ret, detail);
  return ret;
}

/** Why something in the datapath cannot run, in one line, from whatever it threw. */
export function reasonOf(e: unknown): string {
  if (e instanceof KernelError || e instanceof LibraryError) return e.message.split("\n")[0];
  return e instanceof Error ? e.message : String(e);
}
