/**
 * The Cilium API client and identity map against recorded Cilium agent API responses
 * (tests/testdata/cilium, reconstructed from the Swagger model, not captured) served by a fake
 * agent on a UNIX socket in a temp directory. No live Cilium agent can run here, so these tests
 * show the HTTP-over-UNIX-socket path, the parsing and the failure handling, not compatibility
 * with a particular agent version.
 */
import assert from "node:assert/strict";
import {
  ciliumHealth,
  CiliumIdentities,
  type CiliumIdentitiesOptions,
  detectCilium,
  enrichFlow,
} from "../../src/cilium/cilium.ts";
import { formatAddress } from "../../src/net/address.ts";
import { FakeAgent, GOOD, json, recorded, type Route, withAgent } from "../helpers/cilium_agent.ts";

function identities(agent: FakeAgent, o: CiliumIdentitiesOptions = {}) {
  return new CiliumIdentities({ socketPath: agent.socket, timeoutMs: 2000, ...o });
}

const FRONTEND = {
  identity: 48861,
  labels: [
    "k8s:app=frontend",
    "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop",
    "k8s:io.cilium.k8s.policy.cluster=default",
    "k8s:io.cilium.k8s.policy.serviceaccount=frontend",
    "k8s:io.kubernetes.pod.namespace=shop",
  ],
  endpointId: 1843,
  pod: "frontend-7d9c5b6f4-x2v8k",
  namespace: "shop",
};
const COREDNS = {
  identity: 18965,
  labels: [
    "k8s:io.cilium.k8s.policy.cluster=default",
    "k8s:io.cilium.k8s.policy.serviceaccount=coredns",
    "k8s:io.kubernetes.pod.namespace=kube-system",
    "k8s:k8s-app=kube-dns",
  ],
  endpointId: 96,
  pod: "coredns-5d78c9869d-4xkqp",
  namespace: "kube-system",
};

/** The address as the appliance's decoder formats it from kernel bytes. */
function asFlowAddress(text: string): string {
  const groups = text === "fd00:10:244:1::c8"
    ? [0xfd00, 0x10, 0x244, 0x1, 0, 0, 0, 0xc8]
    : [0xfd00, 0x10, 0x244, 0x1, 0, 0, 0, 0x1f];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => [bytes[2 * i], bytes[2 * i + 1]] = [g >> 8, g & 255]);
  return formatAddress(bytes, 6);
}

/** A socket file that nobody accepts on: a child binds it and dies without cleaning up. */
async function staleSocket(path: string) {
  const code = `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} });` +
    `Deno.kill(Deno.pid, "SIGKILL");`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(out.signal, "SIGKILL");
  assert.ok(Deno.statSync(path).isSocket, "the dead child left its socket file behind");
}

