/**
 * Cilium, seen from x0tta6bl4: is an agent on this box (`detectCilium`), which security
 * identity, labels and pod each local endpoint address has (`CiliumIdentities`, read from the
 * agent's REST API on its UNIX socket), and the `cilium` field of a flow (`enrichFlow`).
 * Everything here only reads: no Cilium map, program, filter or setting is ever touched.
 */
import type { Config } from "../config/schema.ts";
import { detectCilium } from "./detect.ts";
import { ciliumHealth, CiliumIdentities } from "./identities.ts";

export {
  CiliumApiError,
  CiliumClient,
  type CiliumClientOptions,
  type CiliumErrorKind,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_SOCKET,
  DEFAULT_TIMEOUT_MS,
} from "./client.ts";
export {
  type CiliumPresence,
  DEFAULT_BPFFS_ROOT,
  DEFAULT_MAX_PINS,
  detectCilium,
  type DetectOptions,
} from "./detect.ts";
export {
  ciliumHealth,
  CiliumIdentities,
  type CiliumIdentitiesOptions,
  type CiliumIdentity,
  type CiliumStatus,
  enrichFlow,
  type FlowCilium,
} from "./identities.ts";
export {
  type AgentHealth,
  CiliumShapeError,
  type EndpointInfo,
  parseEndpoints,
  parseHealth,
} from "./model.ts";

/**
 * Cilium as the configuration asks: looked for (its pins and API socket) when
 * `cilium.enabled`, its identities read every `cilium.refresh_s` when an agent is found;
 * `report` gets the health to show, at start and after every refresh. Undefined when no agent
 * is there to read.
 */
export function ciliumFromConfig(
  c: Config,
  report: (state: "healthy" | "degraded", reason: string) => void,
): CiliumIdentities | undefined {
  if (!c.cilium.enabled) {
    report("healthy", "not looked for (cilium.enabled is false)");
    return undefined;
  }
  const found = detectCilium({ socketPath: c.cilium.socket, bpffsRoot: c.cilium.bpffs_root });
  if (!found.found) {
    report("healthy", found.summary);
    return undefined;
  }
  const note = " x0tta6bl4 runs its TC filters after Cilium's (priority " +
    `${c.datapath.tc_priority}), refuses XDP where Cilium holds it, and never touches its programs.`;
  const identities = new CiliumIdentities({ socketPath: c.cilium.socket });
  identities.start(c.cilium.refresh_s * 1000, (st) => {
    const h = ciliumHealth(found, st);
    report(h.state, h.reason + note);
  });
  return identities;
}
