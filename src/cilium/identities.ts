/**
 * The map from IP address to Cilium security identity, refreshed from the agent's API.
 *
 * A refresh either replaces the whole map with a complete, well-formed answer, or changes
 * nothing but the status: a failed refresh (agent gone, restarting, slow, answering garbage)
 * keeps the last good map for `keepForMs` (default 5 min) and says so, after which the map is
 * dropped rather than shown as if it were current. `refresh()` never throws.
 */
import { normalizeAddress } from "../net/address.ts";
import { CiliumApiError, CiliumClient, type CiliumClientOptions } from "./client.ts";
import type { CiliumPresence } from "./detect.ts";
import type { AgentHealth, EndpointInfo } from "./model.ts";

/** What the appliance shows for an address that belongs to a Cilium endpoint. */
export interface CiliumIdentity {
  /** The numeric security identity (`status.identity.id`). */
  identity: number;
  /** Its labels, e.g. "k8s:app=shop", "reserved:host" (`status.identity.labels`). */
  labels: string[];
  /** The agent-local endpoint ID. */
  endpointId: number;
  pod?: string;
  namespace?: string;
}

export interface CiliumStatus {
  /** absent: no agent socket; ok: the last refresh succeeded; error: it failed. */
  state: "absent" | "ok" | "error";
  /** One line: what was fetched, or what went wrong and what is kept. */
  reason: string;
  /** Endpoints in the map now held (0 when none is held). */
  endpoints: number;
  /** Addresses in the map now held. */
  addresses: number;
  /** When the map now held was fetched (ms since the epoch). */
  refreshedAt?: number;
  /** When the last refresh finished, good or bad. */
  checkedAt?: number;
  /** The agent's own state from /v1/healthz, when asked for and answered. */
  agent?: AgentHealth;
  /** The kind of the last error (see CiliumApiError), when state is "error" or "absent". */
  error?: string;
}

export interface CiliumIdentitiesOptions extends CiliumClientOptions {
  /** Also ask GET /v1/healthz on each refresh (default true). */
  checkHealth?: boolean;
  /** How long a map is kept after refreshes start failing (default 300 000 ms). */
  keepForMs?: number;
  /** The clock, for tests. */
  now?: () => number;
}

