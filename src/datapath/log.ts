/**
 * libbpf's own messages, captured instead of printed: warnings and info lines land in
 * `libbpfMessages` (the last 100), so errors can quote what libbpf said.
 */
import { loadLibbpf, loadLibc } from "../../ffi/libbpf.ts";

export const libbpfMessages: string[] = [];

let installed = false;

/** Routes libbpf's print callback into libbpfMessages; idempotent. */
export function captureLibbpfLog(): void {
  if (installed) return;
  const libc = loadLibc();
  const line = new Uint8Array(1024);
  const cb = new Deno.UnsafeCallback(
    { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const,
    (level, fmt, args) => {
      if (level > 1 || fmt === null) return 0; // drop debug chatter
      // On x86_64 and aarch64 a va_list parameter arrives as a pointer, as vsnprintf takes it.
      const n = libc.vsnprintf(line, BigInt(line.length), fmt, args);
      const text = new TextDecoder().decode(line.subarray(0, Math.min(n, line.length - 1)));
      libbpfMessages.push(text.trimEnd());
      if (libbpfMessages.length > 100) libbpfMessages.shift();
      return 0;
    },
  );
  loadLibbpf().libbpf_set_print(cb.pointer);
  installed = true;
}
