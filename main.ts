/**
 * x0tta6bl4: the composition root. Parses the command line and runs one command.
 * Exit codes: 0 done, 1 failure at run time (kernel, privileges, interface), 2 bad usage.
 */
import { parseArgs } from "node:util";
import { runAttach } from "./src/cli/attach.ts";
import { revoke, status, top } from "./src/cli/client.ts";
import { doctor } from "./src/cli/doctor.ts";
import { bundle } from "./src/cli/bundle.ts";
import { upgrade } from "./src/cli/upgrade.ts";
import { serve } from "./src/cli/serve.ts";
import { ConfigError, flagSpecs, loadConfig } from "./src/config/load.ts";
import { tokenFilePath } from "./src/config/schema.ts";
import { joinHostPort, parseHostPort } from "./src/net/hostport.ts";
import { TokenError } from "./src/api/token.ts";
import { KernelError, LibraryError } from "./src/datapath/errors.ts";
import { defaultRouteInterface } from "./src/datapath/netdev.ts";
import { BUILD, VERSION } from "./src/version.ts";
import { FLOW_OBJECT } from "./src/datapath/flow.ts";
import { createHash } from "node:crypto";

const USAGE = `x0tta6bl4 ${VERSION}: eBPF traffic monitoring for edge Linux boxes

Usage: x0tta6bl4 <command> [options]

Commands:
  serve             run the appliance: collector, HTTP API and /metrics (the default command)
  status            health, interface rates and MAPE-K actions of a running appliance (its API)
  top               live top flows of a running appliance (through its API)
  revoke ID         end a live MAPE-K action now (through the API, with the token file)
  doctor            check the kernel and privileges the appliance needs, and say how to fix
  bundle            write a support tarball (no secrets in it) and say where it is
  upgrade           fetch, verify and swap in a newer release; roll back if it is not ready
  attach [IFACE…]   attach to interfaces without the daemon, print live rates and top flows
  version           print the version
  help              this text

Exit codes: 0 ok, 1 failure at run time (or, for status, not healthy), 2 bad usage or
configuration, 3 no appliance answers.

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

const UPGRADE_USAGE = `Usage: x0tta6bl4 upgrade [--check] [--base-url URL] [--timeout S] [options]

Reads the latest release's SHA256SUMS, which names its version and until when it may be trusted,
and verifies its signature before believing either. When that version is newer (never older,
unless --allow-downgrade), downloads the binary (at most 256 MiB), checks its sum, swaps it in
atomically beside the current one (kept as .prev), restarts the service and waits for /readyz,
then for /api/v1/health (with the API token when its file exists). The previous binary is put
back and restarted when the restart fails, or when the new version is not ready within the
timeout (30 s), runs in fallback mode where this one ran eBPF, or reports a component
unhealthy that was not before. --check only reports. The outcome is kept in <state_dir>/upgrade.json and shown as
the "upgrade" component of health.

Options:
  --check              only say whether a newer version exists
  --base-url URL       release address, https:// (default: the one this build was made for)
  --insecure-http      accept an http:// release address (anyone on the path can then hold
                       releases back until the signed SHA256SUMS expires)
  --allow-downgrade    install the latest release even when it is older than this one
  --binary PATH        the binary to replace (default: this one)
  --restart CMD        how to restart the appliance [systemctl restart x0tta6bl4]
  --timeout S          how long the new version has to become ready and healthy [30]
  --public-key FILE    release key (default: the one this build carries)
  --listen, --config, --state-dir   where the appliance's API, token and state are`;

/** Version, commit, build date and the hashes of the embedded BPF objects. */
function versionText(): string {
  const sha = createHash("sha256").update(FLOW_OBJECT).digest("hex");
  return [
    `x0tta6bl4 ${VERSION}`,
    `commit ${BUILD.commit}`,
    `built ${BUILD.date || "from source"}`,
    `deno ${Deno.version.deno}, v8 ${Deno.version.v8}`,
    `flow.bpf.o sha256 ${sha}`,
  ].join("\n");
}

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

