/**
 * x0tta6bl4: the composition root. Parses the command line and runs one command.
 * Exit codes: 0 done, 1 failure at run time (kernel, privileges, interface), 2 bad usage.
 */
import { parseArgs } from "node:util";
import { runAttach } from "./src/cli/attach.ts";
import { KernelError } from "./src/datapath/errors.ts";
import { defaultRouteInterface } from "./src/datapath/netdev.ts";
import { LibraryError } from "./ffi/libbpf.ts";
import { VERSION } from "./src/version.ts";

const USAGE = `x0tta6bl4 ${VERSION}: eBPF traffic monitoring for edge Linux boxes

Usage: x0tta6bl4 <command> [options]

Commands:
  attach [IFACE…]   attach to interfaces (default: the default-route interface), print live
                    per-interface rates and top flows every second; Ctrl-C detaches
  version           print the version
  help              this text

Run 'x0tta6bl4 <command> --help' for a command's options.`;

const ATTACH_USAGE = `Usage: x0tta6bl4 attach [IFACE…] [options]

Attaches the flow-accounting programs to each interface (default: the interface of the
default route), prints per-interface rates and the top flows every interval, and detaches
everything on Ctrl-C or SIGTERM.

Options:
  --hook tc|xdp          ingress hook: tc (default; keeps GRO/GSO on virtual links) or xdp
  --xdp-mode MODE        auto (native, else generic), native or generic   [auto]
  --interval SECONDS     refresh interval                                  [1]
  --top N                flows shown                                       [10]
  --count N              stop after N refreshes (0: run until a signal)    [0]
  --flow-table-size N    flow table capacity (LRU)                         [65536]
  -h, --help             this text`;

class UsageError extends Error {}

function positiveInt(name: string, v: string | undefined, def: number, min = 1): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer ≥ ${min}`);
  }
  return n;
}

async function attach(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      hook: { type: "string", default: "tc" },
      "xdp-mode": { type: "string", default: "auto" },
      interval: { type: "string" },
      top: { type: "string" },
      count: { type: "string" },
      "flow-table-size": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(ATTACH_USAGE);
    return 0;
  }
  if (values.hook !== "tc" && values.hook !== "xdp") {
    throw new UsageError("--hook must be tc or xdp");
  }
  const xdpMode = values["xdp-mode"];
  if (xdpMode !== "auto" && xdpMode !== "native" && xdpMode !== "generic") {
    throw new UsageError("--xdp-mode must be auto, native or generic");
  }
  const interval = Number(values.interval ?? "1");
  if (!(interval >= 0.1 && interval <= 3600)) {
    throw new UsageError("--interval must be between 0.1 and 3600 seconds");
  }
  let interfaces = positionals;
  if (interfaces.length === 0) {
    const def = defaultRouteInterface();
    if (!def) throw new UsageError("no default route: name the interfaces to watch");
    interfaces = [def];
  }
  return await runAttach({
    interfaces,
    hook: values.hook,
    xdpMode,
    intervalMs: interval * 1000,
    top: positiveInt("top", values.top, 10),
    count: positiveInt("count", values.count, 0, 0),
    flowTableSize: positiveInt("flow-table-size", values["flow-table-size"], 65536, 1024),
  });
}

export async function main(argv: string[]): Promise<number> {
  const [command = "attach", ...rest] = argv;
  try {
    switch (command) {
      case "attach":
        return await attach(rest);
      case "version":
      case "--version":
        console.log(`x0tta6bl4 ${VERSION} (deno ${Deno.version.deno})`);
        return 0;
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e instanceof TypeError && "code" in e)) {
      console.error(`x0tta6bl4: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof KernelError || e instanceof LibraryError) {
      console.error(`x0tta6bl4: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
