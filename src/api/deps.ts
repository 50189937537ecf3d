/** What the API reads and calls: the state store and the services, as `buildApp` gets them. */
import type { Collector } from "../collect/collector.ts";
import type { MeshService } from "../mesh/service.ts";
import type { MapekLoop } from "../mapek/loop.ts";
import type { CiliumIdentities } from "../cilium/cilium.ts";
import type { StateStore } from "../state/store.ts";

export interface ApiDeps {
  store: StateStore;
  collector: Pick<Collector, "attach" | "detach" | "retry" | "mode" | "fallbackReason" | "watched">;
  /** The mesh, when enabled. */
  mesh?: Pick<MeshService, "last" | "discovery">;
  /** Cilium endpoint identities, when a Cilium agent runs on the box. */
  cilium?: Pick<CiliumIdentities, "lookup">;
  /** The MAPE-K loop, when enabled. */
  mapek?: Pick<MapekLoop, "status" | "decisions" | "actions" | "revoke" | "degradedPeers">;
  token: string;
  /** A read-only token: reads only (`api.read_token_file`). */
  readToken?: string;
  /** What needs a token: mutating calls (default), or every route but /livez and /readyz. */
  auth?: "mutations" | "all";
  /** The Host names the API answers to (DNS rebinding); undefined: any. */
  allowedHost?: (host: string) => boolean;
  /** Most live event stream clients at once (default 16). */
  maxEventClients?: number;
  maxBodyBytes: number;
  metrics: () => string;
  /** Ready: a fresh snapshot exists and nothing is unhealthy. */
  ready: () => { ready: boolean; reason: string };
  /** The status page's summary of the current snapshot, if there is one. */
  summary: () => unknown;
  /** Log an unexpected error (the client gets a problem without details). */
  logError: (e: unknown) => void;
}
