/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The structs and constants that cross the kernel/user-space boundary, defined once.
 * ffi/layout.ts mirrors them; tests/unit/layout_test.ts checks that mirror against the BTF of
 * the compiled objects, so a change here that the TypeScript side misses fails the tests.
 */
#ifndef X0TTA6BL4_H
#define X0TTA6BL4_H

/* Where a program is attached. */
enum x0_hook {
	X0_HOOK_XDP = 0,
	X0_HOOK_TC_INGRESS = 1,
	X0_HOOK_TC_EGRESS = 2,
	X0_HOOK_COUNT = 3,
};

/* Traffic classes counted per interface and hook: L3 family times L4 protocol. */
enum x0_class {
	X0_CLASS_IPV4_TCP = 0,
	X0_CLASS_IPV4_UDP = 1,
	X0_CLASS_IPV4_ICMP = 2,
	X0_CLASS_IPV4_OTHER = 3,
	X0_CLASS_IPV6_TCP = 4,
	X0_CLASS_IPV6_UDP = 5,
	X0_CLASS_IPV6_ICMP = 6,
	X0_CLASS_IPV6_OTHER = 7,
	X0_CLASS_NON_IP = 8,
	X0_CLASS_MALFORMED = 9,
	X0_CLASS_COUNT = 10,
};

/* Why a frame was counted as malformed (it is still passed on, never dropped). */
enum x0_malformed {
	X0_MAL_L2_TRUNCATED = 0,   /* shorter than an Ethernet header or a VLAN tag */
	X0_MAL_L3_TRUNCATED = 1,   /* IP header (with options or extension headers) cut short */
	X0_MAL_IP_VERSION = 2,     /* version nibble disagrees with the EtherType */
	X0_MAL_IPV4_IHL = 3,       /* IHL below 5 */
	X0_MAL_IP_LENGTH = 4,      /* IP total/payload length beyond the frame, or below the header */
	X0_MAL_L4_TRUNCATED = 5,   /* TCP/UDP/ICMP header cut short */
	X0_MAL_EXT_HEADERS = 6,    /* more IPv6 extension headers than we walk */
	X0_MAL_COUNT = 7,
};

enum x0_event_type {
	X0_EVENT_NEW_FLOW = 1,
};

/* Interfaces are counted in slots: x0_ifslot maps an ifindex to a slot that user space
 * assigned on attach; x0_ifstats holds X0_HOOK_COUNT records per slot. Slot 0 counts every
 * interface that has none (e.g. BPF_PROG_TEST_RUN on the loopback). */
#define X0_DEFAULT_SLOTS 64
#define X0_DEFAULT_IFINDEX_LIMIT 32768

struct x0_counter {
	__u64 packets;
	__u64 bytes;
};

/* Per-CPU value of the x0_ifstats map (index slot * X0_HOOK_COUNT + hook): user space sums
 * the CPUs. */
struct x0_iface_stats {
	struct x0_counter classes[X0_CLASS_COUNT];
	__u64 malformed[X0_MAL_COUNT];
	__u64 fragments;          /* IPv4 or IPv6 fragments (their flows carry no ports) */
	__u64 vlan_tagged;        /* frames that carried one or two 802.1Q/802.1ad tags */
	__u64 flows_created;      /* flow entries inserted; evictions = created - present */
	__u64 flow_insert_failed; /* flow entries the kernel refused to insert */
	__u64 events_sent;        /* events written to the ring buffer */
	__u64 events_suppressed;  /* events not sent because of the rate limit */
	__u64 events_lost;        /* events that could not be reserved: ring buffer full */
	__u64 rate_window_ns;     /* rate limiter state: start of the current window */
	__u64 rate_window_count;  /* rate limiter state: events sent in that window */
};

/* Flow table key: one entry per 5-tuple, interface and hook. Addresses and ports are in
 * network byte order as on the wire; IPv4 addresses use the first 4 bytes. For ICMP and
 * ICMPv6, sport carries the type and dport the code. Fragments carry no ports. */
struct x0_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 proto;  /* IP protocol number (the one after IPv6 extension headers) */
	__u8 family; /* 4 or 6 */
	__u8 hook;   /* enum x0_hook */
	__u8 pad;
};

/* Per-CPU value of the x0_flows map. Times are CLOCK_MONOTONIC nanoseconds at the
 * resolution of the datapath clock tick. */
struct x0_flow_value {
	__u64 packets;
	__u64 bytes;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u8 tcp_flags; /* OR of the TCP flags byte of every packet */
	__u8 fragment;  /* 1 when the flow is made of IP fragments */
	__u8 pad[6];
};

/* Per-CPU one-entry flow cache: consecutive packets of one flow on one CPU add up here and
 * reach x0_flows when another flow comes along. User space adds `pending` to the flow's
 * totals when it reads, so nothing waits unseen. */
