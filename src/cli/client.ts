/**
 * `x0tta6bl4 status` and `x0tta6bl4 top`: the terminal's view of a running appliance, through
 * its HTTP API (never the kernel), so they work without privileges.
 */
import type { FlowSnapshot } from "../flows/key.ts";
import { endpoint, si, table } from "./format.ts";
import { protocolName } from "../net/protocol.ts";

/** Where the appliance's API is, and a token to read with (needed when api.auth is all). */
export interface ApiClient {
  base: string;
  token?: string;
}

async function get(api: ApiClient, path: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${api.base}${path}`, {
      headers: api.token ? { authorization: `Bearer ${api.token}` } : {},
    });
  } catch (e) {
    throw new Error(`no appliance answers at ${api.base}: ${(e as Error).message}`);
  }
  if (res.status === 401) {
    await res.body?.cancel();
    throw new Error(
      `${path}: the appliance wants a token to read (api.auth is all): run as its user or ` +
        "root, so that the API token file can be read, or set api.read_token_file",
    );
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}: ${await res.text()}`);
  return await res.json();
}

interface Health {
  status: string;
  mode: string;
  fallbackReason?: string;
  components: { component: string; state: string; reason: string; since: string }[];
}

interface Ifaces {
  interfaces: {
    name: string;
    source?: string;
    present?: boolean;
    rates?: Record<"rx" | "tx", { bitsPerSecond: number; packetsPerSecond: number }>;
  }[];
}

interface Mapek {
  mode: string;
  active: number;
  observed: number;
}

interface MapekActions {
  actions: {
    id: string;
    kind: string;
    target: string;
    value?: number;
    state: string;
    expiresAt: number;
    droppedPackets?: number;
    decisionId: string;
  }[];
}

/** The MAPE-K loop's mode and live actions with their reasons; nothing when it is off. */
async function mapekStatus(api: ApiClient): Promise<void> {
  let m: Mapek, a: MapekActions, why: Map<string, string>;
  try {
    m = await get(api, "/api/v1/mapek") as Mapek;
    a = await get(api, "/api/v1/mapek/actions") as MapekActions;
    const d = await get(api, "/api/v1/mapek/decisions?limit=500") as {
      decisions: { id: string; reason: string }[];
    };
    why = new Map(d.decisions.map((x) => [x.id, x.reason]));
  } catch {
    return; // switched off (404), or an older appliance
  }
  console.log();
  console.log(
    `MAPE-K: ${m.mode} mode, ${m.active} action(s) in force, ${m.observed} planned (observe)`,
  );
  if (a.actions.length === 0) return;
  console.log(table([
    ["ACTION", "TARGET", "STATE", "EXPIRES IN", "DROPPED", "WHY"],
    ...a.actions.map((x) => [
      x.value === undefined ? x.kind : `${x.kind} ${x.value}`,
      x.target,
      x.state,
      `${Math.max(0, Math.round((x.expiresAt - Date.now()) / 1000))} s`,
      x.droppedPackets === undefined ? "" : si(x.droppedPackets),
      why.get(x.decisionId) ?? "",
    ]),
  ]));
}

/**
 * Ends a live MAPE-K action through the API, with the token from `tokenFile`. Exit 0 revoked,
 * 1 no such live action (or the token was refused), 3 no appliance answers.
 */
export async function revoke(base: string, id: string, tokenFile: string): Promise<number> {
  let token: string;
  try {
    token = Deno.readTextFileSync(tokenFile).trim();
  } catch (e) {
    console.error(
      `x0tta6bl4: cannot read the API token ${tokenFile}: ${(e as Error).message} ` +
        "(run as the appliance's user or root, or set api.token_file)",
    );
    return 1;
  }
  let res: Response;
  try {
    res = await fetch(`${base}/api/v1/mapek/actions/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}` },
    });
  } catch (e) {
    console.error(`x0tta6bl4: no appliance answers at ${base}: ${(e as Error).message}`);
    return 3;
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    console.error(`x0tta6bl4: ${body.title ?? res.status}: ${body.detail ?? res.statusText}`);
    return 1;
  }
  console.log(`revoked ${body.kind} ${body.target} (${body.id})`);
  return 0;
}

