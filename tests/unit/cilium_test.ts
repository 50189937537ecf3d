/**
 * Cilium support, the pure parts: address normalisation, the endpoint model parser (against the
 * recorded, reconstructed responses in tests/testdata/cilium), flow enrichment, the health
 * entry, and detection in a temporary directory standing in for /var/run/cilium and bpffs.
 */
import assert from "node:assert/strict";
import {
  ciliumHealth,
  CiliumShapeError,
  type CiliumStatus,
  detectCilium,
  enrichFlow,
  parseEndpoints,
  parseHealth,
} from "../../src/cilium/cilium.ts";
import { formatAddress, normalizeAddress } from "../../src/net/address.ts";

const DATA = new URL("../testdata/cilium/", import.meta.url);
const recorded = (name: string): unknown => JSON.parse(Deno.readTextFileSync(new URL(name, DATA)));

Deno.test("cilium address: the usual spellings of one address become one string", () => {
  const cases: [string, string | undefined][] = [
    ["10.0.1.200", "10.0.1.200"],
    [" 10.0.1.200 ", "10.0.1.200"],
    ["0.0.0.0", "0.0.0.0"],
    ["10.0.1.300", undefined],
    ["10.0.01.2", undefined],
    ["10.0.1", undefined],
    ["fd00:10:244:1::c8", "fd00:10:244:1::c8"],
    ["FD00:0010:0244:0001:0000:0000:0000:00C8", "fd00:10:244:1::c8"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["fe80::1%eth0", "fe80::1"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
    ["::ffff:10.0.1.200", "10.0.1.200"],
    ["::ffff:a00:1c8", "10.0.1.200"],
    ["1:2:3:4:5:6:7:8:9", undefined],
    ["1::2::3", undefined],
    ["1:2:3:4:5:6:7::8", undefined],
    ["12345::", undefined],
    [":::", undefined],
    ["g::1", undefined],
    ["", undefined],
  ];
  for (const [input, want] of cases) assert.equal(normalizeAddress(input), want, input);
});

Deno.test("cilium address: IPv6 matches the appliance's formatAddress and the URL standard's form", () => {
  // Random addresses with long and short zero runs, so compression is exercised everywhere.
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  for (let n = 0; n < 2000; n++) {
    const bytes = new Uint8Array(16);
    for (let g = 0; g < 8; g++) {
      if (rand() < 0.5) continue;
      bytes[2 * g] = rand() < 0.5 ? 0 : Math.floor(rand() * 256);
      bytes[2 * g + 1] = Math.floor(rand() * 256);
    }
    const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff &&
      bytes[11] === 0xff;
    if (mapped) continue;
    const ours = formatAddress(bytes, 6);
    const whatwg = new URL(`http://[${ours}]/`).hostname.slice(1, -1);
    assert.equal(normalizeAddress(ours), ours);
    assert.equal(whatwg, ours);
    // Fully written out, upper case: still the same key.
    const long = Array.from(
      { length: 8 },
      (_, g) => ((bytes[2 * g] << 8) | bytes[2 * g + 1]).toString(16).padStart(4, "0"),
    ).join(":").toUpperCase();
    assert.equal(normalizeAddress(long), ours, long);
  }
  const v4 = new Uint8Array([10, 0, 1, 200, ...new Array(12).fill(0)]);
  assert.equal(normalizeAddress(formatAddress(v4, 4)), "10.0.1.200");
});

Deno.test("cilium model: the recorded GET /v1/endpoint body gives IDs, identities, addresses, pods", () => {
  const eps = parseEndpoints(recorded("endpoints.json"));
  assert.deepEqual(eps.map((e) => e.id), [377, 2105, 1843, 96, 3001]);
  const [host, health, frontend, coredns, waiting] = eps;
  assert.deepEqual(host, {
    id: 377,
    state: "ready",
    identity: { id: 1, labels: ["reserved:host"] },
    addresses: [],
  });
  assert.deepEqual(health.addresses, ["10.0.1.87", "fd00:10:244:1::5a2c"]);
  assert.equal(health.identity?.id, 4);
  assert.deepEqual(frontend, {
    id: 1843,
    state: "ready",
    identity: {
      id: 48861,
      labels: [
        "k8s:app=frontend",
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=frontend",
        "k8s:io.kubernetes.pod.namespace=shop",
      ],
    },
    addresses: ["10.0.1.200", "fd00:10:244:1::c8"],
    pod: "frontend-7d9c5b6f4-x2v8k",
    namespace: "shop",
  });
  // Only the deprecated "pod-name" (namespace/name), and two addressing entries.
  assert.equal(coredns.pod, "coredns-5d78c9869d-4xkqp");
  assert.equal(coredns.namespace, "kube-system");
  assert.deepEqual(coredns.addresses, ["10.0.1.31", "fd00:10:244:1::1f"]);
  assert.equal(waiting.state, "waiting-for-identity");
  assert.equal(waiting.identity, undefined);
  assert.deepEqual(waiting.addresses, ["10.0.1.77", "fd00:10:244:1::4d"]);
});

Deno.test("cilium model: wrong shapes are refused with the endpoint and field named", () => {
  const refused = (body: unknown, message: RegExp) =>
    assert.throws(() => parseEndpoints(body), (e: unknown) => {
      assert.ok(e instanceof CiliumShapeError);
      assert.match(e.message, message);
      return true;
    });
  refused(
    recorded("endpoints_not_array.json"),
    /^response: expected a JSON array of endpoints, got an object$/,
  );
  refused(
    recorded("endpoints_bad_identity.json"),
    /^\[0\] \(endpoint 1843\) status\.identity\.id: expected a non-negative integer, got string "48861"$/,
  );
  refused(
    recorded("endpoints_bad_address.json"),
    /^\[1\] \(endpoint 96\) status\.networking\.addressing\[0\]\.ipv4: not an IP address: "10\.0\.1\.300"$/,
  );
  refused(null, /^response: expected a JSON array of endpoints, got null$/);
  refused([42], /^\[0\]: expected an endpoint object, got number 42$/);
  refused([{ status: {} }], /^\[0\] id: missing/);
  refused(
    [{ id: -1 }],
    /^\[0\] \(endpoint -1\) id: expected a non-negative integer, got number -1$/,
  );
  refused(
    [{ id: 5, status: { identity: { id: 9, labels: ["a", 7] } } }],
    /^\[0\] \(endpoint 5\) status\.identity\.labels\[1\]: expected a string, got number 7$/,
  );
  refused(
    [{ id: 5, status: { networking: { addressing: { ipv4: "10.0.0.1" } } } }],
    /status\.networking\.addressing: expected an array of objects, got an object$/,
  );
  refused(
    [{ id: 5, status: { "external-identifiers": { "k8s-pod-name": ["x"] } } }],
    /status\.external-identifiers\.k8s-pod-name: expected a string, got an array of 1$/,
  );
  // Absent fields are fine: the model makes every one optional except the ID here.
  assert.deepEqual(parseEndpoints([{ id: 5 }, { id: 6, status: { identity: null } }]), [
    { id: 5, addresses: [] },
    { id: 6, addresses: [] },
  ]);
});

Deno.test("cilium model: the recorded GET /v1/healthz bodies give the agent's own state", () => {
  assert.deepEqual(parseHealth(recorded("healthz.json")), { state: "Ok" });
  assert.deepEqual(parseHealth(recorded("healthz_failure.json")), {
    state: "Failure",
    msg: "Kubernetes service is not ready",
  });
  assert.throws(() => parseHealth([]), /response: expected a StatusResponse object, got an array/);
  assert.throws(() => parseHealth({ kubernetes: {} }), /cilium\.state: missing/);
  assert.throws(() => parseHealth({ cilium: { state: 1 } }), /cilium\.state: expected a string/);
});

Deno.test("cilium enrichFlow: each known side gets its identity; no known side gives nothing", () => {
  const a = { identity: 48861, labels: ["k8s:app=frontend"], endpointId: 1843, pod: "f" };
  const b = { identity: 18965, labels: ["k8s:k8s-app=kube-dns"], endpointId: 96 };
  const table = new Map([["10.0.1.200", a], ["fd00:10:244:1::1f", b]]);
  const ids = { lookup: (x: string) => table.get(x) };
  assert.deepEqual(enrichFlow({ saddr: "10.0.1.200", daddr: "1.1.1.1" }, ids), { src: a });
  assert.deepEqual(enrichFlow({ saddr: "2001:db8::9", daddr: "fd00:10:244:1::1f" }, ids), {
    dst: b,
  });
  assert.deepEqual(enrichFlow({ saddr: "10.0.1.200", daddr: "fd00:10:244:1::1f" }, ids), {
    src: a,
    dst: b,
  });
  const none = enrichFlow({ saddr: "192.0.2.1", daddr: "192.0.2.2" }, ids);
  assert.equal(none, undefined);
  const flow = { saddr: "192.0.2.1", daddr: "192.0.2.2", bytes: 1 };
  assert.equal(JSON.stringify({ ...flow, cilium: none }), JSON.stringify(flow));
});

Deno.test("cilium health entry: absent is healthy, failing is degraded, ok lists the counts", () => {
  const found = { found: true, summary: "Cilium agent found: API socket /s" };
  const absent = { found: false, summary: "no Cilium agent on this box" };
  const st = (over: Partial<CiliumStatus>): CiliumStatus => ({
    state: "ok",
    reason: "5 endpoints, 6 addresses with an identity",
    endpoints: 5,
    addresses: 6,
    ...over,
  });
  assert.deepEqual(ciliumHealth(absent, st({ state: "absent", addresses: 0, endpoints: 0 })), {
    state: "healthy",
    reason: "no Cilium agent on this box",
  });
  assert.deepEqual(ciliumHealth(found, st({})), {
    state: "healthy",
    reason:
      "Cilium agent found: API socket /s; identities: 5 endpoints, 6 addresses with an identity",
  });
  const bad = ciliumHealth(found, st({ state: "error", reason: "Cilium API GET /v1/endpoint: x" }));
  assert.equal(bad.state, "degraded");
  assert.match(bad.reason, /identities: Cilium API GET \/v1\/endpoint: x$/);
  // A socket that vanished while a map is still held is worth a look.
  assert.equal(ciliumHealth(found, st({ state: "absent" })).state, "degraded");
});

Deno.test("cilium detect: finds a socket and fake pins in a temp dir, absent otherwise", () => {
  const dir = Deno.makeTempDirSync({ prefix: "x0tta6bl4-cilium-" });
  let listener: Deno.Listener | undefined;
  try {
    const socket = `${dir}/run/cilium.sock`;
    const root = `${dir}/bpffs`;
    Deno.mkdirSync(`${dir}/run`);

    const none = detectCilium({ socketPath: socket, bpffsRoot: root });
    assert.deepEqual(none, {
      found: false,
      pins: [],
      pinCount: 0,
      summary:
        `no Cilium agent on this box (no socket at ${socket}, no cilium_* pins in ${root}/tc/globals)`,
    });

    // Plain files stand in for pinned maps; one that is not Cilium's is not listed.
    Deno.mkdirSync(`${root}/tc/globals`, { recursive: true });
    const names = ["cilium_lxc", "cilium_ipcache", "cilium_ct4_global", "cilium_call_policy"];
    for (const n of [...names, "x0tta6bl4_flows"]) {
      Deno.writeFileSync(`${root}/tc/globals/${n}`, new Uint8Array());
    }
    const pinsOnly = detectCilium({ socketPath: socket, bpffsRoot: root });
    assert.equal(pinsOnly.found, true);
    assert.equal(pinsOnly.socket, undefined);
    assert.deepEqual(pinsOnly.pins, [...names].sort());
    assert.equal(pinsOnly.pinCount, 4);
    assert.match(
      pinsOnly.summary,
      /^Cilium agent found: 4 cilium_\* maps pinned in .*\/tc\/globals \(cilium_call_policy, cilium_ct4_global, cilium_ipcache, cilium_lxc\); no API socket at .*, so flows are not enriched$/,
    );

    listener = Deno.listen({ transport: "unix", path: socket });
    const both = detectCilium({ socketPath: socket, bpffsRoot: `${root}/`, maxPins: 2 });
    assert.equal(both.found, true);
    assert.equal(both.socket, socket);
    assert.deepEqual(both.pins, ["cilium_call_policy", "cilium_ct4_global"]);
    assert.equal(both.pinCount, 4);
    assert.equal(
      both.summary,
      `Cilium agent found: API socket ${socket}; 4 cilium_* maps pinned in ${root}/tc/globals (cilium_call_policy, cilium_ct4_global, +2 more)`,
    );
    listener.close();
    listener = undefined;

    // A regular file where the socket should be is not a socket, and is said so.
    Deno.writeTextFileSync(socket, "");
    Deno.removeSync(`${root}/tc`, { recursive: true });
    const file = detectCilium({ socketPath: socket, bpffsRoot: root });
    assert.equal(file.found, false);
    assert.equal(file.socket, undefined);
    assert.match(file.summary, new RegExp(`; ${socket} exists but is not a socket$`));
  } finally {
    listener?.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
