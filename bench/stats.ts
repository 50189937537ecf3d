/** What the benchmarks share: medians, and the kernel's BPF run-time statistics. */
import { sh } from "../tests/helpers/netns.ts";

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * kernel.bpf_stats_enabled on (the BPF programs' run time is counted only then; it costs them
 * two clock reads each) until disposed, then as it was.
 */
export function bpfStats(): Disposable {
  const was = sh("sysctl", ["-n", "kernel.bpf_stats_enabled"]).trim();
  sh("sysctl", ["-qw", "kernel.bpf_stats_enabled=1"]);
  return { [Symbol.dispose]: () => sh("sysctl", ["-qw", `kernel.bpf_stats_enabled=${was}`]) };
}