export class CiliumIdentities {
  readonly client: CiliumClient;
  readonly #checkHealth: boolean;
  readonly #keepForMs: number;
  readonly #now: () => number;
  #byAddress = new Map<string, CiliumIdentity>();
  #endpoints = 0;
  #refreshedAt: number | undefined;
  #status: CiliumStatus = { state: "absent", reason: "not asked yet", endpoints: 0, addresses: 0 };
  #inFlight: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(o: CiliumIdentitiesOptions = {}) {
    this.client = new CiliumClient(o);
    this.#checkHealth = o.checkHealth ?? true;
    this.#keepForMs = o.keepForMs ?? 300_000;
    this.#now = o.now ?? Date.now;
  }

  get status(): CiliumStatus {
    return this.#status;
  }

  /** Number of addresses in the map held now. */
  get size(): number {
    return this.#byAddress.size;
  }

  /** The identity of an address (any usual spelling of IPv4 or IPv6), or undefined. */
  lookup(addr: string): CiliumIdentity | undefined {
    if (this.#byAddress.size === 0) return undefined;
    // Flow addresses already come in the canonical form: try them as they are first.
    const hit = this.#byAddress.get(addr);
    if (hit) return hit;
    const canonical = normalizeAddress(addr);
    return canonical === undefined || canonical === addr
      ? undefined
      : this.#byAddress.get(canonical);
  }

  /** Fetches the endpoints and replaces the map; concurrent calls share one request. */
  refresh(): Promise<void> {
    this.#inFlight ??= this.#refresh().finally(() => this.#inFlight = undefined);
    return this.#inFlight;
  }

  /** Refreshes now and every `intervalMs`, calling `onRefresh` after each (errors in it are caught). */
  start(intervalMs: number, onRefresh?: (s: CiliumStatus) => void): void {
    if (this.#timer !== undefined) return;
    const run = () =>
      this.refresh().then(() => {
        try {
          onRefresh?.(this.#status);
        } catch { /* the listener's problem, not the loop's */ }
      });
    run();
    this.#timer = setInterval(run, intervalMs);
  }

  /** Stops the loop and waits for a refresh under way. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  async #refresh(): Promise<void> {
    let agent: AgentHealth | undefined;
    let healthNote = "";
    try {
      const endpoints = await this.client.endpoints();
      if (this.#checkHealth) {
        try {
          agent = await this.client.health();
        } catch (e) {
          healthNote = `; /v1/healthz failed: ${(e as Error).message}`;
        }
      }
      this.#install(endpoints, agent, healthNote);
    } catch (e) {
      this.#failed(e);
    }
  }

  #install(endpoints: EndpointInfo[], agent: AgentHealth | undefined, healthNote: string) {
    const map = new Map<string, CiliumIdentity>();
    let waiting = 0;
    let clashes = 0;
    for (const ep of endpoints) {
      if (!ep.identity) {
        waiting++;
        continue;
      }
      const entry: CiliumIdentity = Object.freeze({
        identity: ep.identity.id,
        labels: Object.freeze([...ep.identity.labels]) as string[],
        endpointId: ep.id,
        ...(ep.pod !== undefined ? { pod: ep.pod } : {}),
        ...(ep.namespace !== undefined ? { namespace: ep.namespace } : {}),
      });
      for (const a of ep.addresses) {
        const prev = map.get(a);
        if (prev) {
          // Two endpoints claim one address (one is going away): the lower endpoint ID stays, so
          // that the answer does not depend on the order the agent lists them in.
          clashes++;
          if (prev.endpointId < entry.endpointId) continue;
        }
        map.set(a, entry);
      }
    }
    const now = this.#now();
    this.#byAddress = map;
    this.#endpoints = endpoints.length;
    this.#refreshedAt = now;
    const notes = [
      waiting ? `${waiting} without an identity yet` : "",
      clashes ? `${clashes} ${clashes === 1 ? "address" : "addresses"} claimed twice` : "",
    ].filter(Boolean);
    const agentText = agent ? `; agent ${agent.state}${agent.msg ? `: ${agent.msg}` : ""}` : "";
    this.#status = {
      state: "ok",
      reason: `${endpoints.length} endpoints, ${map.size} addresses with an identity${
        notes.length ? ` (${notes.join(", ")})` : ""
      }${agentText}${healthNote}`,
      endpoints: endpoints.length,
      addresses: map.size,
      refreshedAt: now,
      checkedAt: now,
      ...(agent ? { agent } : {}),
    };
  }

  #failed(e: unknown) {
    const now = this.#now();
    const err = e instanceof CiliumApiError
      ? e
      : new CiliumApiError("io", "refresh", `unexpected: ${(e as Error)?.message ?? String(e)}`);
    let kept: string;
    if (this.#refreshedAt === undefined) {
      kept = "no identities known";
    } else if (now - this.#refreshedAt > this.#keepForMs) {
      kept = `the map from ${Math.round((now - this.#refreshedAt) / 1000)} s ago is dropped`;
      this.#byAddress = new Map();
      this.#endpoints = 0;
      this.#refreshedAt = undefined;
    } else {
      kept = `keeping ${this.#byAddress.size} addresses from ${
        Math.round((now - this.#refreshedAt) / 1000)
      } s ago`;
    }
    this.#status = {
      state: err.kind === "absent" ? "absent" : "error",
      reason: `${err.message}; ${kept}`,
      endpoints: this.#endpoints,
      addresses: this.#byAddress.size,
      ...(this.#refreshedAt !== undefined ? { refreshedAt: this.#refreshedAt } : {}),
      checkedAt: now,
      error: err.kind,
    };
  }
}

/** The `cilium` field of a flow in the API: each side's identity, where known. */
export interface FlowCilium {
  src?: CiliumIdentity;
  dst?: CiliumIdentity;
}

/**
 * The Cilium identities of a flow's two ends, or undefined when neither end is a known Cilium
 * endpoint (so `{ ...flow, cilium: enrichFlow(flow, ids) }` leaves the field out in JSON).
 */
export function enrichFlow(
  flow: { saddr: string; daddr: string },
  ids: Pick<CiliumIdentities, "lookup">,
): FlowCilium | undefined {
  const src = ids.lookup(flow.saddr);
  const dst = ids.lookup(flow.daddr);
  if (!src && !dst) return undefined;
  return { ...(src ? { src } : {}), ...(dst ? { dst } : {}) };
}

/** A health-board entry for Cilium, from what was detected and how the last refresh went. */
export function ciliumHealth(
  presence: Pick<CiliumPresence, "found" | "summary">,
  status: CiliumStatus,
): { state: "healthy" | "degraded"; reason: string } {
  if (status.state === "ok") {
    return { state: "healthy", reason: `${presence.summary}; identities: ${status.reason}` };
  }
  if (status.state === "absent") {
    // Not having Cilium is not a fault; having had it and lost its socket is worth a look.
    return status.addresses > 0
      ? { state: "degraded", reason: `${presence.summary}; identities: ${status.reason}` }
      : { state: "healthy", reason: presence.summary };
  }
  return { state: "degraded", reason: `${presence.summary}; identities: ${status.reason}` };
}
