/**
 * The appliance's own process metrics, in the Prometheus client conventions (`process_*`),
 * read from Deno and /proc/self when rendered. Written here instead of taken from prom-client,
 * which cost the appliance about 24 MiB of RSS for these few numbers.
 */
import { cpuUsage } from "node:process";
import { Families } from "./collector.ts";
import { type MetricFamily, MetricSet } from "./writer.ts";

/** When this process started, in seconds since the epoch (its time origin). */
const START = performance.timeOrigin / 1000;

function statusKiB(status: string, field: string): number {
  return Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
}

function openFds(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n - 1; // the directory listing's own descriptor
}

function maxFds(): number {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
    .find((l) => l.startsWith("Max open files"));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === undefined || soft === "unlimited" ? NaN : Number(soft);
}

export class ProcessMetrics {
  readonly #set = new MetricSet();
  readonly #f: Record<string, MetricFamily>;

  constructor() {
    const f = new Families(this.#set);
    this.#f = {
      cpu: f.counter(
        "process_cpu_seconds_total",
        "CPU time the appliance used, user and system, in seconds.",
      ),
      rss: f.gauge("process_resident_memory_bytes", "Resident memory of the appliance, in bytes."),
      vsz: f.gauge("process_virtual_memory_bytes", "Virtual memory of the appliance, in bytes."),
      heap: f.gauge(
        "process_heap_bytes",
        "JavaScript heap of the appliance: used and total (V8), and external memory (typed " +
          "arrays and other buffers).",
        ["kind"],
      ),
      fds: f.gauge("process_open_fds", "Open file descriptors."),
      maxFds: f.gauge("process_max_fds", "Limit of open file descriptors."),
      start: f.gauge("process_start_time_seconds", "When the appliance started, since the epoch."),
    };
  }

  get names(): string[] {
    return this.#set.names;
  }

  render(): string {
    const f = this.#f;
    const cpu = cpuUsage();
    f.cpu.set([], (cpu.user + cpu.system) / 1e6);
    const mem = Deno.memoryUsage();
    f.rss.set([], mem.rss);
    f.vsz.set([], statusKiB(Deno.readTextFileSync("/proc/self/status"), "VmSize") * 1024);
    f.heap.set(["used"], mem.heapUsed);
    f.heap.set(["total"], mem.heapTotal);
    f.heap.set(["external"], mem.external);
    f.fds.set([], openFds());
    const max = maxFds();
    if (Number.isFinite(max)) f.maxFds.set([], max);
    f.start.set([], START);
    return this.#set.render();
  }
}