struct x0_flow_cache {
	struct x0_flow_key key;
	__u32 enforce_gen; /* x0_runtime.enforce_gen at which key's source had no action (0: unchecked) */
	struct x0_flow_value pending;
};

/* Ring buffer record. */
struct x0_flow_event {
	__u64 ts_ns;
	struct x0_flow_key key;
	__u32 pkt_len;
	__u8 type; /* enum x0_event_type */
	__u8 tcp_flags;
	__u16 pad;
};

/* ---- enforcement: the actions of the MAPE-K loop (bpf/flow.bpf.c) ----------------------------- */

enum x0_enforce_kind {
	X0_ENFORCE_BLOCK = 1,      /* drop every packet from the source */
	X0_ENFORCE_RATE_LIMIT = 2, /* let rate_pps through, in 100 ms windows of rate_pps / 10 */
};

#define X0_ENFORCE_WINDOW_NS (100 * 1000 * 1000ULL)
#define X0_ENFORCE_MAX_ENTRIES 4096

/* A source address on ingress (XDP or TC ingress). IPv4 uses the first 4 bytes. */
struct x0_enforce_key {
	__u8 addr[16];
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
};

struct x0_enforce_value {
	__u64 expires_ns;      /* CLOCK_MONOTONIC: the entry stops acting then, even with nobody to
				* remove it (0: never) */
	__u64 rate_pps;        /* X0_ENFORCE_RATE_LIMIT: packets per second let through */
	__u64 window_ns;       /* rate-limit state: start of the current window */
	__u64 window_count;    /* packets let through in that window */
	__u64 dropped_packets; /* what the action dropped */
	__u64 dropped_bytes;
	__u64 passed_packets;  /* rate limit: what it let through */
	__u32 kind;            /* enum x0_enforce_kind */
	__u32 pad;
};

/* The enforcement prefilter: bit h is set when some rule's source address hashes to h
 * (x0_addr_hash in flow.bpf.c, enforceFilterIndex in src/datapath/enforce.ts), so most packets
 * from sources without a rule skip the hash lookup. */
#define X0_ENFORCE_FILTER_BITS 16

/* Settings user space changes while the programs run (one entry, read on every packet). */
struct x0_runtime {
	__u32 enforce_entries;  /* live entries in x0_enforce; 0 skips the check entirely */
	__u32 enforce_gen;      /* bumped at every change of x0_enforce (never 0) */
	__u32 event_rate_shift; /* new-flow events: x0_event_rate >> shift per second (sampling) */
	__u32 pad;
	__u64 enforce_filter[(1 << X0_ENFORCE_FILTER_BITS) / 64];
};

/* ---- kernel signals (bpf/signals.bpf.c) ---------------------------------------------------- */

/* Drops per interface and reason (enum skb_drop_reason of the running kernel). A drop whose
 * interface cannot be told (no device, nor arrival interface in a known namespace) counts under
 * X0_IFINDEX_UNKNOWN, which no interface has. */
#define X0_IFINDEX_UNKNOWN 0
struct x0_drop_key {
	__u32 ifindex;
	__u32 reason;
};

/* A transport flow as the local socket sees it (source = this host for TCP signals; for drops
 * as the packet said). Ports in network byte order. */
struct x0_sig_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct x0_sig_value {
	__u64 drops;
	__u64 retransmits;
	__u64 rtt_samples;
	__u32 srtt_us;  /* the socket's smoothed RTT at the last sample */
	__u32 ifindex;  /* where it was last seen */
	__u32 last_drop_reason;
	__u32 pad;
};

/* Drops per flow are kept for at most X0_DROP_FLOWS flows (x0_dropflows, LRU, same key and
 * value as x0_sigflows). A flow enters at its first drop while fewer than X0_DROP_FLOW_BUDGET
 * flows entered in the current epoch (2^30 ns, about a second); beyond that (a scan, a flood
 * of one-packet flows), only once a count-min sketch of X0_DROP_SKETCH_ROWS rows of
 * X0_DROP_SKETCH_WIDTH cells estimates X0_DROP_FLOW_MIN of its drops, within the current and,
 * halved, the previous epoch. Its drops then start from that estimate. */
#define X0_DROP_FLOWS 1024
#define X0_DROP_FLOW_BUDGET 128
#define X0_DROP_FLOW_MIN 8
#define X0_DROP_SKETCH_ROWS 2
#define X0_DROP_SKETCH_WIDTH 65536

/* RTT histogram per interface: bucket b counts samples with 2^b <= srtt_us < 2^(b+1). */
#define X0_RTT_BUCKETS 24
struct x0_rtt_key {
	__u32 ifindex;
	__u32 bucket;
};

#endif