function serveUsage(): string {
  const lines = flagSpecs().map((f) => {
    const flag = `--${f.name}${f.value ? ` ${f.value}` : ""}`;
    return `  ${flag.padEnd(34)} ${f.description}${f.default ? ` [${f.default}]` : ""}`;
  });
  return `Usage: x0tta6bl4 serve [--config FILE] [options]

Runs the appliance. Settings come from the embedded defaults, then the config file, then
X0TTA6BL4_* environment variables, then these flags (see docs/CONFIG.md). SIGHUP reloads the
file (interfaces, metrics, interval); SIGTERM and SIGINT detach everything and exit.

Options:
  --config FILE                      YAML configuration file
${lines.join("\n")}
  -h, --help                         this text`;
}

function configOptions(): Record<string, { type: "string"; multiple: boolean }> {
  const o: Record<string, { type: "string"; multiple: boolean }> = {
    config: { type: "string", multiple: false },
  };
  for (const f of flagSpecs()) o[f.name] = { type: "string", multiple: f.multiple };
  return o;
}

async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...configOptions(), help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(serveUsage());
    return 0;
  }
  const { config, help: _, ...flags } = values as Record<string, string | string[] | boolean>;
  return await serve({
    file: typeof config === "string" ? config : undefined,
    env: Deno.env.toObject(),
    flags,
  });
}

/** The first of these token files this user can read, or undefined. */
function readableToken(files: string[]): string | undefined {
  for (const f of files) {
    if (!f) continue;
    try {
      const t = Deno.readTextFileSync(f).trim();
      if (t) return t;
    } catch { /* not readable by this user: try the next */ }
  }
  return undefined;
}

/** The API base URL of the local appliance, from the same config sources as serve. */
async function clientBase(
  args: string[],
  extra: Record<string, { type: "string" } | { type: "boolean" }> = {},
  allowPositionals = false,
) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals,
    options: { ...configOptions(), ...extra, help: { type: "boolean", short: "h" } },
  });
  const { config, help, ...flags } = values as Record<string, string | string[] | boolean>;
  const cfg = await loadConfig({
    file: typeof config === "string" ? config : undefined,
    env: Deno.env.toObject(),
    flags,
  });
  const { hostname, port } = parseHostPort(cfg.api.listen);
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  const base = `http://${joinHostPort(host, port)}`;
  return {
    base,
    // A token to read with, for an appliance whose reads are behind it (api.auth: all): the API
    // token when this user can read it, else the read-only one; none otherwise.
    api: { base, token: readableToken([tokenFilePath(cfg), cfg.api.read_token_file]) },
    help: help === true,
    values,
    positionals,
    config: cfg,
  };
}