Deno.test("cilium (recorded API responses on a UNIX socket): IPv4 and IPv6 resolve to identity, labels, pod", async () => {
  await withAgent(async (agent) => {
    const ids = identities(agent);
    assert.equal(ids.status.state, "absent");
    assert.equal(ids.lookup("10.0.1.200"), undefined);
    await ids.refresh();

    assert.deepEqual(agent.requests, ["GET /v1/endpoint", "GET /v1/healthz"]);
    assert.deepEqual(agent.hosts, ["localhost", "localhost"]);
    const s = ids.status;
    assert.equal(s.state, "ok", s.reason);
    assert.equal(s.endpoints, 5);
    // health 2, frontend 2, coredns 2; the host has no address, one pod has no identity yet.
    assert.equal(s.addresses, 6);
    assert.equal(ids.size, 6);
    assert.deepEqual(s.agent, { state: "Ok" });
    assert.equal(
      s.reason,
      "5 endpoints, 6 addresses with an identity (1 without an identity yet); agent Ok",
    );
    assert.equal(typeof s.refreshedAt, "number");
    assert.equal(s.error, undefined);

    assert.deepEqual(ids.lookup("10.0.1.200"), FRONTEND);
    assert.deepEqual(ids.lookup("fd00:10:244:1::c8"), FRONTEND);
    assert.deepEqual(ids.lookup("FD00:0010:0244:0001:0000:0000:0000:00C8"), FRONTEND);
    assert.deepEqual(ids.lookup("::ffff:10.0.1.200"), FRONTEND);
    assert.deepEqual(ids.lookup(asFlowAddress("fd00:10:244:1::c8")), FRONTEND);
    assert.deepEqual(ids.lookup("10.0.1.31"), COREDNS);
    assert.deepEqual(ids.lookup(asFlowAddress("fd00:10:244:1::1f")), COREDNS);
    assert.deepEqual(ids.lookup("10.0.1.87"), {
      identity: 4,
      labels: ["reserved:health"],
      endpointId: 2105,
    });

    // Unknown addresses, a pod still waiting for its identity, and non-addresses give nothing.
    for (const a of ["10.0.1.99", "fd00:10:244:1::99", "10.0.1.77", "fd00:10:244:1::4d", "", "x"]) {
      assert.equal(ids.lookup(a), undefined, a);
    }

    // The `cilium` field of flows, as the API would merge it.
    const flows = [
      { saddr: "10.0.1.200", daddr: "10.0.1.31", dport: 53 },
      { saddr: asFlowAddress("fd00:10:244:1::c8"), daddr: "2606:4700::1111", dport: 443 },
      { saddr: "192.0.2.10", daddr: "198.51.100.7", dport: 80 },
    ];
    const out = JSON.parse(
      JSON.stringify(flows.map((f) => ({ ...f, cilium: enrichFlow(f, ids) }))),
    );
    assert.deepEqual(out[0].cilium, { src: FRONTEND, dst: COREDNS });
    assert.deepEqual(out[1].cilium, { src: FRONTEND });
    assert.equal("cilium" in out[2], false);

    // Entries are frozen: a caller cannot change the map by editing what it got.
    assert.throws(() => (ids.lookup("10.0.1.200")!.labels as string[]).push("k8s:evil=1"));
  });
});

Deno.test("cilium (recorded API responses on a UNIX socket): a chunked body and split addressing parse the same", async () => {
  const body = new TextEncoder().encode(recorded("endpoints.json"));
  await withAgent(async (agent) => {
    agent.routes["/v1/endpoint"] = () => {
      // No length known up front: the server sends Transfer-Encoding: chunked, in 100-byte pieces
      // with pauses between them.
      let at = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (at >= body.length) return c.close();
          await new Promise((r) => setTimeout(r, 1));
          c.enqueue(body.slice(at, at + 100));
          at += 100;
        },
      });
      return new Response(stream, { headers: { "content-type": "application/json" } });
    };
    const ids = identities(agent, { checkHealth: false });
    await ids.refresh();
    assert.equal(ids.status.state, "ok", ids.status.reason);
    assert.equal(ids.status.addresses, 6);
    assert.equal(ids.status.agent, undefined);
    assert.deepEqual(agent.requests, ["GET /v1/endpoint"]);
    assert.deepEqual(ids.lookup("fd00:10:244:1::1f"), COREDNS);
  });
});

/** A good refresh, then `bad` served; the state and the kept map are checked by `check`. */
async function afterGood(
  bad: Route,
  check: (ids: CiliumIdentities) => void,
  o: CiliumIdentitiesOptions = {},
) {
  await withAgent(async (agent) => {
    const ids = identities(agent, o);
    await ids.refresh();
    assert.equal(ids.status.state, "ok");
    const goodAt = ids.status.refreshedAt;
    agent.routes["/v1/endpoint"] = bad;
    await ids.refresh();
    check(ids);
    // The previous good map stays, and says how old it is.
    assert.equal(ids.status.refreshedAt, goodAt);
    assert.equal(ids.status.addresses, 6);
    assert.match(ids.status.reason, /; keeping 6 addresses from \d+ s ago$/);
    assert.deepEqual(ids.lookup("10.0.1.200"), FRONTEND);
    assert.equal(ids.status.checkedAt! >= goodAt!, true);
  });
}

