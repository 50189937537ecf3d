/**
 * The parts of Cilium's agent API models that x0tta6bl4 reads, checked field by field.
 *
 * Field names follow the Swagger 2.0 definitions in cilium/cilium `api/v1/openapi.yaml`
 * (definitions Endpoint, EndpointStatus, Identity, EndpointNetworking, AddressPair,
 * EndpointIdentifiers, EndpointState, StatusResponse and Status). Only facts (names and types)
 * are taken from there; the code is ours.
 *
 * The rule: every field is optional as in the Swagger document, but a field that is present must
 * have the documented type. A response that breaks the rule is refused as a whole with an error
 * naming the endpoint and the field (`[3] (endpoint 1234) status.identity.id: expected an
 * integer, got string "x"`), so one bad refresh never half-replaces a good map.
 */
import { normalizeAddress } from "../net/address.ts";

/** One endpoint as x0tta6bl4 uses it. */
export interface EndpointInfo {
  /** The agent-local endpoint ID (`id`). */
  id: number;
  /** `status.state`, e.g. "ready", "waiting-for-identity". */
  state?: string;
  /** `status.identity`, absent while the endpoint waits for one. */
  identity?: { id: number; labels: string[] };
  /** `status.networking.addressing[].ipv4` and `.ipv6`, canonical (see address.ts). */
  addresses: string[];
  /** `k8s-pod-name`, or the name part of the older `pod-name` ("namespace/name"). */
  pod?: string;
  /** `k8s-namespace`, or the namespace part of `pod-name`. */
  namespace?: string;
}

/** `StatusResponse.cilium` of GET /v1/healthz. */
export interface AgentHealth {
  /** "Ok", "Warning", "Failure" or "Disabled". */
  state: string;
  msg?: string;
}

/** A response that does not have the shape of Cilium's model. */
export class CiliumShapeError extends Error {
  constructor(readonly path: string, readonly detail: string) {
    super(`${path}: ${detail}`);
    this.name = "CiliumShapeError";
  }
}

/** A short description of a JSON value, for error messages. */
function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "string") {
    const s = v.length > 40 ? `${v.slice(0, 40)}…` : v;
    return `string ${JSON.stringify(s)}`;
  }
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads optional fields of one object, and names the full path of any that is wrong. */
class Fields {
  constructor(readonly obj: Obj, readonly path: string) {}

  #at(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  #fail(key: string, expected: string): never {
    throw new CiliumShapeError(
      this.#at(key),
      `expected ${expected}, got ${describeValue(this.obj[key])}`,
    );
  }

  object(key: string): Fields | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) this.#fail(key, "an object");
    return new Fields(v, this.#at(key));
  }

  string(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") this.#fail(key, "a string");
    return v;
  }

  /** A non-negative integer within the safe range. */
  integer(key: string): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      this.#fail(key, "a non-negative integer");
    }
    return v;
  }

  strings(key: string): string[] | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) this.#fail(key, "an array of strings");
    v.forEach((s, i) => {
      if (typeof s !== "string") {
        throw new CiliumShapeError(
          `${this.#at(key)}[${i}]`,
          `expected a string, got ${describeValue(s)}`,
        );
      }
    });
    return v as string[];
  }

  objects(key: string): Fields[] | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) this.#fail(key, "an array of objects");
    return v.map((o, i) => {
      const p = `${this.#at(key)}[${i}]`;
      if (!isObj(o)) throw new CiliumShapeError(p, `expected an object, got ${describeValue(o)}`);
      return new Fields(o, p);
    });
  }

  /** An IP address string, returned in canonical form. */
  address(key: string): string | undefined {
    const s = this.string(key);
    if (s === undefined || s === "") return undefined;
    const a = normalizeAddress(s);
    if (a === undefined) {
      throw new CiliumShapeError(this.#at(key), `not an IP address: ${JSON.stringify(s)}`);
    }
    return a;
  }
}

/** The body of GET /v1/endpoint (an array of Endpoint), checked and reduced to EndpointInfo. */
export function parseEndpoints(body: unknown): EndpointInfo[] {
  if (!Array.isArray(body)) {
    throw new CiliumShapeError(
      "response",
      `expected a JSON array of endpoints, got ${describeValue(body)}`,
    );
  }
  return body.map((item, i) => {
    if (!isObj(item)) {
      throw new CiliumShapeError(
        `[${i}]`,
        `expected an endpoint object, got ${describeValue(item)}`,
      );
    }
    // The index and, once known, the endpoint ID lead every path in an error.
    const probe = item.id;
    const where = typeof probe === "number" ? `[${i}] (endpoint ${probe})` : `[${i}]`;
    const ep = new Fields(item, "");
    try {
      return parseEndpoint(ep);
    } catch (e) {
      if (e instanceof CiliumShapeError) {
        throw new CiliumShapeError(`${where} ${e.path}`, e.detail);
      }
      throw e;
    }
  });
}

function parseEndpoint(ep: Fields): EndpointInfo {
  const id = ep.integer("id");
  if (id === undefined) throw new CiliumShapeError("id", "missing: every endpoint has an ID");
  const status = ep.object("status");
  const info: EndpointInfo = { id, addresses: [] };
  if (!status) return info;
  const state = status.string("state");
  if (state !== undefined) info.state = state;

  const identity = status.object("identity");
  if (identity) {
    const num = identity.integer("id");
    if (num !== undefined) info.identity = { id: num, labels: identity.strings("labels") ?? [] };
  }

  const seen = new Set<string>();
  for (const pair of status.object("networking")?.objects("addressing") ?? []) {
    for (const key of ["ipv4", "ipv6"]) {
      const a = pair.address(key);
      if (a !== undefined && !seen.has(a)) {
        seen.add(a);
        info.addresses.push(a);
      }
    }
  }

  const ext = status.object("external-identifiers");
  if (ext) {
    const pod = ext.string("k8s-pod-name");
    const namespace = ext.string("k8s-namespace");
    // `pod-name` is deprecated in favour of the two above; older agents send only it.
    const legacy = ext.string("pod-name");
    const slash = legacy?.indexOf("/") ?? -1;
    if (pod) info.pod = pod;
    else if (legacy && slash > 0) info.pod = legacy.slice(slash + 1);
    else if (legacy) info.pod = legacy;
    if (namespace) info.namespace = namespace;
    else if (legacy && slash > 0) info.namespace = legacy.slice(0, slash);
  }
  return info;
}

/** `cilium` of the body of GET /v1/healthz (a StatusResponse). */
export function parseHealth(body: unknown): AgentHealth {
  if (!isObj(body)) {
    throw new CiliumShapeError(
      "response",
      `expected a StatusResponse object, got ${describeValue(body)}`,
    );
  }
  const cilium = new Fields(body, "").object("cilium");
  const state = cilium?.string("state");
  if (!cilium || state === undefined) {
    throw new CiliumShapeError("cilium.state", "missing: the agent did not report its own state");
  }
  const msg = cilium.string("msg");
  return msg ? { state, msg } : { state };
}
