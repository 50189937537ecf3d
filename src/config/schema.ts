/**
 * The configuration schema of `x0tta6bl4 serve`, written once: every key with its type, default,
 * allowed values, one-line description, environment variable and flag. Validation (zod), the
 * error messages (src/config/load.ts), `--help` (flagSpecs) and docs/CONFIG.md
 * (src/config/doc.ts) are all derived from SCHEMA below.
 */
import { z } from "zod";
import { cidrProblem } from "../net/cidr.ts";
import { checkHostPort, HOST_PORT_EXPECTED } from "../net/hostport.ts";

export type FieldKind = "integer" | "string" | "boolean" | "enum" | "list";

/** A custom problem: `what` is wrong; `expected` overrides the field's own expectation. */
interface Problem {
  what: string;
  expected?: string;
}

interface FieldInit<T> {
  kind: FieldKind;
  schema: z.ZodType<T>;
  default: T;
  description: string;
  /** What a valid value looks like, completing "expected …": `an integer 1024..16777216`. */
  expected: string;
  /** Type column of the reference doc. */
  type: string;
  /** Allowed values or range, for the reference doc. */
  allowed: string;
  /** Placeholder of the value in `--help`: N, PATH, ADDR:PORT, tc|xdp. */
  value: string;
  /** Converts an environment or flag string; a string result is the problem. */
  fromString: (s: string) => { value: T } | { problem: Problem };
  /** Short flag names besides the canonical `--dotted.key-name`. */
  aliases?: string[];
  /** Expectation of one list item (lists only). */
  itemExpected?: string;
  /** Bounds of integers as written in "too small / too large" messages. */
  min?: string;
  max?: string;
  /** How the default is written in YAML and docs, when not its JSON form. */
  defaultText?: string;
}

/** One configuration key. Sections of SCHEMA are plain objects; leaves are Fields. */
export class Field<T> {
  readonly kind: FieldKind;
  readonly schema: z.ZodType<T>;
  readonly default: T;
  readonly description: string;
  readonly expected: string;
  readonly type: string;
  readonly allowed: string;
  readonly value: string;
  readonly fromString: (s: string) => { value: T } | { problem: Problem };
  readonly aliases: readonly string[];
  readonly itemExpected?: string;
  readonly min?: string;
  readonly max?: string;
  readonly defaultText: string;

  constructor(init: FieldInit<T>) {
    this.kind = init.kind;
    this.schema = init.schema;
    this.default = init.default;
    this.description = init.description;
    this.expected = init.expected;
    this.type = init.type;
    this.allowed = init.allowed;
    this.value = init.value;
    this.fromString = init.fromString;
    this.aliases = init.aliases ?? [];
    this.itemExpected = init.itemExpected;
    this.min = init.min;
    this.max = init.max;
    this.defaultText = init.defaultText ?? JSON.stringify(init.default);
  }
}

// ---------------------------------------------------------------------------------------------
// Field builders.

