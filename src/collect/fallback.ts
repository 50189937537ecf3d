/**
 * The fallback collector: per-interface counters from the kernel's own statistics in
 * /sys/class/net, for when eBPF cannot run. Same snapshot shape, totals only (no protocol
 * split, no flows), marked source "fallback".
 */
import type { InterfaceSnapshot } from "../state/snapshot.ts";

function readNumber(path: string): number {
  return Number(Deno.readTextFileSync(path).trim());
}

/** One interface's counters, or undefined when it does not exist (any more). */
export function readSysfsInterface(
  name: string,
  root = "/sys/class/net",
): InterfaceSnapshot | undefined {
  const dir = `${root}/${name}`;
  try {
    const stat = (f: string) => readNumber(`${dir}/statistics/${f}`);
    return {
      ifindex: readNumber(`${dir}/ifindex`),
      name,
      source: "fallback",
      hooks: [],
      traffic: [
        {
          direction: "rx",
          family: "all",
          protocol: "all",
          packets: stat("rx_packets"),
          bytes: stat("rx_bytes"),
        },
        {
          direction: "tx",
          family: "all",
          protocol: "all",
          packets: stat("tx_packets"),
          bytes: stat("tx_bytes"),
        },
      ],
      malformed: {},
      fragments: 0,
      vlanTagged: 0,
    };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}