Deno.test("cilium (recorded API responses on a UNIX socket): malformed JSON is a clear error, the good map stays", async () => {
  const truncated = recorded("endpoints.json").slice(0, 300);
  await afterGood(() => json(truncated), (ids) => {
    assert.equal(ids.status.state, "error");
    assert.equal(ids.status.error, "malformed");
    assert.match(
      ids.status.reason,
      /^Cilium API GET \/v1\/endpoint: not JSON \(.+ in JSON at position 300.*\); the body begins: \[ \{ "id": 377, "spec": \{ "label-configuratio…;/,
    );
  });
  await afterGood(() => json(""), (ids) => {
    assert.equal(ids.status.error, "malformed");
    assert.match(
      ids.status.reason,
      /^Cilium API GET \/v1\/endpoint: not JSON \(.+\); the body is empty;/,
    );
  });
  await afterGood(() => new Response(new Uint8Array([0x5b, 0xff, 0xfe, 0x5d])), (ids) => {
    assert.equal(ids.status.error, "malformed");
    assert.match(ids.status.reason, /^Cilium API GET \/v1\/endpoint: the body is not valid UTF-8;/);
  });
});

Deno.test("cilium (recorded API responses on a UNIX socket): wrong shapes name the field, the good map stays", async () => {
  const cases: [string, RegExp][] = [
    [
      "endpoints_not_array.json",
      /^Cilium API GET \/v1\/endpoint: unexpected shape: response: expected a JSON array of endpoints, got an object;/,
    ],
    [
      "endpoints_bad_identity.json",
      /^Cilium API GET \/v1\/endpoint: unexpected shape: \[0\] \(endpoint 1843\) status\.identity\.id: expected a non-negative integer, got string "48861";/,
    ],
    [
      "endpoints_bad_address.json",
      /^Cilium API GET \/v1\/endpoint: unexpected shape: \[1\] \(endpoint 96\) status\.networking\.addressing\[0\]\.ipv4: not an IP address: "10\.0\.1\.300";/,
    ],
  ];
  for (const [file, message] of cases) {
    await afterGood(() => json(recorded(file)), (ids) => {
      assert.equal(ids.status.state, "error", file);
      assert.equal(ids.status.error, "malformed", file);
      assert.match(ids.status.reason, message);
    });
  }
});

Deno.test("cilium (recorded API responses on a UNIX socket): HTTP 500 is a clear error, the good map stays", async () => {
  // Cilium's Error model is a JSON string.
  const body = JSON.stringify("endpoint list failed: context deadline exceeded");
  await afterGood(() => json(body, 500), (ids) => {
    assert.equal(ids.status.state, "error");
    assert.equal(ids.status.error, "http");
    assert.match(
      ids.status.reason,
      /^Cilium API GET \/v1\/endpoint: HTTP 500 Internal Server Error: "endpoint list failed: context deadline exceeded";/,
    );
  });
});

Deno.test("cilium (recorded API responses on a UNIX socket): a slow agent times out with a clear error, the good map stays", async () => {
  for (const kind of ["no headers", "body stalls"]) {
    let started = 0;
    await withAgent(async (agent) => {
      const ids = identities(agent, { timeoutMs: 300 });
      await ids.refresh();
      assert.equal(ids.status.state, "ok");
      agent.routes["/v1/endpoint"] = async () => {
        if (kind === "no headers") {
          await agent.stall();
          return json("[]");
        }
        // Headers and a first piece go out, then nothing until the test ends.
        const stream = new ReadableStream<Uint8Array>({
          start: (c) => c.enqueue(new TextEncoder().encode("[")),
          pull: async (c) => {
            await agent.stall();
            c.close();
          },
        });
        return new Response(stream, { headers: { "content-type": "application/json" } });
      };
      started = performance.now();
      await ids.refresh();
      const took = performance.now() - started;
      assert.equal(ids.status.state, "error", kind);
      assert.equal(ids.status.error, "timeout", kind);
      assert.match(
        ids.status.reason,
        new RegExp(
          `^Cilium API GET /v1/endpoint: no complete answer within 300 ms on ${agent.socket}; keeping 6 addresses`,
        ),
      );
      assert.ok(took >= 250 && took < 1500, `${kind}: gave up after ${took} ms`);
      assert.deepEqual(ids.lookup("10.0.1.31"), COREDNS);
    });
  }
});

Deno.test("cilium (recorded API responses on a UNIX socket): the agent going away and a dead socket keep the good map", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0tta6bl4-cilium-" });
  const socket = `${dir}/cilium.sock`;
  try {
    const ids = new CiliumIdentities({ socketPath: socket });
    // Never any socket: absent, nothing known, and that is healthy.
    await ids.refresh();
    assert.equal(ids.status.state, "absent");
    assert.equal(ids.status.error, "absent");
    assert.equal(
      ids.status.reason,
      `Cilium API GET /v1/endpoint: no socket at ${socket} (no Cilium agent?); no identities known`,
    );
    assert.equal(ids.status.refreshedAt, undefined);
    const nothing = detectCilium({ socketPath: socket, bpffsRoot: `${dir}/bpffs` });
    assert.equal(ciliumHealth(nothing, ids.status).state, "healthy");

    const agent = new FakeAgent(socket, { ...GOOD });
    try {
      await ids.refresh();
      assert.equal(ids.status.state, "ok");
      const found = detectCilium({ socketPath: socket, bpffsRoot: `${dir}/bpffs` });
      assert.equal(found.socket, socket);
      assert.equal(ciliumHealth(found, ids.status).state, "healthy");
    } finally {
      await agent.close();
    }

    // The server removed its socket on the way out: absent, but the map is kept for a while.
    await ids.refresh();
    assert.equal(ids.status.state, "absent");
    assert.match(ids.status.reason, /no socket at .*; keeping 6 addresses from \d+ s ago$/);
    assert.deepEqual(ids.lookup("10.0.1.200"), FRONTEND);
    assert.equal(
      ciliumHealth({ found: false, summary: "no Cilium agent on this box" }, ids.status).state,
      "degraded",
    );

    // A socket file left by an agent that died: nobody listening.
    await staleSocket(socket);
    await ids.refresh();
    assert.equal(ids.status.state, "error");
    assert.equal(ids.status.error, "refused");
    assert.match(
      ids.status.reason,
      new RegExp(
        `^Cilium API GET /v1/endpoint: nobody is listening on ${socket} \\(the agent is stopped or restarting\\); keeping 6 addresses`,
      ),
    );
    assert.deepEqual(ids.lookup("fd00:10:244:1::c8"), FRONTEND);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("cilium (recorded API responses on a UNIX socket): a map older than keepForMs is dropped, not shown as current", async () => {
  let now = 1_000_000;
  await withAgent(async (agent) => {
    const ids = identities(agent, { keepForMs: 60_000, now: () => now });
    await ids.refresh();
    assert.equal(ids.status.refreshedAt, 1_000_000);
    agent.routes["/v1/endpoint"] = () => json("oops", 503);
    now += 59_000;
    await ids.refresh();
    assert.match(
      ids.status.reason,
      /HTTP 503 Service Unavailable: oops; keeping 6 addresses from 59 s ago$/,
    );
    assert.equal(ids.lookup("10.0.1.200")?.pod, "frontend-7d9c5b6f4-x2v8k");
    now += 2_000;
    await ids.refresh();
    assert.equal(ids.status.state, "error");
    assert.match(ids.status.reason, /; the map from 61 s ago is dropped$/);
    assert.equal(ids.status.addresses, 0);
    assert.equal(ids.status.endpoints, 0);
    assert.equal(ids.status.refreshedAt, undefined);
    assert.equal(ids.lookup("10.0.1.200"), undefined);
    // The agent recovers: a fresh map.
    agent.routes["/v1/endpoint"] = GOOD["/v1/endpoint"];
    await ids.refresh();
    assert.equal(ids.status.state, "ok");
    assert.deepEqual(ids.lookup("10.0.1.200"), FRONTEND);
  });
});

Deno.test("cilium (recorded API responses on a UNIX socket): /v1/healthz reports the agent's state and never blocks the map", async () => {
  await withAgent(async (agent) => {
    agent.routes["/v1/healthz"] = () => json(recorded("healthz_failure.json"));
    const ids = identities(agent);
    await ids.refresh();
    assert.equal(ids.status.state, "ok");
    assert.deepEqual(ids.status.agent, {
      state: "Failure",
      msg: "Kubernetes service is not ready",
    });
    assert.match(ids.status.reason, /; agent Failure: Kubernetes service is not ready$/);

    delete agent.routes["/v1/healthz"];
    await ids.refresh();
    assert.equal(ids.status.state, "ok");
    assert.equal(ids.status.agent, undefined);
    assert.match(
      ids.status.reason,
      /; \/v1\/healthz failed: Cilium API GET \/v1\/healthz: HTTP 404 Not Found: 404 page not found$/,
    );
    assert.equal(ids.status.addresses, 6);
  });
});

Deno.test("cilium (recorded API responses on a UNIX socket): an address claimed by two endpoints goes to the lower endpoint ID", async () => {
  const eps = JSON.parse(recorded("endpoints.json")) as {
    id: number;
    status: { networking: { addressing: { ipv4?: string }[] } };
  }[];
  // The waiting pod has no identity; give coredns's IPv4 address to the frontend as well.
  const frontend = structuredClone(eps[2]);
  frontend.status.networking.addressing.push({ ipv4: "10.0.1.31" });
  for (const order of [[frontend, eps[3]], [eps[3], frontend]]) {
    await withAgent(async (agent) => {
      agent.routes["/v1/endpoint"] = () => json(JSON.stringify(order));
      const ids = identities(agent, { checkHealth: false });
      await ids.refresh();
      assert.equal(ids.status.state, "ok");
      assert.equal(
        ids.status.reason,
        "2 endpoints, 4 addresses with an identity (1 address claimed twice)",
      );
      assert.equal(ids.lookup("10.0.1.31")?.endpointId, 96);
      assert.equal(ids.lookup("10.0.1.200")?.endpointId, 1843);
    });
  }
});

Deno.test("cilium (recorded API responses on a UNIX socket): an oversized body is refused", async () => {
  await afterGood(() => json(recorded("endpoints.json") + " ".repeat(100_000)), (ids) => {
    assert.equal(ids.status.error, "malformed");
    assert.match(
      ids.status.reason,
      /^Cilium API GET \/v1\/endpoint: the body exceeds 65536 bytes; refused;/,
    );
  }, { maxBodyBytes: 65536 });
});

Deno.test("cilium (recorded API responses on a UNIX socket): concurrent refreshes share one request; start/stop runs the loop", async () => {
  await withAgent(async (agent) => {
    const ids = identities(agent, { checkHealth: false });
    await Promise.all([ids.refresh(), ids.refresh(), ids.refresh()]);
    assert.equal(agent.count("/v1/endpoint"), 1);

    const seen: string[] = [];
    const twice = Promise.withResolvers<void>();
    ids.start(30, (s) => {
      seen.push(s.state);
      if (seen.length === 2) twice.resolve();
      throw new Error("a listener that throws does not stop the loop");
    });
    ids.start(30); // a second start is ignored
    await twice.promise;
    await ids.stop();
    const after = agent.count("/v1/endpoint");
    assert.ok(after >= 3, `${after} requests`);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(agent.count("/v1/endpoint"), after, "no request after stop()");
    assert.deepEqual(seen.slice(0, 2), ["ok", "ok"]);
  });
});