/**
 * Prints health, interface rates and the MAPE-K loop's live actions; exit 0 healthy, 1 degraded
 * or unhealthy, 3 unreachable.
 */
export async function status(api: ApiClient): Promise<number> {
  let h: Health, i: Ifaces;
  try {
    h = await get(api, "/api/v1/health") as Health;
    i = await get(api, "/api/v1/interfaces") as Ifaces;
  } catch (e) {
    console.error(`x0tta6bl4: ${(e as Error).message}`);
    return 3;
  }
  console.log(
    `status: ${h.status}  mode: ${h.mode}${h.fallbackReason ? ` (${h.fallbackReason})` : ""}`,
  );
  console.log(table([
    ["COMPONENT", "STATE", "SINCE", "REASON"],
    ...h.components.map((c) => [c.component, c.state, c.since, c.reason]),
  ]));
  console.log();
  console.log(table([
    ["INTERFACE", "SOURCE", "IN bit/s", "IN pkt/s", "OUT bit/s", "OUT pkt/s"],
    ...i.interfaces.map((x) =>
      x.rates
        ? [
          x.name,
          x.source ?? "",
          `${si(x.rates.rx.bitsPerSecond)}b`,
          si(x.rates.rx.packetsPerSecond),
          `${si(x.rates.tx.bitsPerSecond)}b`,
          si(x.rates.tx.packetsPerSecond),
        ]
        : [x.name, "absent", "", "", "", ""]
    ),
  ]));
  await mapekStatus(api);
  return h.status === "healthy" ? 0 : 1;
}

interface FlowsReply {
  total: number;
  flows: Pick<
    FlowSnapshot,
    | "interface"
    | "direction"
    | "family"
    | "proto"
    | "saddr"
    | "daddr"
    | "sport"
    | "dport"
    | "packets"
    | "bytes"
  >[];
}

/** Redraws the top flows every interval until Ctrl-C (or `count` times). */
export async function top(api: ApiClient, intervalMs: number, limit: number, count: number) {
  const prev = new Map<string, number>();
  const stop = Promise.withResolvers<void>();
  const onSig = () => stop.resolve();
  Deno.addSignalListener("SIGINT", onSig);
  try {
    for (let n = 0; count === 0 || n < count; n++) {
      let r: FlowsReply;
      try {
        r = await get(api, `/api/v1/flows?sort=bytes&limit=${limit * 4}`) as FlowsReply;
      } catch (e) {
        console.error(`x0tta6bl4: ${(e as Error).message}`);
        return 3;
      }
      const rows = r.flows.map((f) => {
        const id =
          `${f.interface}/${f.direction}/${f.proto}/${f.saddr}/${f.sport}/${f.daddr}/${f.dport}`;
        const rate = prev.has(id) ? ((f.bytes - prev.get(id)!) * 8000) / intervalMs : 0;
        prev.set(id, f.bytes);
        return { f, rate };
      }).sort((a, b) => b.rate - a.rate || b.f.bytes - a.f.bytes).slice(0, limit);
      if (Deno.stdout.isTerminal()) console.log("\x1b[2J\x1b[H");
      console.log(`${new Date().toISOString()}  ${r.total} flows`);
      console.log(table([
        ["INTERFACE", "DIR", "PROTO", "SOURCE", "DESTINATION", "bit/s", "packets", "bytes"],
        ...rows.map(({ f, rate }) => [
          f.interface,
          f.direction,
          protocolName(f.proto),
          endpoint(f.saddr, f.sport, f.family, f.proto),
          endpoint(f.daddr, f.dport, f.family, f.proto),
          `${si(rate)}b`,
          String(f.packets),
          String(f.bytes),
        ]),
      ]));
      const t = new Promise((r) => setTimeout(r, intervalMs));
      if (await Promise.race([t.then(() => false), stop.promise.then(() => true)])) break;
    }
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSig);
  }
}