export async function main(argv: string[]): Promise<number> {
  const [command = "serve", ...rest] = argv;
  try {
    switch (command) {
      case "serve":
        return await serveCommand(rest);
      case "status": {
        const c = await clientBase(rest);
        if (c.help) {
          console.log(
            "Usage: x0tta6bl4 status [--listen ADDR:PORT | --config FILE]\n\n" +
              "Prints health, interface rates and the MAPE-K loop's live actions (with their\n" +
              "reasons) of the appliance at the configured address.\n" +
              "Exit 0 healthy, 1 degraded or unhealthy, 3 no appliance answers.",
          );
          return 0;
        }
        return await status(c.api);
      }
      case "top": {
        const c = await clientBase(rest, {
          interval: { type: "string" },
          top: { type: "string" },
          count: { type: "string" },
        });
        if (c.help) {
          console.log(
            "Usage: x0tta6bl4 top [--listen ADDR:PORT | --config FILE] [--interval S] " +
              "[--top N] [--count N]\n\nLive top flows by rate from the appliance's API; Ctrl-C ends.",
          );
          return 0;
        }
        const v = c.values as Record<string, string | undefined>;
        const interval = Number(v.interval ?? "1");
        if (!(interval >= 0.2 && interval <= 3600)) {
          throw new UsageError("--interval must be between 0.2 and 3600 seconds");
        }
        return await top(
          c.api,
          interval * 1000,
          positiveInt("top", v.top, 20),
          positiveInt("count", v.count, 0, 0),
        );
      }
      case "revoke": {
        const c = await clientBase(rest, {}, true);
        const ids = c.positionals;
        if (c.help) {
          console.log(
            "Usage: x0tta6bl4 revoke ID [--listen ADDR:PORT | --config FILE]\n\n" +
              "Ends the live MAPE-K action ID now (a block or rate limit leaves the datapath),\n" +
              "through the API with the token of api.token_file. IDs: x0tta6bl4 status.\n" +
              "Exit 0 revoked, 1 no such live action or refused, 3 no appliance answers.",
          );
          return 0;
        }
        if (ids.length !== 1) throw new UsageError("revoke takes one action ID (see: status)");
        return await revoke(c.base, ids[0], tokenFilePath(c.config));
      }
      case "doctor":
        if (rest.includes("--help") || rest.includes("-h")) {
          console.log(
            "Usage: x0tta6bl4 doctor\n\nChecks kernel, BTF, libbpf, privileges and bpffs, " +
              "loads the programs once, and says how to fix what is missing. Exit 0 when eBPF can run.",
          );
          return 0;
        }
        return doctor();
      case "bundle": {
        const c = await clientBase(rest, { output: { type: "string" } });
        if (c.help) {
          console.log(
            "Usage: x0tta6bl4 bundle [--config FILE | --listen ADDR:PORT] [--output FILE]\n\n" +
              "Writes a support tarball (build facts, doctor, config, health, metrics, logs, kernel\n" +
              "and interface facts) with no token or key in it, and says where it is.",
          );
          return 0;
        }
        const out = (c.values as Record<string, string | undefined>).output;
        return await bundle(c.config, c.api, versionText(), out);
      }
      case "upgrade": {
        const c = await clientBase(rest, {
          check: { type: "boolean" },
          "base-url": { type: "string" },
          binary: { type: "string" },
          restart: { type: "string" },
          timeout: { type: "string" },
          "public-key": { type: "string" },
          "allow-downgrade": { type: "boolean" },
          "insecure-http": { type: "boolean" },
        });
        if (c.help) {
          console.log(UPGRADE_USAGE);
          return 0;
        }
        const v = c.values as Record<string, string | boolean | undefined>;
        const key = typeof v["public-key"] === "string"
          ? Deno.readTextFileSync(v["public-key"])
          : BUILD.publicKey;
        const baseUrl = (v["base-url"] as string | undefined) ?? BUILD.baseUrl;
        if (!key) throw new UsageError("this build carries no release key: pass --public-key FILE");
        if (!baseUrl) throw new UsageError("no release address: pass --base-url URL");
        const s = await upgrade({
          baseUrl,
          binary: (v.binary as string | undefined) ?? Deno.execPath(),
          publicKeyPem: key,
          stateDir: c.config.state_dir,
          restart: (v.restart as string | undefined) ?? "systemctl restart x0tta6bl4",
          api: c.base,
          tokenFile: tokenFilePath(c.config),
          readyTimeoutMs: positiveInt("timeout", v.timeout as string | undefined, 30) * 1000,
          check: v.check === true,
          allowDowngrade: v["allow-downgrade"] === true,
          insecureHttp: v["insecure-http"] === true,
        });
        console.log(
          `upgrade: ${s.outcome} (running ${s.current}, latest ${s.latest ?? "unknown"})` +
            (s.error ? `: ${s.error}` : ""),
        );
        return s.ok ? 0 : 1;
      }
      case "attach":
        return await attach(rest);
      case "version":
      case "--version":
        console.log(versionText());
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
    if (e instanceof ConfigError) {
      console.error(`x0tta6bl4: invalid configuration:\n${e.message}`);
      return 2;
    }
    if (e instanceof TokenError) {
      console.error(`x0tta6bl4: ${e.message}`);
      return 1;
    }
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
