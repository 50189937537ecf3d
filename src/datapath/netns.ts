/**
 * Network namespaces for the datapath. Running a synchronous function inside another
 * namespace moves only the calling thread, and moves it back before returning, so interface
 * lookups, XDP links and TC filters made inside land in that namespace. A TC attachment keeps
 * a handle on its namespace, so that it detaches there whoever calls close().
 */
import { cstr, lastErrno, loadLibc } from "../../ffi/libbpf.ts";
import { KernelError } from "./errors.ts";

const O_RDONLY_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

function openNs(path: string): number {
  const fd = loadLibc().open(cstr(path), O_RDONLY_CLOEXEC);
  if (fd < 0) throw new KernelError(`open network namespace ${path}`, lastErrno());
  return fd;
}

/** An open handle on a network namespace; close() releases it. */
export class NetnsHandle implements Disposable {
  #fd: number;

  private constructor(fd: number, readonly label: string) {
    this.#fd = fd;
  }

  /** The calling thread's namespace now. */
  static current(): NetnsHandle {
    return new NetnsHandle(openNs("/proc/thread-self/ns/net"), "current");
  }

  /** A namespace made with `ip netns add NAME`. */
  static named(name: string): NetnsHandle {
    return new NetnsHandle(openNs(`/run/netns/${name}`), name);
  }

  /** Runs `fn` (synchronous) inside this namespace and moves the thread back afterwards. */
  run<T>(fn: () => T): T {
    if (fn.constructor.name === "AsyncFunction") {
      throw new TypeError("a namespace can only run a synchronous function");
    }
    const libc = loadLibc();
    const home = openNs("/proc/thread-self/ns/net");
    try {
      if (libc.setns(this.#fd, CLONE_NEWNET) !== 0) {
        throw new KernelError(`enter network namespace ${this.label}`, lastErrno());
      }
      // Staying in the wrong namespace would silently misdirect everything after this.
      const restore = () => {
        if (libc.setns(home, CLONE_NEWNET) !== 0) {
          throw new KernelError("return to the original network namespace", lastErrno());
        }
      };
      let out: T;
      try {
        out = fn();
      } catch (e) {
        restore();
        throw e;
      }
      restore();
      return out;
    } finally {
      libc.close(home);
    }
  }

  close(): void {
    if (this.#fd >= 0) loadLibc().close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Runs a synchronous function inside the namespace made with `ip netns add NAME`. */
export function withNetns<T>(name: string, fn: () => T): T {
  using ns = NetnsHandle.named(name);
  return ns.run(fn);
}
