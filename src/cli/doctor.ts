/**
 * `x0tta6bl4 doctor`: probes every kernel and privilege feature the appliance needs and says
 * what is missing and how to fix it. Exit 0 when eBPF can run, 1 when something it needs fails.
 */
import { loadLibbpf } from "../../ffi/libbpf.ts";
import { KernelError, LibraryError } from "../datapath/errors.ts";
import { FlowDatapath } from "../datapath/flow.ts";
import { defaultRouteInterface } from "../datapath/netdev.ts";
import { VMLINUX_BTF } from "../datapath/object.ts";
import { SIGNALS, vmlinuxBtf } from "../datapath/signals.ts";

type Verdict = "ok" | "warn" | "fail";
interface Check {
  name: string;
  verdict: Verdict;
  detail: string;
  fix?: string;
}

const CAPS: [number, string][] = [
  [39, "CAP_BPF"],
  [38, "CAP_PERFMON"],
  [12, "CAP_NET_ADMIN"],
  [24, "CAP_SYS_RESOURCE"],
];

function read(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

function runChecks(): Check[] {
  const checks: Check[] = [];
  const add = (name: string, verdict: Verdict, detail: string, fix?: string) =>
    checks.push({ name, verdict, detail, fix });

  const release = Deno.osRelease();
  const [maj, min] = release.split(".").map(Number);
  add(
    "kernel",
    maj > 5 || (maj === 5 && min >= 15) ? "ok" : "fail",
    `Linux ${release}`,
    "x0tta6bl4 needs Linux 5.15 or newer (BPF links, ring buffer, bpf_timer)",
  );

  const capEff = BigInt(
    `0x${read("/proc/self/status")?.match(/CapEff:\s*([0-9a-f]+)/)?.[1] ?? "0"}`,
  );
  const has = (bit: number) => (capEff & (1n << BigInt(bit))) !== 0n;
  // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON; CAP_SYS_RESOURCE only matters for
  // RLIMIT_MEMLOCK on kernels before 5.11.
  const missing = CAPS.filter(([bit, name]) =>
    !has(bit) && !(has(21) && bit !== 12) &&
    !(name === "CAP_SYS_RESOURCE" && (maj > 5 || (maj === 5 && min >= 11)))
  ).map(([, n]) => n);
  add(
    "privileges",
    missing.length === 0 ? "ok" : "fail",
    missing.length ? `missing ${missing.join(", ")}` : "the needed capabilities are there",
    "run as root, or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_RESOURCE " +
      "(systemd: AmbientCapabilities=)",
  );

  let btf = false;
  try {
    btf = Deno.statSync(VMLINUX_BTF).size > 0;
  } catch { /* absent */ }
  add(
    "kernel BTF",
    btf ? "ok" : "fail",
    btf ? VMLINUX_BTF : `${VMLINUX_BTF} is missing`,
    "use a kernel built with CONFIG_DEBUG_INFO_BTF=y, or set datapath.btf_path",
  );

  try {
    loadLibbpf();
    add("libbpf", "ok", "libbpf.so.1 loads");
  } catch (e) {
    add("libbpf", "fail", (e as Error).message.split(". ")[0], (e as LibraryError).hint);
  }

  const mounted = (read("/proc/mounts") ?? "").split("\n").some((l) => l.split(" ")[2] === "bpf");
  add(
    "bpffs",
    mounted ? "ok" : "warn",
    mounted ? "mounted" : "not mounted (x0tta6bl4 mounts it at /sys/fs/bpf when it pins maps)",
    "mount -t bpf bpf /sys/fs/bpf",
  );

  if (checks.every((c) => c.name === "bpffs" || c.verdict === "ok")) {
    try {
      new FlowDatapath({ flowTableSize: 1024 }).close();
      add("load", "ok", "the flow programs pass this kernel's verifier");
    } catch (e) {
      add("load", "fail", (e as Error).message.split("\n")[0], (e as KernelError).hint);
    }
  } else {
    add("load", "fail", "not tried: fix the failures above first");
  }

  if (btf) {
    try {
      const kernel = vmlinuxBtf();
      const missing = Object.entries(SIGNALS).filter(([, s]) =>
        kernel.idsByName(`btf_trace_${s.tracepoint}`).length === 0
      ).map(([name, s]) => `${name} (${s.tracepoint})`);
      add(
        "kernel signals",
        missing.length ? "warn" : "ok",
        missing.length
          ? `unavailable here: ${missing.join(", ")}`
          : "drops (kfree_skb), retransmits (tcp_retransmit_skb), RTT (tcp_probe)",
        "a newer kernel has these tracepoints; the rest of x0tta6bl4 works without them",
      );
    } catch (e) {
      add("kernel signals", "warn", `cannot read the kernel's BTF: ${(e as Error).message}`);
    }
  }

  const stats = read("/proc/sys/kernel/bpf_stats_enabled");
  add(
    "bpf_stats",
    stats === "1" ? "ok" : "warn",
    stats === "1" ? "enabled: per-program run time is counted" : "disabled: no per-program cost",
    "sysctl -w kernel.bpf_stats_enabled=1 (costs some nanoseconds per packet)",
  );

  const def = defaultRouteInterface();
  add(
    "default route",
    def ? "ok" : "warn",
    def ? `via ${def} (watched by default)` : "none: name interfaces in the config",
  );
  return checks;
}

/** The doctor's report as text, and how many checks failed. */
export function doctorReport(): { text: string; failed: number } {
  const checks = runChecks();
  const width = Math.max(...checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of checks) {
    const mark = c.verdict === "ok" ? "ok  " : c.verdict === "warn" ? "warn" : "FAIL";
    lines.push(`${mark}  ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.verdict !== "ok" && c.fix) lines.push(`      ${"".padEnd(width)}  fix: ${c.fix}`);
  }
  const failed = checks.filter((c) => c.verdict === "fail").length;
  lines.push(
    failed
      ? `\n${failed} problem(s): x0tta6bl4 will run in fallback mode`
      : "\neBPF datapath: ready",
  );
  return { text: lines.join("\n"), failed };
}

export function doctor(): number {
  const r = doctorReport();
  console.log(r.text);
  return r.failed ? 1 : 0;
}