/** Adds a custom zod issue for each problem `check` finds; the path is relative. */
function refineWith<T>(check: (v: T) => Problem | undefined) {
  return (v: T, ctx: z.RefinementCtx) => {
    const p = check(v);
    if (p) ctx.addIssue({ code: "custom", message: p.what, params: { expected: p.expected } });
  };
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function int(o: {
  default: number;
  min: number;
  max: number;
  description: string;
  powerOfTwo?: boolean;
  hex?: boolean;
}): Field<number> {
  const fmt = (n: number) => (o.hex ? hex(n) : String(n));
  const range = `${fmt(o.min)}..${fmt(o.max)}`;
  const expected = o.powerOfTwo ? `a power of two ${range}` : `an integer ${range}`;
  let schema: z.ZodType<number> = z.int().min(o.min).max(o.max);
  if (o.powerOfTwo) {
    schema = z.int().min(o.min).max(o.max).superRefine(
      refineWith((n: number) =>
        Number.isInteger(Math.log2(n)) ? undefined : { what: "not a power of two" }
      ),
    );
  }
  return new Field<number>({
    kind: "integer",
    schema,
    default: o.default,
    description: o.description,
    expected,
    type: "integer",
    allowed: o.powerOfTwo ? `${range}, a power of two` : range,
    value: "N",
    min: fmt(o.min),
    max: fmt(o.max),
    defaultText: fmt(o.default),
    fromString(s) {
      const t = s.trim();
      if (/^[+-]?\d+$/.test(t)) return { value: Number(t) };
      if (/^0x[0-9a-f]+$/i.test(t)) return { value: parseInt(t.slice(2), 16) };
      return { problem: { what: "not an integer" } };
    },
  });
}

function bool(o: { default: boolean; description: string }): Field<boolean> {
  return new Field<boolean>({
    kind: "boolean",
    schema: z.boolean(),
    default: o.default,
    description: o.description,
    expected: "true or false",
    type: "boolean",
    allowed: "true, false",
    value: "true|false",
    fromString(s) {
      const t = s.trim().toLowerCase();
      if (["true", "1", "yes", "on"].includes(t)) return { value: true };
      if (["false", "0", "no", "off"].includes(t)) return { value: false };
      return { problem: { what: "not a boolean", expected: "true/false, 1/0, yes/no or on/off" } };
    },
  });
}

function oneOf<const V extends readonly [string, ...string[]]>(o: {
  values: V;
  default: V[number];
  description: string;
  aliases?: string[];
}): Field<V[number]> {
  const list = o.values.map((v) => JSON.stringify(v));
  const expected = list.length === 2
    ? `${list[0]} or ${list[1]}`
    : `${list.slice(0, -1).join(", ")} or ${list.at(-1)}`;
  return new Field<V[number]>({
    kind: "enum",
    schema: z.enum(o.values) as unknown as z.ZodType<V[number]>,
    default: o.default,
    description: o.description,
    expected,
    type: "string",
    allowed: list.join(", "),
    value: o.values.join("|"),
    aliases: o.aliases,
    fromString: (s) => ({ value: s.trim() as V[number] }),
  });
}

function string(o: {
  default: string;
  description: string;
  expected: string;
  allowed: string;
  value: string;
  check: (s: string) => Problem | undefined;
  aliases?: string[];
}): Field<string> {
  return new Field<string>({
    kind: "string",
    schema: z.string().superRefine(refineWith(o.check)),
    default: o.default,
    description: o.description,
    expected: o.expected,
    type: "string",
    allowed: o.allowed,
    value: o.value,
    aliases: o.aliases,
    fromString: (s) => ({ value: s }),
  });
}

function path(o: { default: string; description: string; emptyMeans?: string }): Field<string> {
  const expected = o.emptyMeans === undefined ? "an absolute path" : `"" or an absolute path`;
  return string({
    default: o.default,
    description: o.description,
    expected,
    allowed: o.emptyMeans === undefined
      ? "an absolute path"
      : `an absolute path, or "" for ${o.emptyMeans}`,
    value: "PATH",
    check(s) {
      if (s === "" && o.emptyMeans !== undefined) return undefined;
      if (s === "") return { what: "empty path" };
      if (s.includes("\0")) return { what: "path contains a NUL character" };
      if (!s.startsWith("/")) return { what: "not an absolute path" };
      return undefined;
    },
  });
}

function list(o: {
  default: string[];
  description: string;
  item: string;
  itemExpected: string;
  check: (s: string) => Problem | undefined;
  aliases?: string[];
}): Field<string[]> {
  const schema = z.array(z.string().superRefine(refineWith(o.check))).superRefine((items, ctx) => {
    items.forEach((item, i) => {
      if (items.indexOf(item) < i) {
        ctx.addIssue({
          code: "custom",
          path: [i],
          message: "listed twice",
          params: { expected: `each ${o.item} once` },
        });
      }
    });
  });
  return new Field<string[]>({
    kind: "list",
    schema,
    default: o.default,
    description: o.description,
    expected: `a list of ${o.item}s`,
    type: `list of ${o.item}s`,
    allowed: o.itemExpected,
    value: o.item.toUpperCase().replace(/ .*/, ""),
    aliases: o.aliases,
    itemExpected: o.itemExpected,
    fromString: (s) => ({ value: splitList(s) }),
  });
}

/** Comma-separated list items of an environment variable or flag; "" is the empty list. */
export function splitList(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter((x) => x !== "");
}

// ---------------------------------------------------------------------------------------------
// Checks of strings.

const IFNAME_EXPECTED = `an interface name of 1-15 characters without "/", ":" or whitespace`;

function checkIfname(s: string): Problem | undefined {
  if (s === "") return { what: "empty interface name" };
  if (s.length > 15) return { what: "interface name longer than 15 characters" };
  if (/[/:\s]/.test(s)) return { what: `bad character in interface name` };
  if (s === "." || s === "..") return { what: "interface name cannot be . or .." };
  return undefined;
}

const GLOB_EXPECTED =
  `an interface name pattern (* and ? wildcards) without "/", ":" or whitespace`;

function checkGlob(s: string): Problem | undefined {
  if (s === "") return { what: "empty pattern" };
  if (s.length > 64) return { what: "pattern longer than 64 characters" };
  if (/[/:\s]/.test(s)) return { what: "bad character in pattern" };
  return undefined;
}

const SOURCE_ACTIONS = ["block", "rate_limit", "none"] as const;

function policy<const V extends readonly [string, ...string[]]>(
  def: V[number],
  values: V,
  what: string,
): Field<V[number]> {
  return oneOf({ values, default: def, description: `Action on ${what}.` });
}

const CIDR_EXPECTED = "an IPv4 or IPv6 address or network: 192.0.2.0/24, 2001:db8::/32";

/** Networks are read by the parser the MAPE-K allow-list uses, so that what validation
 * accepts, the loop can use (node:net would also take a zone, "fe80::1%eth0"). */
function checkCidr(s: string): Problem | undefined {
  const what = cidrProblem(s);
  return what === undefined ? undefined : { what };
}

// ---------------------------------------------------------------------------------------------
// The schema.

export const SCHEMA = {
  api: {
    listen: string({
      default: "127.0.0.1:9477",
      description: "Address and port of the HTTP API; IPv6 in brackets ([::1]:9477); port 0 " +
        "picks a free port.",
      expected: HOST_PORT_EXPECTED,
      allowed: "HOST:PORT (IPv4, [IPv6] or host name; port 0..65535)",
      value: "ADDR:PORT",
      aliases: ["listen"],
      check(s) {
        const r = checkHostPort(s);
        return typeof r === "string" ? { what: `bad listen address: ${r}` } : undefined;
      },
    }),
    token_file: path({
      default: "",
      description: "File holding the API bearer token; empty means <state_dir>/api-token.",
      emptyMeans: "<state_dir>/api-token",
    }),
    max_body_bytes: int({
      default: 65536,
      min: 1,
      max: 1048576,
      description: "Largest request body the API accepts, in bytes.",
    }),
    auth: oneOf({
      values: ["mutations", "all"],
      default: "mutations",
      description: "What needs the bearer token: mutating calls only, or every route but " +
        "/livez and /readyz (reads also take the read-only token).",
    }),
    read_token_file: path({
      default: "",
      description: "File holding a read-only bearer token (for scrapers and dashboards; " +
        "created when missing); empty means none.",
      emptyMeans: "no read-only token",
    }),
    allowed_hosts: list({
      default: [],
      description: "Host names the API answers to besides localhost and the loopback " +
        "addresses while it listens on loopback (a Host check against DNS rebinding); on " +
        "another address, when set, only these names and IP addresses.",
      item: "host name",
      itemExpected: "a host name such as box.example",
      check: (s) =>
        /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(s) &&
          s.length <= 253
          ? undefined
          : { what: "bad host name" },
    }),
    max_event_clients: int({
      default: 16,
      min: 1,
      max: 1024,
      description: "Most clients of the live event stream at once; more get 503.",
    }),
  },
  state_dir: path({
    default: "/var/lib/x0tta6bl4",
    description: "Directory of the daemon's persistent state (API token, snapshots).",
  }),
  datapath: {
    interfaces: list({
      default: [],
      description: "Interfaces to monitor; empty means the interface of the default route.",
      item: "interface name",
      itemExpected: IFNAME_EXPECTED,
      check: checkIfname,
      aliases: ["interface"],
    }),
    hook: oneOf({
      values: ["tc", "xdp"],
      default: "tc",
      description: "Where packets are counted: tc (keeps GRO/GSO on virtual links) or xdp.",
      aliases: ["hook"],
    }),
    xdp_mode: oneOf({
      values: ["auto", "native", "generic"],
      default: "auto",
      description: "XDP attach mode when hook is xdp: auto (native, else generic), native or " +
        "generic.",
      aliases: ["xdp-mode"],
    }),
    flow_table_size: int({
      default: 65536,
      min: 1024,
      max: 16777216,
      description: "Capacity of the LRU flow table, in flows.",
    }),
    event_rate: int({
      default: 1000,
      min: 0,
      max: 10000000,
      description:
        "New-flow events per second, per CPU and interface; beyond it they are counted as suppressed (0: none).",
    }),
    ring_buffer_bytes: int({
      default: 1048576,
      min: 4096,
      max: 1073741824,
      powerOfTwo: true,
      description: "Size of the ring buffer carrying new-flow events to user space, in bytes.",
    }),
    max_interfaces: int({
      default: 64,
      min: 1,
      max: 1024,
      description: "Most interfaces the datapath watches at once.",
    }),
    ifindex_limit: int({
      default: 32768,
      min: 256,
      max: 1048576,
      description: "Interface indexes below this get per-interface counters in the kernel.",
    }),
    tc_handle: int({
      default: 0x7830,
      min: 1,
      max: 0xffffffff,
      hex: true,
      description: "Handle of the TC filters the datapath installs and later finds again.",
    }),
    tc_priority: int({
      default: 49152,
      min: 1,
      max: 65535,
      description: "Priority of the TC filters the datapath installs.",
    }),
    btf_path: path({
      default: "",
      description: "BTF of the running kernel; empty means the kernel's own " +
        "(/sys/kernel/btf/vmlinux).",
      emptyMeans: "the kernel's own BTF",
    }),
    bpffs_dir: path({
      default: "/sys/fs/bpf/x0tta6bl4",
      description: "bpffs directory where maps are pinned, so counters survive restarts.",
    }),
    fallback: bool({
      default: true,
      description: "When eBPF cannot run, collect from /sys/class/net instead of failing.",
    }),
  },
  collect: {
    interval_ms: int({
      default: 1000,
      min: 100,
      max: 60000,
      description: "How often the counters are read, in milliseconds.",
    }),
  },
  signals: {
    drops: bool({
      default: true,
      description: "Count dropped packets by the kernel's reason (skb:kfree_skb), per interface " +
        "and flow.",
    }),
    retransmits: bool({
      default: true,
      description: "Count TCP retransmits per flow (tcp:tcp_retransmit_skb).",
    }),
    rtt: bool({
      default: true,
      description:
        "Record TCP smoothed RTT per flow and a histogram per interface (tcp:tcp_probe).",
    }),
  },
  mesh: {
    enabled: bool({
      default: false,
      description: "Join the mesh: probe peers over UDP, report their liveness, latency and loss.",
    }),
    listen: string({
      default: "0.0.0.0:5000",
      description: "UDP address and port of the mesh protocol (docs/PROTOCOL.md).",
      expected: HOST_PORT_EXPECTED,
      allowed: "HOST:PORT (IPv4, [IPv6] or host name; port 0..65535)",
      value: "ADDR:PORT",
      check(s) {
        const r = checkHostPort(s);
        return typeof r === "string" ? { what: `bad listen address: ${r}` } : undefined;
      },
    }),
    key_file: path({
      default: "",
      description: "File with the shared mesh key (at least 32 bytes); needed when the mesh " +
        "is enabled.",
      emptyMeans: "none (the mesh cannot start)",
    }),
    peers: list({
      default: [],
      description: "Static peers and seeds (HOST:PORT); others are learned by gossip.",
      item: "peer address",
      itemExpected: HOST_PORT_EXPECTED,
      check(s) {
        const r = checkHostPort(s);
        return typeof r === "string" ? { what: `bad peer address: ${r}` } : undefined;
      },
    }),
    name: string({
      default: "",
      description: "This node's name in the mesh; empty means the host name.",
      expected: "a name of at most 64 characters",
      allowed: "1 to 64 characters, or empty for the host name",
      value: "NAME",
      check: (s) => s.length > 64 ? { what: "name longer than 64 characters" } : undefined,
    }),
    advertise: string({
      default: "",
      description: "Metrics address (HOST:PORT) this node gives the fleet's Prometheus; empty " +
        "means api.listen, with the mesh address's host when the API listens on all addresses.",
      expected: '"" or ' + HOST_PORT_EXPECTED,
      allowed: "HOST:PORT, or empty",
      value: "ADDR:PORT",
      check(s) {
        if (s === "") return undefined;
        // It travels in one length-prefixed string of the mesh's hello and gossip.
        if (new TextEncoder().encode(s).length > 255) return { what: "longer than 255 bytes" };
        const r = checkHostPort(s);
        return typeof r === "string" ? { what: `bad address: ${r}` } : undefined;
      },
    }),
    networks: list({
      default: [],
      description: "Networks (CIDRs) mesh members and the metrics addresses given to " +
        "Prometheus must be in; a member outside them is refused. Empty means the networks of " +
        "the configured peers (the connected network each is on, else its own address).",
      item: "CIDR",
      itemExpected: CIDR_EXPECTED,
      check: checkCidr,
    }),
    max_members: int({
      default: 1024,
      min: 1,
      max: 65536,
      description: "Most members this node keeps; members beyond it are refused and counted.",
    }),
    max_clock_skew_s: int({
      default: 30,
      min: 1,
      max: 3600,
      description: "Datagrams stamped further than this from this node's clock are refused " +
        "(replays of old datagrams, also across restarts); keep the fleet's clocks in sync.",
    }),
    probe_interval_ms: int({
      default: 100,
      min: 10,
      max: 10000,
      description: "How often each peer watched closely (see mesh.watch_peers) is probed, in " +
        "milliseconds.",
    }),
    suspect_after_ms: int({
      default: 500,
      min: 20,
      max: 600000,
      description: "Silence after which a peer is suspect and others are asked to probe it.",
    }),
    dead_after_ms: int({
      default: 900,
      min: 30,
      max: 600000,
      description: "Silence after which a peer is declared dead.",
    }),
    indirect_probes: int({
      default: 2,
      min: 0,
      max: 8,
      description: "Peers asked to probe a suspect peer on our behalf.",
    }),
    gossip_interval_ms: int({
      default: 100,
      min: 20,
      max: 60000,
      description: "How often membership changes (joins, suspicions, deaths, refutations) go " +
        "to mesh.gossip_fanout random members, in milliseconds.",
    }),
    watch_peers: int({
      default: 32,
      min: 0,
      max: 1024,
      description: "Members watched closely (probed every mesh.probe_interval_ms, with RTT, " +
        "jitter, loss and traffic) besides the configured peers: those with the most traffic.",
    }),
    member_probe_interval_ms: int({
      default: 100,
      min: 10,
      max: 60000,
      description: "SWIM period for the rest of the fleet: one member probed per period, " +
        "whatever the fleet's size.",
    }),
    gossip_fanout: int({
      default: 3,
      min: 1,
      max: 16,
      description: "Random members each batch of membership changes goes to.",
    }),
    retransmit_mult: int({
      default: 4,
      min: 1,
      max: 16,
      description: "A membership change is sent retransmit_mult × ceil(log10(members + 1)) times.",
    }),
    suspicion_mult: int({
      default: 5,
      min: 1,
      max: 32,
      description: "A suspected member (not watched closely) is declared dead after " +
        "suspicion_mult × max(1, log10(members)) SWIM periods unless it refutes.",
    }),
    sync_interval_ms: int({
      default: 1000,
      min: 100,
      max: 600000,
      description: "How often part of the member list is swapped with one random member " +
        "(push-pull), in milliseconds.",
    }),
  },
  mapek: {
    enabled: bool({
      default: true,
      description: "Run the MAPE-K loop: watch each snapshot for floods, scans and trouble, and " +
        "plan (observe) or take (enforce) bounded actions.",
    }),
    mode: oneOf({
      values: ["observe", "enforce"],
      default: "observe",
      description: "observe: decisions and plans are shown, nothing is executed. enforce: " +
        "actions are executed (blocks and rate limits in XDP/TC ingress).",
      aliases: ["mapek-mode"],
    }),
    action_ttl_s: int({
      default: 60,
      min: 1,
      max: 86400,
      description: "How long an action lasts before it expires on its own, in seconds.",
    }),
    max_actions: int({
      default: 32,
      min: 1,
      max: 4096,
      description: "Most actions in force at once; beyond it, decisions are skipped.",
    }),
    max_unverified_actions: int({
      default: 16,
      min: 0,
      max: 4096,
      description: "Most blocks and rate limits at once on sources that never completed a " +
        "conversation with this box (their address may be spoofed); the rest of " +
        "mapek.max_actions stays for sources that did.",
    }),
    unverified_per_interval: int({
      default: 4,
      min: 0,
      max: 1024,
      description: "Most new blocks and rate limits per interval on such sources; others wait " +
        "for a later interval (a real source keeps going, a spoofed flood's addresses do not).",
    }),
    allow: list({
      default: [],
      description: "Addresses and networks (CIDR) never acted on, besides this box's own, the " +
        "loopback, mesh peers and the management network.",
      item: "CIDR",
      itemExpected: CIDR_EXPECTED,
      check: checkCidr,
    }),
    allow_mesh_peers: bool({
      default: true,
      description: "Never act on the addresses of mesh peers.",
    }),
    allow_management: bool({
      default: true,
      description: "Never act on the management network: the subnet of the address the API " +
        "listens on (none when it listens on the loopback or on all addresses).",
    }),
    flood_pps: int({
      default: 20000,
      min: 1,
      max: 1000000000,
      description: "Floor of the source-flood detector: packets per second from one source; " +
        "the learned baseline can only raise it.",
    }),
    half_open_per_s: int({
      default: 200,
      min: 1,
      max: 100000000,
      description: "Floor of the SYN-flood detector: TCP connections per second to one " +
        "address that never get past SYN.",
    }),
    scan_ports: int({
      default: 50,
      min: 2,
      max: 65536,
      description: "Floor of the port-scan detector: distinct ports one source opens without " +
        "an answer within scan_window_s.",
    }),
    scan_window_s: int({
      default: 10,
      min: 1,
      max: 3600,
      description: "Window of the port-scan detector, in seconds.",
    }),
    drops_per_s: int({
      default: 500,
      min: 1,
      max: 100000000,
      description: "Floor of the drop-rise detector: kernel drops per second of one reason.",
    }),
    mesh_loss_percent: int({
      default: 20,
      min: 1,
      max: 100,
      description: "Probe loss above which a mesh link counts as degraded, in percent.",
    }),
    flow_table_fill_percent: int({
      default: 90,
      min: 10,
      max: 100,
      description: "Flow-table fill above which the appliance is under pressure, in percent.",
    }),
    rate_limit_pps: int({
      default: 1000,
      min: 10,
      max: 100000000,
      description: "Packets per second a rate_limit action lets through from its source.",
    }),
    policy: {
      source_flood: policy("rate_limit", SOURCE_ACTIONS, "a source flooding the box"),
      syn_flood: policy("block", SOURCE_ACTIONS, "a SYN flood (acts on its main source)"),
      port_scan: policy("block", SOURCE_ACTIONS, "a port scan"),
      mesh_degraded: policy("mark_degraded", ["mark_degraded", "none"], "a degraded mesh link"),
      flow_table_pressure: policy(
        "shrink_top_n",
        ["shrink_top_n", "none"],
        "flow-table pressure",
      ),
      ringbuf_loss: policy("sample_events", ["sample_events", "none"], "ring buffer loss"),
    },
  },
  cilium: {
    enabled: bool({
      default: true,
      description: "Look for a Cilium agent (its API socket and bpffs pins; never touched) and, " +
        "when its API answers, label flows with Cilium endpoint identities.",
    }),
    socket: path({
      default: "/var/run/cilium/cilium.sock",
      description: "The Cilium agent's API socket.",
    }),
    bpffs_root: path({
      default: "/sys/fs/bpf",
      description: "The bpffs where Cilium pins its maps (tc/globals/cilium_*), to detect it.",
    }),
    refresh_s: int({
      default: 15,
      min: 1,
      max: 3600,
      description: "How often endpoint identities are read from the Cilium API, in seconds.",
    }),
  },
  metrics: {
    top_flows: int({
      default: 100,
      min: 0,
      max: 100000,
      description: "Busiest flows exported as labelled series (0: none).",
    }),
    interface_allow: list({
      default: [],
      description: "Interfaces whose metrics are exported (globs with * and ?); empty means all.",
      item: "pattern",
      itemExpected: GLOB_EXPECTED,
      check: checkGlob,
    }),
    interface_deny: list({
      default: [],
      description: "Interfaces whose metrics are not exported, even when allowed; empty: none.",
      item: "pattern",
      itemExpected: GLOB_EXPECTED,
      check: checkGlob,
    }),
  },
  export: {
    ipfix: {
      collectors: list({
        default: [],
        description: "IPFIX collectors (HOST:PORT, UDP) that get every flow; empty: no export.",
        item: "collector",
        itemExpected: HOST_PORT_EXPECTED,
        check(s) {
          const r = checkHostPort(s);
          return typeof r === "string" ? { what: `bad collector address: ${r}` } : undefined;
        },
      }),
      active_timeout_s: int({
        default: 60,
        min: 1,
        max: 86400,
        description: "A flow still active is exported (its counts since the last export) this " +
          "often, in seconds.",
      }),
      idle_timeout_s: int({
        default: 15,
        min: 1,
        max: 86400,
        description: "A flow silent this long, in seconds, is exported a last time and forgotten.",
      }),
      observation_domain_id: int({
        default: 1,
        min: 0,
        max: 4294967295,
        description: "The IPFIX observation domain of this box (tell boxes apart at a collector).",
      }),
      template_refresh_s: int({
        default: 300,
        min: 1,
        max: 86400,
        description: "Templates are sent again this often over UDP, in seconds (RFC 7011 10.3.6).",
      }),
      queue_max_records: int({
        default: 65536,
        min: 1,
        max: 16777216,
        description: "Flow records waiting for a collector; beyond it the oldest are dropped " +
          "and counted.",
      }),
    },
    remote_write: {
      url: string({
        default: "",
        description: "Prometheus remote-write receiver (https:// or http://); empty: no push.",
        expected: "an http:// or https:// URL, or empty",
        allowed: "http(s)://HOST[:PORT]/PATH, or empty",
        value: "URL",
        check(s) {
          if (s === "") return undefined;
          try {
            const u = new URL(s);
            return u.protocol === "http:" || u.protocol === "https:"
              ? undefined
              : { what: "not an http or https URL" };
          } catch {
            return { what: "not a URL" };
          }
        },
      }),
      interval_s: int({
        default: 15,
        min: 1,
        max: 3600,
        description: "How often the metrics are pushed, in seconds.",
      }),
      bearer_token_file: path({
        default: "",
        description: "File with a bearer token for the receiver; empty: none.",
        emptyMeans: "no bearer token",
      }),
      basic_auth_user: string({
        default: "",
        description: "User name for HTTP basic auth at the receiver; empty: none.",
        expected: "a user name",
        allowed: "any text without a colon, or empty",
        value: "USER",
        check: (s) => s.includes(":") ? { what: "a colon in the user name" } : undefined,
      }),
      basic_auth_password_file: path({
        default: "",
        description: "File with the password for basic auth.",
        emptyMeans: "no password",
      }),
      headers: list({
        default: [],
        description: "Extra HTTP headers for the receiver, as `Name: value`.",
        item: "header",
        itemExpected: "Name: value",
        check: (s) =>
          /^[A-Za-z0-9-]{1,64}: ?[^\r\n]{0,1024}$/.test(s)
            ? undefined
            : { what: "not Name: value" },
      }),
      timeout_s: int({
        default: 10,
        min: 1,
        max: 300,
        description: "Time allowed for one push, in seconds.",
      }),
      queue_max_samples: int({
        default: 200000,
        min: 1000,
        max: 100000000,
        description: "Samples waiting for the receiver; beyond it the oldest are dropped and " +
          "counted.",
      }),
      external_labels: list({
        default: [],
        description: "Labels added to every series, as `name=value`; `instance` defaults to " +
          "this box's name.",
        item: "label",
        itemExpected: "name=value",
        check: (s) =>
          /^[a-zA-Z_][a-zA-Z0-9_]*=.{0,256}$/.test(s) ? undefined : { what: "not name=value" },
      }),
    },
  },
};

/** A section of the schema: keys to fields or to nested sections. */
export interface Section {
  readonly [key: string]: Field<unknown> | Section;
}

type ConfigOf<S> = { -readonly [K in keyof S]: S[K] extends Field<infer V> ? V : ConfigOf<S[K]> };

/** The validated configuration: the YAML structure, keys as in the file. */
export type Config = ConfigOf<typeof SCHEMA>;

/** A key of the schema with the names it goes by outside the file. */
export interface KeyInfo {
  /** Dotted name, as in the file: `datapath.flow_table_size`. */
  key: string;
  path: string[];
  field: Field<unknown>;
  /** Environment variable: `X0TTA6BL4_DATAPATH_FLOW_TABLE_SIZE`. */
  env: string;
  /** Canonical flag without dashes: `datapath.flow-table-size`. */
  flag: string;
}

export const ENV_PREFIX = "X0TTA6BL4_";

function walk(section: Section, prefix: string[]): KeyInfo[] {
  return Object.entries(section).flatMap(([name, node]) => {
    const path = [...prefix, name];
    if (!(node instanceof Field)) return walk(node, path);
    const key = path.join(".");
    return [{
      key,
      path,
      field: node,
      env: ENV_PREFIX + key.replaceAll(".", "_").toUpperCase(),
      flag: key.replaceAll("_", "-"),
    }];
  });
}

/** Every key in schema order. */
export const KEYS: readonly KeyInfo[] = walk(SCHEMA as Section, []);

/** The field at `path` and the rest of the path below it (a list index), or the section. */
export function lookup(
  path: readonly PropertyKey[],
): { field: Field<unknown>; key: string; rest: PropertyKey[] } | { section: string[] } | undefined {
  let node: Field<unknown> | Section = SCHEMA as Section;
  for (let i = 0; i < path.length; i++) {
    if (node instanceof Field) return { field: node, key: path.slice(0, i).join("."), rest: [] };
    const seg = path[i];
    if (typeof seg !== "string" || !Object.hasOwn(node, seg)) return undefined;
    node = node[seg];
    if (node instanceof Field) {
      return { field: node, key: path.slice(0, i + 1).join("."), rest: path.slice(i + 1) };
    }
  }
  return { section: path.map(String) };
}

function build(section: Section, partial: boolean): z.ZodType {
  const shape: Record<string, z.ZodType> = {};
  for (const [name, node] of Object.entries(section)) {
    const s = node instanceof Field ? node.schema : build(node, partial);
    shape[name] = partial ? s.optional() : s;
  }
  const obj = z.strictObject(shape);
  // A section left empty in YAML (`api:` with everything commented out) is null.
  return partial ? z.preprocess((v) => (v === null ? {} : v), obj) : obj;
}

/** Validates one layer (a file): every key optional, unknown keys rejected. */
export const PARTIAL_SCHEMA: z.ZodType = build(SCHEMA as Section, true);

/** Validates a complete configuration, including the checks across keys. */
export const CONFIG_SCHEMA: z.ZodType<Config> = (build(SCHEMA as Section, false) as z.ZodType<
  Config
>).superRefine((c, ctx) => {
  const n = c.datapath.interfaces.length;
  if (n > c.datapath.max_interfaces) {
    ctx.addIssue({
      code: "custom",
      path: ["datapath", "interfaces"],
      message: "too many interfaces",
      params: {
        expected: `at most ${c.datapath.max_interfaces} (datapath.max_interfaces)`,
        got: String(n),
      },
    });
  }
});

function defaultsOf(section: Section): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(section).map((
      [k, node],
    ) => [k, node instanceof Field ? structuredClone(node.default) : defaultsOf(node)]),
  );
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === "object") {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** A fresh, mutable copy of the defaults. */
export function defaultConfig(): Config {
  return defaultsOf(SCHEMA as Section) as Config;
}

/** The defaults (frozen). */
export const DEFAULT_CONFIG: Config = deepFreeze(defaultConfig());

/** The API token file: `api.token_file`, or `<state_dir>/api-token` when that is empty. */
export function tokenFilePath(c: Config): string {
  return c.api.token_file || `${c.state_dir.replace(/\/+$/, "")}/api-token`;
}

/** The keys whose values differ between two configurations, in schema order. */
export function changedKeys(a: Config, b: Config): string[] {
  const at = (c: Config, path: readonly string[]) =>
    JSON.stringify(path.reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], c));
  return KEYS.filter((k) => at(a, k.path) !== at(b, k.path)).map((k) => k.key);
}
