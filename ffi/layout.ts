/**
 * TypeScript mirror of bpf/x0tta6bl4.h: byte offsets and sizes of the structs that cross the
 * kernel/user-space boundary, and the values of its enums. tests/unit/layout_test.ts checks
 * every number here against the BTF of the compiled object and the header.
 */

/** A struct's size and, per member, [offset, size] in bytes. */
export interface StructLayout {
  readonly name: string;
  readonly size: number;
  readonly members: Readonly<Record<string, readonly [offset: number, size: number]>>;
}

export const Hook = { xdp: 0, tcIngress: 1, tcEgress: 2 } as const;
export type HookName = keyof typeof Hook;
export const HOOK_NAMES: readonly HookName[] = ["xdp", "tcIngress", "tcEgress"];

/** enum x0_class, in order. */
export const CLASSES = [
  "ipv4_tcp",
  "ipv4_udp",
  "ipv4_icmp",
  "ipv4_other",
  "ipv6_tcp",
  "ipv6_udp",
  "ipv6_icmp",
  "ipv6_other",
  "non_ip",
  "malformed",
] as const;
export type ClassName = typeof CLASSES[number];

/** enum x0_malformed, in order. */
export const MALFORMED_REASONS = [
  "l2_truncated",
  "l3_truncated",
  "ip_version",
  "ipv4_ihl",
  "ip_length",
  "l4_truncated",
  "ext_headers",
] as const;
export type MalformedReason = typeof MALFORMED_REASONS[number];

export const EVENT_NEW_FLOW = 1;

/** #defines of the header: default slot count and ifindex limit (both settable at load). */
export const DEFAULT_SLOTS = 64;
export const DEFAULT_IFINDEX_LIMIT = 32768;

const MAL_OFF = 16 * CLASSES.length;
const TAIL_OFF = MAL_OFF + 8 * MALFORMED_REASONS.length;

export const IFACE_STATS: StructLayout = {
  name: "x0_iface_stats",
  size: TAIL_OFF + 9 * 8,
  members: {
    classes: [0, 16 * CLASSES.length],
    malformed: [MAL_OFF, 8 * MALFORMED_REASONS.length],
    fragments: [TAIL_OFF, 8],
    vlan_tagged: [TAIL_OFF + 8, 8],
    flows_created: [TAIL_OFF + 16, 8],
    flow_insert_failed: [TAIL_OFF + 24, 8],
    events_sent: [TAIL_OFF + 32, 8],
    events_suppressed: [TAIL_OFF + 40, 8],
    events_lost: [TAIL_OFF + 48, 8],
    rate_window_ns: [TAIL_OFF + 56, 8],
    rate_window_count: [TAIL_OFF + 64, 8],
  },
};

export const FLOW_KEY: StructLayout = {
  name: "x0_flow_key",
  size: 44,
  members: {
    saddr: [0, 16],
    daddr: [16, 16],
    sport: [32, 2],
    dport: [34, 2],
    ifindex: [36, 4],
    proto: [40, 1],
    family: [41, 1],
    hook: [42, 1],
    pad: [43, 1],
  },
};

export const FLOW_VALUE: StructLayout = {
  name: "x0_flow_value",
  size: 40,
  members: {
    packets: [0, 8],
    bytes: [8, 8],
    first_seen_ns: [16, 8],
    last_seen_ns: [24, 8],
    tcp_flags: [32, 1],
    fragment: [33, 1],
    pad: [34, 6],
  },
};

export const FLOW_CACHE: StructLayout = {
  name: "x0_flow_cache",
  size: 88,
  members: { key: [0, 44], enforce_gen: [44, 4], pending: [48, 40] },
};

/** enum x0_enforce_kind */
export const ENFORCE_KIND = { block: 1, rateLimit: 2 } as const;

export const ENFORCE_KEY: StructLayout = {
  name: "x0_enforce_key",
  size: 20,
  members: { addr: [0, 16], family: [16, 1], pad: [17, 3] },
};

export const ENFORCE_VALUE: StructLayout = {
  name: "x0_enforce_value",
  size: 64,
  members: {
    expires_ns: [0, 8],
    rate_pps: [8, 8],
    window_ns: [16, 8],
    window_count: [24, 8],
    dropped_packets: [32, 8],
    dropped_bytes: [40, 8],
    passed_packets: [48, 8],
    kind: [56, 4],
    pad: [60, 4],
  },
};

/** #define X0_ENFORCE_FILTER_BITS: the enforcement prefilter has 2^bits bits. */
export const ENFORCE_FILTER_BITS = 16;

export const RUNTIME: StructLayout = {
  name: "x0_runtime",
  size: 16 + (1 << ENFORCE_FILTER_BITS) / 8,
  members: {
    enforce_entries: [0, 4],
    enforce_gen: [4, 4],
    event_rate_shift: [8, 4],
    pad: [12, 4],
    enforce_filter: [16, (1 << ENFORCE_FILTER_BITS) / 8],
  },
};

export const FLOW_EVENT: StructLayout = {
  name: "x0_flow_event",
  size: 64,
  members: {
    ts_ns: [0, 8],
    key: [8, 44],
    pkt_len: [52, 4],
    type: [56, 1],
    tcp_flags: [57, 1],
    pad: [58, 2],
  },
};

export const LAYOUTS: readonly StructLayout[] = [
  IFACE_STATS,
  FLOW_KEY,
  FLOW_VALUE,
  FLOW_CACHE,
  FLOW_EVENT,
  ENFORCE_KEY,
  ENFORCE_VALUE,
  RUNTIME,
];

// ---- kernel signals (bpf/signals.bpf.c) -------------------------------------------------------

/** #define X0_IFINDEX_UNKNOWN: the ifindex of drops whose interface the kernel cannot tell. */
export const IFINDEX_UNKNOWN = 0;

export const DROP_KEY: StructLayout = {
  name: "x0_drop_key",
  size: 8,
  members: { ifindex: [0, 4], reason: [4, 4] },
};

export const SIG_KEY: StructLayout = {
  name: "x0_sig_key",
  size: 40,
  members: {
    saddr: [0, 16],
    daddr: [16, 16],
    sport: [32, 2],
    dport: [34, 2],
    proto: [36, 1],
    family: [37, 1],
    pad: [38, 2],
  },
};

export const SIG_VALUE: StructLayout = {
  name: "x0_sig_value",
  size: 40,
  members: {
    drops: [0, 8],
    retransmits: [8, 8],
    rtt_samples: [16, 8],
    srtt_us: [24, 4],
    ifindex: [28, 4],
    last_drop_reason: [32, 4],
    pad: [36, 4],
  },
};

export const RTT_KEY: StructLayout = {
  name: "x0_rtt_key",
  size: 8,
  members: { ifindex: [0, 4], bucket: [4, 4] },
};

/** #define X0_RTT_BUCKETS: bucket b holds 2^b <= srtt_us < 2^(b+1). */
export const RTT_BUCKET_COUNT = 24;

export const SIGNAL_LAYOUTS: readonly StructLayout[] = [DROP_KEY, SIG_KEY, SIG_VALUE, RTT_KEY];
