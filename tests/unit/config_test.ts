import assert from "node:assert/strict";
import { exampleConfigYaml, renderConfigDoc } from "../../src/config/doc.ts";
import {
  type Config,
  ConfigError,
  DEFAULT_CONFIG,
  flagSpecs,
  loadConfig,
  parseConfigText,
  tokenFilePath,
} from "../../src/config/load.ts";
import { CONFIG_SCHEMA, KEYS } from "../../src/config/schema.ts";
import { parseHostPort } from "../../src/net/hostport.ts";

/** The problems a failing call reports; fails when it does not throw ConfigError. */
async function problems(f: () => unknown): Promise<string[]> {
  try {
    await f();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
    assert.equal(e.message, e.problems.join("\n"));
    return [...e.problems];
  }
  assert.fail("no ConfigError");
}

const parse = (text: string) => parseConfigText(text, "x.yaml");
const fileErrors = (text: string) => problems(() => parse(text));

async function withFile<T>(text: string, f: (path: string) => T): Promise<Awaited<T>> {
  const dir = Deno.makeTempDirSync({ prefix: "x0tta6bl4-config-" });
  try {
    const path = `${dir}/x0tta6bl4.yaml`;
    Deno.writeTextFileSync(path, text);
    return await f(path);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("config: the defaults are valid and an empty file gives them", async () => {
  assert.ok(CONFIG_SCHEMA.safeParse(DEFAULT_CONFIG).success);
  assert.equal(DEFAULT_CONFIG.api.listen, "127.0.0.1:9477");
  assert.equal(DEFAULT_CONFIG.datapath.tc_handle, 0x7830);
  assert.deepEqual(DEFAULT_CONFIG.datapath.interfaces, []);
  for (const text of ["", "\n", "# nothing set\n", "---\n", "~\n", "api:\ndatapath:\n"]) {
    assert.deepEqual(await parse(text), DEFAULT_CONFIG, JSON.stringify(text));
  }
  assert.deepEqual(await loadConfig({}), DEFAULT_CONFIG);
  // The defaults stay untouched: results are fresh copies.
  assert.ok(Object.isFrozen(DEFAULT_CONFIG.datapath.interfaces));
  const c = await parse("");
  c.datapath.interfaces.push("eth0");
  assert.deepEqual(DEFAULT_CONFIG.datapath.interfaces, []);
});

Deno.test("config: a full file sets every key", async () => {
  const text = `# every key, none at its default
api:
  listen: "[::1]:0"
  token_file: /etc/x0tta6bl4/token
  max_body_bytes: 1048576
  auth: all
  read_token_file: /etc/x0tta6bl4/read-token
  allowed_hosts: [box.example]
  max_event_clients: 4
state_dir: /srv/x0tta6bl4
datapath:
  interfaces: [eth0, wlan0, br-lan.10]
  hook: xdp
  xdp_mode: generic
  flow_table_size: 16777216
  event_rate: 0
  ring_buffer_bytes: 4096
  max_interfaces: 3
  ifindex_limit: 256
  tc_handle: 0xffffffff
  tc_priority: 1
  btf_path: /boot/vmlinux.btf
  bpffs_dir: /run/bpf/x0
  fallback: false
collect:
  interval_ms: 60000
signals:
  drops: false
  retransmits: false
  rtt: false
mesh:
  enabled: true
  listen: "[::]:5001"
  key_file: /etc/x0tta6bl4/mesh.key
  peers: ["10.0.0.2:5000", "[fd00::3]:5000"]
  name: edge-7
  advertise: "10.0.0.1:9477"
  probe_interval_ms: 250
  suspect_after_ms: 1000
  dead_after_ms: 2000
  indirect_probes: 3
  gossip_interval_ms: 1000
  watch_peers: 8
  member_probe_interval_ms: 500
  gossip_fanout: 4
  retransmit_mult: 3
  suspicion_mult: 6
  sync_interval_ms: 30000
  networks: ["10.0.0.0/24", "fd00::/64"]
  max_members: 64
  max_clock_skew_s: 5
metrics:
  top_flows: 0
  interface_allow:
    - "eth*"
    - wlan?
  interface_deny: [eth9]
mapek:
  enabled: false
  mode: enforce
  action_ttl_s: 300
  max_actions: 8
  max_unverified_actions: 3
  unverified_per_interval: 2
  allow: [192.0.2.0/24, "2001:db8::/32"]
  allow_mesh_peers: false
  allow_management: false
  flood_pps: 50000
  half_open_per_s: 1000
  scan_ports: 100
  scan_window_s: 30
  drops_per_s: 2000
  mesh_loss_percent: 50
  flow_table_fill_percent: 95
  rate_limit_pps: 500
  policy:
    source_flood: block
    syn_flood: rate_limit
    port_scan: none
    mesh_degraded: none
    flow_table_pressure: none
    ringbuf_loss: none
cilium:
  enabled: false
  socket: /run/cilium/cilium.sock
  bpffs_root: /run/bpf
  refresh_s: 60
export:
  ipfix:
    collectors: ["127.0.0.1:9995", "[::1]:4739"]
    active_timeout_s: 30
    idle_timeout_s: 5
    observation_domain_id: 7
    template_refresh_s: 60
    queue_max_records: 1000
  remote_write:
    url: https://prom.example/api/v1/write
    interval_s: 30
    bearer_token_file: /etc/x0tta6bl4/rw-token
    basic_auth_user: edge
    basic_auth_password_file: /etc/x0tta6bl4/rw-password
    headers: ["X-Scope-OrgID: fleet-1"]
    timeout_s: 5
    queue_max_samples: 10000
    external_labels: [site=shop-7]
`;
  const want: Config = {
    api: {
      listen: "[::1]:0",
      token_file: "/etc/x0tta6bl4/token",
      max_body_bytes: 1048576,
      auth: "all",
      read_token_file: "/etc/x0tta6bl4/read-token",
      allowed_hosts: ["box.example"],
      max_event_clients: 4,
    },
    state_dir: "/srv/x0tta6bl4",
    datapath: {
      interfaces: ["eth0", "wlan0", "br-lan.10"],
      hook: "xdp",
      xdp_mode: "generic",
      flow_table_size: 16777216,
      event_rate: 0,
      ring_buffer_bytes: 4096,
      max_interfaces: 3,
      ifindex_limit: 256,
      tc_handle: 0xffffffff,
      tc_priority: 1,
      btf_path: "/boot/vmlinux.btf",
      bpffs_dir: "/run/bpf/x0",
      fallback: false,
    },
    collect: { interval_ms: 60000 },
    signals: { drops: false, retransmits: false, rtt: false },
    mesh: {
      enabled: true,
      listen: "[::]:5001",
      key_file: "/etc/x0tta6bl4/mesh.key",
      peers: ["10.0.0.2:5000", "[fd00::3]:5000"],
      name: "edge-7",
      advertise: "10.0.0.1:9477",
      probe_interval_ms: 250,
      suspect_after_ms: 1000,
      dead_after_ms: 2000,
      indirect_probes: 3,
      gossip_interval_ms: 1000,
      watch_peers: 8,
      member_probe_interval_ms: 500,
      gossip_fanout: 4,
      retransmit_mult: 3,
      suspicion_mult: 6,
      sync_interval_ms: 30000,
      networks: ["10.0.0.0/24", "fd00::/64"],
      max_members: 64,
      max_clock_skew_s: 5,
    },
    metrics: { top_flows: 0, interface_allow: ["eth*", "wlan?"], interface_deny: ["eth9"] },
    mapek: {
      enabled: false,
      mode: "enforce",
      action_ttl_s: 300,
      max_actions: 8,
      max_unverified_actions: 3,
      unverified_per_interval: 2,
      allow: ["192.0.2.0/24", "2001:db8::/32"],
      allow_mesh_peers: false,
      allow_management: false,
      flood_pps: 50000,
      half_open_per_s: 1000,
      scan_ports: 100,
      scan_window_s: 30,
      drops_per_s: 2000,
      mesh_loss_percent: 50,
      flow_table_fill_percent: 95,
      rate_limit_pps: 500,
      policy: {
        source_flood: "block",
        syn_flood: "rate_limit",
        port_scan: "none",
        mesh_degraded: "none",
        flow_table_pressure: "none",
        ringbuf_loss: "none",
      },
    },
    cilium: {
      enabled: false,
      socket: "/run/cilium/cilium.sock",
      bpffs_root: "/run/bpf",
      refresh_s: 60,
    },
    export: {
      ipfix: {
        collectors: ["127.0.0.1:9995", "[::1]:4739"],
        active_timeout_s: 30,
        idle_timeout_s: 5,
        observation_domain_id: 7,
        template_refresh_s: 60,
        queue_max_records: 1000,
      },
      remote_write: {
        url: "https://prom.example/api/v1/write",
        interval_s: 30,
        bearer_token_file: "/etc/x0tta6bl4/rw-token",
        basic_auth_user: "edge",
        basic_auth_password_file: "/etc/x0tta6bl4/rw-password",
        headers: ["X-Scope-OrgID: fleet-1"],
        timeout_s: 5,
        queue_max_samples: 10000,
        external_labels: ["site=shop-7"],
      },
    },
  };
  const got = await parse(text);
  assert.deepEqual(got, want);
  // Every key differs from its default, so each one is read.
  for (const k of KEYS) {
    const at = (c: unknown) => k.path.reduce((v, s) => (v as Record<string, unknown>)[s], c);
    assert.notDeepEqual(at(got), at(DEFAULT_CONFIG), k.key);
  }
  assert.deepEqual(await withFile(text, (file) => loadConfig({ file })), want);
});

Deno.test("config: the example file of the doc holds every key at its default", async () => {
  const example = exampleConfigYaml();
  assert.deepEqual(await parse(example), DEFAULT_CONFIG);
  for (const k of KEYS) assert.ok(example.includes(`${k.path.at(-1)}:`), k.key);
});

Deno.test("config: precedence is defaults < file < environment < flags", async () => {
  const file = `api:
  listen: 10.0.0.1:1000
  max_body_bytes: 1000
datapath:
  flow_table_size: 2048
  interfaces: [eth0, eth1]
  hook: xdp
  xdp_mode: native
collect:
  interval_ms: 500
`;
  const env = {
    X0TTA6BL4_API_LISTEN: "10.0.0.2:2000",
    X0TTA6BL4_DATAPATH_FLOW_TABLE_SIZE: "131072",
    X0TTA6BL4_DATAPATH_INTERFACES: "wan0, lan0",
    X0TTA6BL4_DATAPATH_XDP_MODE: "generic",
    X0TTA6BL4_DATAPATH_TC_HANDLE: "0x10",
    X0TTA6BL4_DATAPATH_FALLBACK: "off",
    X0TTA6BL4_METRICS_INTERFACE_DENY: "",
    // Variables of the prefix that are not keys belong to others.
    X0TTA6BL4_LIBBPF: "/opt/libbpf.so.1",
    PATH: "/usr/bin",
  };
  const flags = {
    listen: "[::]:3000",
    "datapath.flow-table-size": "262144",
    interface: ["veth0", "veth1,veth2"],
    "--state-dir": "/tmp/x0",
    help: true, // the CLI's own flag: ignored
  };
  const c = await withFile(file, (path) => loadConfig({ file: path, env, flags }));
  assert.equal(c.api.listen, "[::]:3000"); // flag over env over file
  assert.equal(c.datapath.flow_table_size, 262144); // flag over env over file
  assert.deepEqual(c.datapath.interfaces, ["veth0", "veth1", "veth2"]); // flag list replaces
  assert.equal(c.datapath.xdp_mode, "generic"); // env over file
  assert.equal(c.datapath.tc_handle, 16); // env only
  assert.equal(c.datapath.fallback, false); // env only
  assert.deepEqual(c.metrics.interface_deny, []); // empty variable: empty list
  assert.equal(c.state_dir, "/tmp/x0"); // flag only
  assert.equal(c.api.max_body_bytes, 1000); // file only
  assert.equal(c.datapath.hook, "xdp"); // file only
  assert.equal(c.collect.interval_ms, 500); // file only
  assert.equal(c.datapath.ring_buffer_bytes, 1048576); // default

  // Canonical flag names, booleans given as flags, lists from two flag names.
  const d = await loadConfig({
    flags: {
      "api.listen": "0.0.0.0:0",
      "datapath.fallback": false,
      "datapath.interfaces": "a",
      interface: "b",
      "datapath.tc-handle": "4096",
      hook: "xdp",
      "xdp-mode": "native",
    },
  });
  assert.equal(d.api.listen, "0.0.0.0:0");
  assert.equal(d.datapath.fallback, false);
  assert.deepEqual(d.datapath.interfaces, ["a", "b"]);
  assert.equal(d.datapath.tc_handle, 4096);
  assert.equal(d.datapath.hook, "xdp");
  assert.equal(d.datapath.xdp_mode, "native");
});

Deno.test("config: each kind of error points at the offending value", async () => {
  // Wrong type.
  assert.deepEqual(await fileErrors("datapath:\n  flow_table_size: big\n"), [
    'x.yaml:2:20: datapath.flow_table_size: wrong type (expected an integer 1024..16777216, got "big")',
  ]);
  assert.deepEqual(await fileErrors("collect: 5\n"), [
    "x.yaml:1:10: collect: wrong type (expected a map of collect.* settings, got 5)",
  ]);
  assert.deepEqual(await fileErrors("- a\n"), [
    "x.yaml:1:1: (document): wrong type (expected a map of settings, got a list)",
  ]);
  assert.deepEqual(await fileErrors("metrics:\n  top_flows: 1.5\n"), [
    "x.yaml:2:14: metrics.top_flows: not an integer (expected an integer 0..100000, got 1.5)",
  ]);
  assert.deepEqual(await fileErrors("datapath:\n  fallback: yes\n"), [
    'x.yaml:2:13: datapath.fallback: wrong type (expected true or false, got "yes")',
  ]);
  // MAPE-K: a bad CIDR in the allow-list, a policy its symptom cannot take.
  assert.deepEqual(
    await fileErrors("mapek:\n  allow: [10.0.0.0/8, 10.1.0.0/33, fd00::/8, nope]\n"),
    [
      'x.yaml:2:23: mapek.allow[1]: prefix length not 0..32 (expected an IPv4 or IPv6 address or network: 192.0.2.0/24, 2001:db8::/32, got "10.1.0.0/33")',
      'x.yaml:2:46: mapek.allow[3]: not an IPv4 or IPv6 address (expected an IPv4 or IPv6 address or network: 192.0.2.0/24, 2001:db8::/32, got "nope")',
    ],
  );
  assert.deepEqual(await fileErrors("mapek:\n  policy:\n    mesh_degraded: block\n"), [
    'x.yaml:3:20: mapek.policy.mesh_degraded: not an allowed value (expected "mark_degraded" or "none", got "block")',
  ]);
  // Out of range, both ends.
  assert.deepEqual(await fileErrors("api:\n    max_body_bytes: 0\n"), [
    "x.yaml:2:21: api.max_body_bytes: too small (expected an integer ≥ 1, got 0)",
  ]);
  assert.deepEqual(await fileErrors("datapath:\n  tc_handle: 0x100000000\n"), [
    "x.yaml:2:14: datapath.tc_handle: too large (expected an integer ≤ 0xffffffff, got 4294967296)",
  ]);
  // Unknown keys, with a suggestion where one is close.
  assert.deepEqual(await fileErrors("api:\n  lsten: 1.2.3.4:5\n"), [
    "x.yaml:2:3: api.lsten: unknown key (expected one of: listen, token_file, max_body_bytes, auth, read_token_file, allowed_hosts, max_event_clients; " +
    "did you mean listen?)",
  ]);
  assert.deepEqual(await fileErrors("verbose: true\n"), [
    "x.yaml:1:1: verbose: unknown key (expected one of: api, state_dir, datapath, collect, signals, mesh, mapek, cilium, metrics, export)",
  ]);
  assert.deepEqual(await fileErrors("datapath.hook: xdp\n"), [
    'x.yaml:1:1: datapath.hook: unknown key (expected datapath.hook written as nested maps: "datapath:" with "hook:" indented below it)',
  ]);
  // Not one of the allowed values.
  assert.deepEqual(await fileErrors("datapath:\n  hook: ebpf\n  xdp_mode: fast\n"), [
    'x.yaml:2:9: datapath.hook: not an allowed value (expected "tc" or "xdp", got "ebpf")',
    'x.yaml:3:13: datapath.xdp_mode: not an allowed value (expected "auto", "native" or "generic", got "fast")',
  ]);
  // YAML syntax errors.
  assert.deepEqual(await fileErrors("api:\n  listen: [a, b\nstate_dir: /x\n"), [
    "x.yaml:3:1: YAML syntax error: Flow sequence in block collection must be sufficiently " +
    "indented and end with a ]",
  ]);
  assert.deepEqual(await fileErrors("api:\n\tlisten: x\n"), [
    "x.yaml:2:1: YAML syntax error: Tabs are not allowed as indentation",
  ]);
  assert.deepEqual(await fileErrors("state_dir: /a\nstate_dir: /b\n"), [
    "x.yaml:2:1: YAML syntax error: Map keys must be unique",
  ]);
  assert.deepEqual(await fileErrors("api:\n  listen: *addr\n"), [
    "x.yaml:2:11: api.listen: unknown alias *addr",
  ]);
  // Bad listen addresses.
  const listen = (v: string) => fileErrors(`api:\n  listen: "${v}"\n`);
  const tail = (v: string) =>
    `(expected HOST:PORT or [IPv6]:PORT with a port 0..65535, got ${JSON.stringify(v)})`;
  for (
    const [v, what] of [
      ["0.0.0.0:70000", "port out of range"],
      ["localhost", "missing port"],
      ["1.2.3.4:", "missing port"],
      ["1.2.3.4:http", "bad port"],
      ["::1:9477", "IPv6 address not in brackets"],
      ["[::g]:9477", "bad IPv6 address"],
      ["300.1.1.1:80", "bad IPv4 address"],
      ["bad host:80", "bad host name"],
      [":9477", "missing host; 0.0.0.0 or [::] means all addresses"],
    ]
  ) {
    assert.deepEqual(await listen(v), [
      `x.yaml:2:11: api.listen: bad listen address: ${what} ${tail(v)}`,
    ]);
  }
  // Ring buffer size not a power of two.
  assert.deepEqual(await fileErrors("datapath:\n  ring_buffer_bytes: 5000\n"), [
    "x.yaml:2:22: datapath.ring_buffer_bytes: not a power of two (expected a power of two " +
    "4096..1073741824, got 5000)",
  ]);
  // List items, paths and duplicates.
  assert.deepEqual(
    await fileErrors(
      "state_dir: var/lib\ndatapath:\n  interfaces:\n    - eth0\n    - eth 1\n    - eth0\n",
    ),
    [
      'x.yaml:1:12: state_dir: not an absolute path (expected an absolute path, got "var/lib")',
      'x.yaml:5:7: datapath.interfaces[1]: bad character in interface name (expected an interface name of 1-15 characters without "/", ":" or whitespace, got "eth 1")',
      'x.yaml:6:7: datapath.interfaces[2]: listed twice (expected each interface name once, got "eth0")',
    ],
  );
  // Checks across keys.
  assert.deepEqual(await fileErrors("datapath:\n  max_interfaces: 1\n  interfaces: [a, b]\n"), [
    "x.yaml:3:15: datapath.interfaces: too many interfaces (expected at most 1 " +
    "(datapath.max_interfaces), got 2)",
  ]);
});

Deno.test("config: every problem of a file is reported at once, in order", async () => {
  const text = `api:
  listen: 127.0.0.1:99999
  max_body_bytes: 2097152
  colour: blue
state_dir: ""
datapath:
  hook: ebpf
  ring_buffer_bytes: 5000
  interfaces: [eth0, averyveryverylongname]
collect:
  interval_ms: [1000]
metrics:
  top_flows: "10"
`;
  assert.deepEqual(await fileErrors(text), [
    'x.yaml:2:11: api.listen: bad listen address: port out of range (expected HOST:PORT or [IPv6]:PORT with a port 0..65535, got "127.0.0.1:99999")',
    "x.yaml:3:19: api.max_body_bytes: too large (expected an integer ≤ 1048576, got 2097152)",
    "x.yaml:4:3: api.colour: unknown key (expected one of: listen, token_file, max_body_bytes, auth, read_token_file, allowed_hosts, max_event_clients)",
    'x.yaml:5:12: state_dir: empty path (expected an absolute path, got "")',
    'x.yaml:7:9: datapath.hook: not an allowed value (expected "tc" or "xdp", got "ebpf")',
    "x.yaml:8:22: datapath.ring_buffer_bytes: not a power of two (expected a power of two 4096..1073741824, got 5000)",
    'x.yaml:9:22: datapath.interfaces[1]: interface name longer than 15 characters (expected an interface name of 1-15 characters without "/", ":" or whitespace, got "averyveryverylongname")',
    "x.yaml:11:16: collect.interval_ms: wrong type (expected an integer 100..60000, got a list)",
    'x.yaml:13:14: metrics.top_flows: wrong type (expected an integer 0..100000, got "10")',
  ]);
});

Deno.test("config: environment and flag values are converted and checked by name", async () => {
  assert.deepEqual(
    await problems(() =>
      loadConfig({
        env: {
          X0TTA6BL4_DATAPATH_FLOW_TABLE_SIZE: "12",
          X0TTA6BL4_COLLECT_INTERVAL_MS: "1s",
          X0TTA6BL4_DATAPATH_FALLBACK: "maybe",
          X0TTA6BL4_DATAPATH_INTERFACES: "eth0,wlan0/1",
          X0TTA6BL4_DATAPATH_HOOK: "bpf",
        },
        flags: {
          "datapath.flow-table-size": "12",
          "datapath.ring-buffer-bytes": "0x3000",
          listen: "localhost",
          "api.max-body-bytes": ["1", "2"],
          hook: true,
          interface: ["eth0", "eth0"],
        },
      })
    ),
    [
      'env X0TTA6BL4_DATAPATH_INTERFACES: datapath.interfaces[1]: bad character in interface name (expected an interface name of 1-15 characters without "/", ":" or whitespace, got "wlan0/1")',
      'env X0TTA6BL4_DATAPATH_HOOK: datapath.hook: not an allowed value (expected "tc" or "xdp", got "bpf")',
      'env X0TTA6BL4_DATAPATH_FLOW_TABLE_SIZE: datapath.flow_table_size: too small (expected an integer ≥ 1024, got "12")',
      'env X0TTA6BL4_DATAPATH_FALLBACK: datapath.fallback: not a boolean (expected true/false, 1/0, yes/no or on/off, got "maybe")',
      'env X0TTA6BL4_COLLECT_INTERVAL_MS: collect.interval_ms: not an integer (expected an integer 100..60000, got "1s")',
      'flag --listen: api.listen: bad listen address: missing port (expected HOST:PORT or [IPv6]:PORT with a port 0..65535, got "localhost")',
      'flag --api.max-body-bytes: api.max_body_bytes: given more than once (expected a single value, got "1", "2")',
      'flag --interface: datapath.interfaces[1]: listed twice (expected each interface name once, got "eth0")',
      "flag --hook: datapath.hook: missing value (expected tc|xdp, got no value)",
      'flag --datapath.flow-table-size: datapath.flow_table_size: too small (expected an integer ≥ 1024, got "12")',
      'flag --datapath.ring-buffer-bytes: datapath.ring_buffer_bytes: not a power of two (expected a power of two 4096..1073741824, got "0x3000")',
    ],
  );
  // Across keys, the problem names where the value came from.
  assert.deepEqual(
    await problems(() =>
      loadConfig({
        env: { X0TTA6BL4_DATAPATH_MAX_INTERFACES: "1" },
        flags: { interface: ["a", "b"] },
      })
    ),
    [
      "flag --interface: datapath.interfaces: too many interfaces (expected at most 1 " +
      "(datapath.max_interfaces), got 2)",
    ],
  );
});

Deno.test("config: file, environment and flag problems are reported together", async () => {
  const errors = await withFile(
    "datapath:\n  hook: ebpf\n",
    (file) =>
      problems(() =>
        loadConfig({
          file,
          env: { X0TTA6BL4_API_LISTEN: "nowhere" },
          flags: { "collect.interval-ms": "50" },
        })
      ),
  );
  assert.equal(errors.length, 3);
  assert.match(errors[0], /^\/.*\/x0tta6bl4\.yaml:2:9: datapath\.hook: not an allowed value/);
  assert.match(errors[1], /^env X0TTA6BL4_API_LISTEN: api\.listen: bad listen address/);
  assert.equal(
    errors[2],
    'flag --collect.interval-ms: collect.interval_ms: too small (expected an integer ≥ 100, got "50")',
  );
});

Deno.test("config: a configuration file named but missing is an error naming it", async () => {
  assert.deepEqual(await problems(() => loadConfig({ file: "/nonexistent/x0tta6bl4.yaml" })), [
    "/nonexistent/x0tta6bl4.yaml: cannot read the configuration file: no such file",
  ]);
});

Deno.test("config: flag specs cover every key once, plus the short aliases", () => {
  const specs = flagSpecs();
  const names = specs.map((s) => s.name);
  assert.equal(new Set(names).size, names.length);
  for (const k of KEYS) {
    const canonical = specs.find((s) => s.name === k.flag);
    assert.ok(canonical, k.key);
    assert.equal(canonical.key, k.key);
    assert.equal(canonical.multiple, Array.isArray(k.field.default));
    assert.ok(canonical.description.length > 10);
    assert.ok(!canonical.description.includes("\n"));
  }
  const alias = (name: string) => specs.find((s) => s.name === name)?.key;
  assert.equal(alias("datapath.flow-table-size"), "datapath.flow_table_size");
  assert.equal(alias("listen"), "api.listen");
  assert.equal(alias("interface"), "datapath.interfaces");
  assert.equal(alias("state-dir"), "state_dir");
  assert.equal(alias("hook"), "datapath.hook");
  assert.equal(alias("xdp-mode"), "datapath.xdp_mode");
  assert.equal(specs.find((s) => s.name === "interface")?.multiple, true);
});

Deno.test("config: helpers for listen and token file", async () => {
  assert.deepEqual(parseHostPort("127.0.0.1:9477"), { hostname: "127.0.0.1", port: 9477 });
  assert.deepEqual(parseHostPort("[::1]:0"), { hostname: "::1", port: 0 });
  assert.throws(() => parseHostPort("::1"), TypeError);
  assert.equal(tokenFilePath(DEFAULT_CONFIG), "/var/lib/x0tta6bl4/api-token");
  assert.equal(tokenFilePath(await parse("api:\n  token_file: /etc/t\n")), "/etc/t");
});

Deno.test("config: docs/CONFIG.md is the rendered reference", async () => {
  const doc = await renderConfigDoc();
  const onDisk = Deno.readTextFileSync(new URL("../../docs/CONFIG.md", import.meta.url));
  assert.ok(
    onDisk === doc,
    "docs/CONFIG.md is stale: run deno run -A scripts/config-doc.ts",
  );
  for (const k of KEYS) {
    assert.ok(doc.includes(`\`${k.key}\``), k.key);
    assert.ok(doc.includes(k.env), k.env);
    assert.ok(doc.includes(`--${k.flag} `), k.flag);
    assert.ok(doc.includes(k.field.description.split("<")[0]), k.key);
  }
});
