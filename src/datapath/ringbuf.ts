/**
 * Ring buffer consumer. Waiting happens on the ring buffer's epoll fd in a worker thread
 * (a nonblocking FFI call), so the event loop never blocks; consuming happens synchronously
 * on the JS thread, in batches, with a C-to-JS callback per record.
 */
import { EPOLL_EVENT, lastErrno, loadLibbpf, loadLibc } from "../../ffi/libbpf.ts";
import { check, KernelError } from "./errors.ts";
import type { BpfMap } from "./object.ts";

/** Receives one record; `data` is a view of kernel-shared memory valid only during the call. */
export type RecordHandler = (data: Uint8Array) => void;

/** Ready fds one epoll_wait may report (libbpf's epoll set holds one per ring; we have one). */
const EPOLL_MAX_EVENTS = 4;

export class RingBuffer implements Disposable {
  #rb: Deno.PointerValue;
  readonly #cb: Deno.UnsafeCallback<{ parameters: ["pointer", "pointer", "usize"]; result: "i32" }>;
  readonly #epfd: number;
  readonly #epollEvents = new Uint8Array(EPOLL_EVENT.size * EPOLL_MAX_EVENTS);
  #running: Promise<void> | undefined;
  #stop = false;
  /** Records consumed so far, and records whose handler threw (they are skipped). */
  consumed = 0;
  handlerErrors = 0;

  constructor(readonly map: BpfMap, onRecord: RecordHandler) {
    const lib = loadLibbpf();
    this.#cb = new Deno.UnsafeCallback(
      { parameters: ["pointer", "pointer", "usize"], result: "i32" } as const,
      (_ctx, data, size) => {
        if (data === null) return 0;
        try {
          onRecord(new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(data, Number(size))));
        } catch {
          this.handlerErrors++;
        }
        return 0;
      },
    );
    this.#rb = lib.ring_buffer__new(map.fd, this.#cb.pointer, null, null);
    if (this.#rb === null) {
      const errno = lastErrno();
      this.#cb.close();
      throw new KernelError(`open ring buffer ${map.name}`, errno);
    }
    this.#epfd = lib.ring_buffer__epoll_fd(this.#rb);
  }

  /** Consumes every record available now; returns how many. */
  consume(): number {
    if (this.#rb === null) return 0;
    const n = check(
      `consume ring buffer ${this.map.name}`,
      loadLibbpf().ring_buffer__consume(this.#rb),
    );
    this.consumed += n;
    return n;
  }

  /** Resolves true when records are waiting, false after `timeoutMs` without any. */
  async wait(timeoutMs: number): Promise<boolean> {
    const n = await loadLibc().epoll_wait(
      this.#epfd,
      this.#epollEvents,
      EPOLL_MAX_EVENTS,
      timeoutMs,
    );
    if (n < 0) {
      const errno = lastErrno();
      if (errno !== 4) throw new KernelError(`wait on ring buffer ${this.map.name}`, errno);
      return false; // EINTR
    }
    return n > 0;
  }

  /** Starts consuming in the background until close(). */
  start(pollMs = 200): void {
    if (this.#running) return;
    this.#running = (async () => {
      while (!this.#stop) {
        if (await this.wait(pollMs) && !this.#stop) this.consume();
      }
    })();
  }

  /** Stops the background loop (waiting at most one poll interval), then frees libbpf state. */
  async stop(): Promise<void> {
    this.#stop = true;
    await this.#running;
    this.close();
  }

  close(): void {
    if (this.#rb === null) return;
    if (this.#running && !this.#stop) {
      throw new Error("ring buffer consumer still running: await stop() instead of close()");
    }
    loadLibbpf().ring_buffer__free(this.#rb);
    this.#rb = null;
    this.#cb.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
