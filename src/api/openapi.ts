/** The OpenAPI 3.1 document of the HTTP API; tests/api checks it lists every route. */
import { VERSION } from "../version.ts";

const problem = {
  description: "An error (RFC 9457 problem details)",
  content: {
    "application/problem+json": {
      schema: {
        type: "object",
        required: ["title", "status"],
        properties: {
          type: { type: "string" },
          title: { type: "string" },
          status: { type: "integer" },
          detail: { type: "string" },
          errno: { type: "string", description: "kernel errno name, for kernel failures" },
          hint: { type: "string", description: "how to fix it" },
        },
      },
    },
  },
};

const json = (description: string) => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});

const bearer = [{ bearer: [] }];

export const OPENAPI = {
  openapi: "3.1.0",
  info: {
    title: "x0tta6bl4 appliance API",
    version: VERSION,
    description: "eBPF traffic monitoring: health, interfaces, flows, live events, metrics. " +
      "Mutating calls need the API token; with api.auth all, every route but /livez, /readyz " +
      "and the status page's files needs a token, the API token or the read-only one " +
      "(api.read_token_file), which a mutating call refuses with 403. While the API listens on " +
      "loopback, a request whose Host is not localhost, a loopback address or a name of " +
      "api.allowed_hosts gets 403 (DNS rebinding).",
  },
  components: {
    securitySchemes: {
      bearer: {
        type: "http",
        scheme: "bearer",
        description: "the token in the appliance's token file (mode 0600), or for reads the " +
          "read-only token of api.read_token_file",
      },
    },
  },
  paths: {
    "/": {
      get: {
        summary: "The built-in status page (its script and style under /ui/)",
        responses: { "200": { description: "text/html", content: { "text/html": {} } } },
      },
    },
    "/livez": {
      get: {
        summary: "The process is alive",
        responses: { "200": { description: "alive" } },
      },
    },
    "/readyz": {
      get: {
        summary: "Serving fresh data (eBPF or fallback)",
        responses: { "200": { description: "ready" }, "503": { description: "not ready" } },
      },
    },
    "/metrics": {
      get: {
        summary: "Prometheus metrics (text exposition format 0.0.4)",
        responses: { "200": { description: "metrics" } },
      },
    },
    "/api/v1/openapi.json": {
      get: { summary: "This document", responses: { "200": json("OpenAPI document") } },
    },
    "/api/v1/health": {
      get: {
        summary: "Per-component health with reason and since-when",
        responses: { "200": json("overall status, mode and components") },
      },
    },
    "/api/v1/interfaces": {
      get: {
        summary: "Watched interfaces: counters by direction and protocol, rates",
        responses: { "200": json("interfaces") },
      },
      post: {
        summary: "Attach to an interface and keep watching it",
        security: bearer,
        requestBody: {
          required: true,
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["name"],
                additionalProperties: false,
                properties: { name: { type: "string", pattern: "^[^\\s/]{1,15}$" } },
              },
            },
          },
        },
        responses: {
          "201": json("attached"),
          "400": problem,
          "401": problem,
          "404": problem,
          "409": problem,
          "413": problem,
          "422": problem,
        },
      },
    },
    "/api/v1/interfaces/{name}": {
      delete: {
        summary: "Detach from an interface and stop watching it",
        security: bearer,
        parameters: [{ name: "name", in: "path", required: true, schema: { type: "string" } }],
        responses: { "204": { description: "detached" }, "401": problem, "404": problem },
      },
    },
    "/api/v1/flows": {
      get: {
        summary: "Top flows, with their kernel signals (drops, retransmits, srttUs) and, when " +
          "a Cilium agent answers on the box, cilium: { src?, dst? } endpoint identities " +
          "({ identity, labels, endpointId, pod?, namespace? })",
        parameters: [
          { name: "sort", in: "query", schema: { enum: ["bytes", "packets", "recent"] } },
          { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 10000 } },
          { name: "interface", in: "query", schema: { type: "string" } },
          {
            name: "protocol",
            in: "query",
            schema: { type: "string", description: "tcp, udp, icmp, icmpv6 or 0-255" },
          },
          { name: "address", in: "query", schema: { type: "string" } },
          { name: "port", in: "query", schema: { type: "integer", minimum: 0, maximum: 65535 } },
        ],
        responses: { "200": json("flows"), "400": problem },
      },
    },
    "/api/v1/events": {
      get: {
        summary: "Live events (Server-Sent Events); resume with Last-Event-ID (0: all kept; an " +
          "id this run never issued starts afresh with a `reset` event); a slow client gets " +
          "`gap` events with the number it lost, and is cut a whole queue behind",
        parameters: [
          { name: "Last-Event-ID", in: "header", schema: { type: "integer", minimum: 0 } },
          { name: "last_event_id", in: "query", schema: { type: "integer", minimum: 0 } },
          {
            name: "access_token",
            in: "query",
            description: "the token, for EventSource clients that cannot send a header",
            schema: { type: "string" },
          },
        ],
        responses: {
          "200": { description: "text/event-stream", content: { "text/event-stream": {} } },
          "400": problem,
          "503": problem,
        },
      },
    },
    "/api/v1/mesh/status": {
      get: {
        summary: "This node in the mesh: id, peer counts by state, datagrams, drops by reason",
        responses: { "200": json("mesh status"), "404": problem },
      },
    },
    "/api/v1/mesh/peers": {
      get: {
        summary: "Every known peer: state and since-when, RTT (last, EWMA, histogram), jitter, " +
          "loss, probes, probe bytes and datapath bytes",
        responses: { "200": json("peers"), "404": problem },
      },
    },
    "/api/v1/mesh/sd": {
      get: {
        summary: "Prometheus HTTP service discovery: every mesh member's metrics address",
        responses: { "200": json("target groups"), "404": problem },
      },
    },
    "/api/v1/mapek": {
      get: {
        summary: "The MAPE-K loop: mode, TTL, cap, policies, live action counts, the last " +
          "interval's symptoms with evidence, the allow-list and the learned baselines",
        responses: { "200": json("loop status"), "404": problem },
      },
    },
    "/api/v1/mapek/decisions": {
      get: {
        summary: "The latest decisions, newest first: symptom and evidence, policy, outcome " +
          "(executed, observed, reported, skipped, failed) and why",
        parameters: [{ name: "limit", in: "query", schema: { type: "integer", maximum: 5000 } }],
        responses: { "200": json("decisions"), "400": problem, "404": problem },
      },
    },
    "/api/v1/mapek/actions": {
      get: {
        summary: "Live actions (in force, or planned in observe mode); with all=1 also those " +
          "that expired, were revoked or failed",
        parameters: [{ name: "all", in: "query", schema: { type: "string", enum: ["0", "1"] } }],
        responses: { "200": json("actions"), "400": problem, "404": problem },
      },
    },
    "/api/v1/mapek/actions/{id}": {
      delete: {
        summary: "Revoke a live action now (a block or rate limit leaves the datapath)",
        security: bearer,
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
        responses: { "200": json("the revoked action"), "401": problem, "404": problem },
      },
    },
    "/api/v1/datapath/retry": {
      post: {
        summary: "Try eBPF again after the cause of the fallback was fixed",
        security: bearer,
        responses: {
          "200": json("eBPF runs"),
          "401": problem,
          "503": json("still in fallback, with the reason"),
        },
      },
    },
  },
} as const;
