/**
 * `x0tta6bl4 serve`: the command line around the Appliance (src/app/appliance.ts). Reads the
 * configuration, builds and starts the appliance, serves its HTTP API, reloads it on SIGHUP
 * and stops it, detaching everything, on SIGTERM or SIGINT.
 */
import { Appliance } from "../app/appliance.ts";
import { type Log, stderrLog } from "../app/log.ts";
import { loadConfig } from "../config/load.ts";
import { joinHostPort, parseHostPort } from "../net/hostport.ts";
import { returningLargeAllocations } from "../../ffi/libbpf.ts";

export interface ServeInputs {
  file?: string;
  env: Record<string, string>;
  flags: Record<string, string | string[] | boolean>;
}

export async function serve(inputs: ServeInputs, log: Log = stderrLog): Promise<number> {
  const startedAt = performance.now();
  const config = await loadConfig(inputs);
  const appliance = await returningLargeAllocations(() => Appliance.fromConfig(config, log));
  appliance.start();

  const { hostname, port } = parseHostPort(appliance.config.api.listen);
  const stop = new AbortController();
  const server = Deno.serve({
    hostname,
    port,
    signal: stop.signal,
    onListen: ({ hostname, port }) => {
      log("info", `listening on http://${joinHostPort(hostname, port)}`, {
        mode: appliance.mode,
        startup_ms: Math.round(performance.now() - startedAt),
      });
    },
  }, appliance.app.fetch);

  const done = Promise.withResolvers<void>();
  const onStop = () => done.resolve();
  // A configuration that does not load is refused whole: the running one stays.
  const onHup = async () => {
    try {
      appliance.reload(await loadConfig(inputs));
    } catch (e) {
      log("error", "reload refused: the running configuration stays", { error: String(e) });
      appliance.store.events.append("reload", { ok: false, error: String(e) });
    }
  };
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGHUP", onHup);
  try {
    await done.promise;
  } finally {
    Deno.removeSignalListener("SIGTERM", onStop);
    Deno.removeSignalListener("SIGINT", onStop);
    Deno.removeSignalListener("SIGHUP", onHup);
    stop.abort();
    await appliance.stop(server.finished);
    log("info", "stopped: everything detached");
  }
  return 0;
}
