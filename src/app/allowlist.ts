/**
 * Where the MAPE-K allow-list comes from: what the box depends on (its gateways and nameservers,
 * read again every snapshot, so a route change is followed), the box's own addresses and
 * loopback, the management network, `mapek.allow`, and the mesh peers (configured ones, and the
 * ones learned from the mesh, which come and go every snapshot).
 */
import type { Config } from "../config/schema.ts";
import { type AllowEntry, AllowList, localEntries } from "../mapek/allow.ts";
import { DEPENDENCY_SOURCES, dependencyEntries, type DependencySources } from "../mapek/depends.ts";
import type { PeerSnapshot } from "../mesh/node.ts";
import { parseCidr } from "../net/cidr.ts";
import { parseHostPort } from "../net/hostport.ts";

/** Allow-list entries of mesh peers, HOST:PORT and why; hosts that are names are left out
 * (their addresses are learned from the peers themselves). */
function meshPeerEntries(peers: { hostPort: string; why: string }[]): AllowEntry[] {
  return peers.flatMap(({ hostPort, why }) => {
    try {
      return [{ cidr: parseCidr(parseHostPort(hostPort).hostname), why }];
    } catch {
      return [];
    }
  });
}

export class AllowListSources {
  readonly list = new AllowList();
  /** What changes only with the configuration or the box's addresses. */
  #fixed: AllowEntry[] = [];

  constructor(
    private config: Config,
    private readonly sources: DependencySources = DEPENDENCY_SOURCES,
  ) {
    this.#refreshFixed();
  }

  /** A new configuration: every source read again. */
  reconfigure(c: Config): void {
    this.config = c;
    this.#refreshFixed();
  }

  #refreshFixed(): void {
    const m = this.config.mapek;
    this.#fixed = [
      ...localEntries(parseHostPort(this.config.api.listen).hostname, m.allow_management),
      ...m.allow.map((c) => ({ cidr: parseCidr(c), why: "configured (mapek.allow)" })),
      ...(m.allow_mesh_peers
        ? meshPeerEntries(
          this.config.mesh.peers.map((p) => ({ hostPort: p, why: "mesh peer (configured)" })),
        )
        : []),
    ];
  }

  /**
   * The list again with the mesh peers learned now; `full` also reads the box's addresses
   * again (they change rarely, and reading them costs a syscall per interface).
   */
  refresh(learned: readonly PeerSnapshot[], full: boolean): void {
    if (full) this.#refreshFixed();
    const peers = this.config.mapek.allow_mesh_peers ? learned : [];
    this.list.set([
      ...dependencyEntries(this.sources),
      ...this.#fixed,
      ...meshPeerEntries(peers.map((p) => ({ hostPort: p.mesh, why: `mesh peer ${p.name}` }))),
    ]);
  }
}
