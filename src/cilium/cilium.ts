/**
 * Cilium, seen from x0tta6bl4: is an agent on this box (`detectCilium`), which security
 * identity, labels and pod each local endpoint address has (`CiliumIdentities`, read from the
 * agent's REST API on its UNIX socket), and the `cilium` field of a flow (`enrichFlow`).
 * Everything here only reads: no Cilium map, program, filter or setting is ever touched.
 */
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
