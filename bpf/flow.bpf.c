// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Flow accounting for XDP and TC (ingress and egress).
 *
 * Per packet: parse L2 (up to two VLAN tags), L3 (IPv4 with options, IPv6 with extension
 * headers) and L4 headers without helpers, count the frame in a per-CPU per-interface record,
 * and update a per-CPU LRU flow table. Time comes from a global that a bpf_timer refreshes
 * every tick, so the hot path reads memory instead of calling bpf_ktime_get_ns().
 * Frames are never changed, and dropped only by an enforcement action (x0_enforce, written by
 * the MAPE-K loop in enforce mode): otherwise XDP returns XDP_PASS and TC returns TC_ACT_UNSPEC
 * so that later filters (someone else's) still run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "x0tta6bl4.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2
/* IPv6 next-header values that vmlinux.h does not carry (they are macros in the kernel). */
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_MH 135
#define EEXIST 17
#define X0_MAX_EXT_HEADERS 6
#define NSEC_PER_SEC 1000000000ULL

/* Settable before load (the .rodata map). */
const volatile __u64 x0_clock_tick_ns = 10 * 1000 * 1000;
const volatile __u32 x0_event_rate = 1000; /* new-flow events per second, per CPU and interface */

/* Refreshed by the timer; 0 until the first packet arms it. */
volatile __u64 x0_clock_ns = 0;

/* Puts the ring buffer record into the object's BTF (ring buffers carry no value type), so
 * tests/unit/layout_test.ts can check its TypeScript mirror. */
struct x0_flow_event *x0_flow_event_btf __attribute__((unused));

struct x0_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct x0_timer);
} x0_clock SEC(".maps");

/* ifindex -> slot; both array lookups below are inlined by the verifier. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, X0_DEFAULT_IFINDEX_LIMIT);
	__type(key, __u32);
	__type(value, __u32);
} x0_ifslot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, X0_DEFAULT_SLOTS * X0_HOOK_COUNT);
	__type(key, __u32);
	__type(value, struct x0_iface_stats);
} x0_ifstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct x0_flow_cache);
} x0_flowcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct x0_flow_key);
	__type(value, struct x0_flow_value);
} x0_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct x0_runtime);
} x0_runtime SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, X0_ENFORCE_MAX_ENTRIES);
	__type(key, struct x0_enforce_key);
	__type(value, struct x0_enforce_value);
} x0_enforce SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} x0_events SEC(".maps");

static int x0_tick(void *map, __u32 *key, struct x0_timer *t)
{
	x0_clock_ns = bpf_ktime_get_ns();
	bpf_timer_start(&t->timer, x0_clock_tick_ns, 0);
	return 0;
}

static __always_inline __u64 x0_now(void)
{
	__u64 now = x0_clock_ns;
	__u32 zero = 0;
	struct x0_timer *t;

	if (now)
		return now;
	/* First packet since load: start the clock. A concurrent arm gets -EBUSY, harmlessly. */
	now = bpf_ktime_get_ns();
	x0_clock_ns = now;
	t = bpf_map_lookup_elem(&x0_clock, &zero);
	if (t && bpf_timer_init(&t->timer, &x0_clock, 1 /* CLOCK_MONOTONIC */) == 0) {
		bpf_timer_set_callback(&t->timer, x0_tick);
		bpf_timer_start(&t->timer, x0_clock_tick_ns, 0);
	}
	return now;
}

struct x0_parsed {
	struct x0_flow_key key;
	__u32 cls;
	__s32 malformed; /* enum x0_malformed, or -1 */
	__u8 tcp_flags;
	__u8 fragment;
	__u8 vlan;
};

struct x0_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct x0_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

/* Class offset of an L4 protocol within its family: TCP 0, UDP 1, ICMP 2, other 3. `icmp` is
 * the family's ICMP protocol number, so ICMPv6 inside IPv4 (or ICMP inside IPv6) is "other". */
static __always_inline int x0_l4_class(__u8 proto, __u8 icmp)
{
	if (proto == IPPROTO_TCP)
		return 0;
	if (proto == IPPROTO_UDP)
		return 1;
	if (proto == icmp)
		return 2;
	return 3;
}

/* Reads the ports (ICMP: type and code) of the L4 header at p; -1 when it is cut short. */
static __always_inline int x0_parse_l4(void *p, void *end, int l4, struct x0_parsed *r)
{
	if (l4 == 0) {
		struct tcphdr *th = p;

		if ((void *)(th + 1) > end)
			return -1;
		r->key.sport = th->source;
		r->key.dport = th->dest;
		r->tcp_flags = ((__u8 *)th)[13];
	} else if (l4 == 1) {
		struct udphdr *uh = p;

		if ((void *)(uh + 1) > end)
			return -1;
		r->key.sport = uh->source;
		r->key.dport = uh->dest;
	} else if (l4 == 2) {
		__u8 *ih = p;

		if ((void *)(ih + 2) > end)
			return -1;
		r->key.sport = bpf_htons(ih[0]);
		r->key.dport = bpf_htons(ih[1]);
	}
	return 0;
}

/*
 * IPv4 total length 0 on a GSO TCP packet: BIG TCP (beyond 64 KiB, up to gso_ipv4_max_size)
 * leaves the length to the skb, as the kernel's iph_totlen() reads it. Only TC can be handed
 * one; on XDP (`skb` NULL) a total length of 0 stays malformed, as the stack would drop it.
 */
static __always_inline int x0_big_tcp(struct iphdr *ip, __u32 tot_len, struct __sk_buff *skb)
{
	return skb && tot_len == 0 && ip->protocol == IPPROTO_TCP && skb->gso_size;
}

static __always_inline void x0_parse_ipv4(void *p, void *end, __u32 l3_len, struct x0_parsed *r,
					  struct __sk_buff *skb)
{
	struct iphdr *ip = p;
	__u32 ihl, tot_len;
	int l4;

	if ((void *)(ip + 1) > end) {
		r->malformed = X0_MAL_L3_TRUNCATED;
		return;
	}
	if (ip->version != 4) {
		r->malformed = X0_MAL_IP_VERSION;
		return;
	}
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip)) {
		r->malformed = X0_MAL_IPV4_IHL;
		return;
	}
	if (p + ihl > end) { /* options cut short */
		r->malformed = X0_MAL_L3_TRUNCATED;
		return;
	}
	tot_len = bpf_ntohs(ip->tot_len);
	if ((tot_len < ihl || tot_len > l3_len) && !x0_big_tcp(ip, tot_len, skb)) {
		r->malformed = X0_MAL_IP_LENGTH;
		return;
	}
	r->key.family = 4;
	r->key.proto = ip->protocol;
	__builtin_memcpy(r->key.saddr, &ip->saddr, 4);
	__builtin_memcpy(r->key.daddr, &ip->daddr, 4);
	l4 = x0_l4_class(ip->protocol, IPPROTO_ICMP);
	r->cls = X0_CLASS_IPV4_TCP + l4;
	if (ip->frag_off & bpf_htons(0x3fff)) { /* MF set or offset non-zero: no ports */
		r->fragment = 1;
		return;
	}
	if (x0_parse_l4(p + ihl, end, l4, r) < 0)
		r->malformed = X0_MAL_L4_TRUNCATED;
}

static __always_inline int x0_is_ext_header(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH || nh == IPPROTO_MH;
}

static __always_inline void x0_parse_ipv6(void *p, void *end, __u32 l3_len, struct x0_parsed *r)
{
	struct ipv6hdr *ip6 = p;
	__u32 hlen;
	__u8 nh;
	int l4;

	if ((void *)(ip6 + 1) > end) {
		r->malformed = X0_MAL_L3_TRUNCATED;
		return;
	}
	if (ip6->version != 6) {
		r->malformed = X0_MAL_IP_VERSION;
		return;
	}
	if (bpf_ntohs(ip6->payload_len) + sizeof(*ip6) > l3_len) {
		r->malformed = X0_MAL_IP_LENGTH;
		return;
	}
	r->key.family = 6;
	__builtin_memcpy(r->key.saddr, &ip6->saddr, 16);
	__builtin_memcpy(r->key.daddr, &ip6->daddr, 16);
	nh = ip6->nexthdr;
	p = ip6 + 1;

#pragma unroll
	for (int i = 0; i < X0_MAX_EXT_HEADERS; i++) {
		struct x0_opt_hdr *oh = p;

		if (!x0_is_ext_header(nh))
			break;
		if (nh == IPPROTO_FRAGMENT) {
			struct x0_frag_hdr *fh = p;

			if ((void *)(fh + 1) > end) {
				r->malformed = X0_MAL_L3_TRUNCATED;
				return;
			}
			r->fragment = 1;
			r->key.proto = fh->nexthdr;
			r->cls = X0_CLASS_IPV6_TCP + x0_l4_class(fh->nexthdr, IPPROTO_ICMPV6);
			return;
		}
		if ((void *)(oh + 1) > end) {
			r->malformed = X0_MAL_L3_TRUNCATED;
			return;
		}
		/* AH counts its length in 4-byte units minus 2, the others in 8-byte units minus 1. */
		if (nh == IPPROTO_AH)
			hlen = ((__u32)oh->hdrlen + 2) * 4;
		else
			hlen = ((__u32)oh->hdrlen + 1) * 8;
		if (p + hlen > end) {
			r->malformed = X0_MAL_L3_TRUNCATED;
			return;
		}
		nh = oh->nexthdr;
		p += hlen;
	}
	if (x0_is_ext_header(nh)) {
		r->malformed = X0_MAL_EXT_HEADERS;
		return;
	}
	r->key.proto = nh;
	l4 = x0_l4_class(nh, IPPROTO_ICMPV6);
	r->cls = X0_CLASS_IPV6_TCP + l4;
	if (x0_parse_l4(p, end, l4, r) < 0)
		r->malformed = X0_MAL_L4_TRUNCATED;
}

/* Parses a frame of `len` bytes; `skb` is the TC context, NULL on XDP. */
static __always_inline void x0_parse(void *data, void *end, __u32 len, struct x0_parsed *r,
				     struct __sk_buff *skb)
{
	struct ethhdr *eth = data;
	void *p;
	__u16 proto;

	if ((void *)(eth + 1) > end) {
		r->malformed = X0_MAL_L2_TRUNCATED;
		return;
	}
	proto = eth->h_proto;
	p = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
			struct vlan_hdr *vh = p;

			if ((void *)(vh + 1) > end) {
				r->malformed = X0_MAL_L2_TRUNCATED;
				return;
			}
			r->vlan = 1;
			proto = vh->h_vlan_encapsulated_proto;
			p = vh + 1;
		}
	}
	if (proto == bpf_htons(ETH_P_IP))
		x0_parse_ipv4(p, end, len - (p - data), r, skb);
	else if (proto == bpf_htons(ETH_P_IPV6))
		x0_parse_ipv6(p, end, len - (p - data), r);
}

static __always_inline void x0_emit(struct x0_iface_stats *st, struct x0_parsed *r, __u64 now,
				    __u32 len)
{
	struct x0_flow_event *e;
	struct x0_runtime *rt;
	__u32 zero = 0, rate = x0_event_rate;

	rt = bpf_map_lookup_elem(&x0_runtime, &zero);
	if (rt && rt->event_rate_shift)
		rate >>= rt->event_rate_shift & 31;

	if (now - st->rate_window_ns >= NSEC_PER_SEC) {
		st->rate_window_ns = now;
		st->rate_window_count = 0;
	}
	if (st->rate_window_count >= rate) {
		st->events_suppressed++;
		return;
	}
	st->rate_window_count++;
	e = bpf_ringbuf_reserve(&x0_events, sizeof(*e), 0);
	if (!e) {
		st->events_lost++;
		return;
	}
	e->ts_ns = now;
	e->key = r->key;
	e->pkt_len = len;
	e->type = X0_EVENT_NEW_FLOW;
	e->tcp_flags = r->tcp_flags;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
	st->events_sent++;
}

/* Adds one packet to a flow table entry that exists. */
static __always_inline void x0_add(struct x0_flow_value *fv, __u64 packets, __u64 bytes,
				   __u64 now, __u8 flags)
{
	fv->packets += packets;
	fv->bytes += bytes;
	fv->last_seen_ns = now;
	fv->tcp_flags |= flags;
	if (!fv->first_seen_ns) /* first packet of this flow on this CPU */
		fv->first_seen_ns = now;
}

/* Moves what the cache holds for its flow into the flow table. */
static __always_inline void x0_flush(struct x0_flow_cache *c, struct x0_iface_stats *st)
{
	struct x0_flow_value *fv;

	if (!c->pending.packets)
		return;
	fv = bpf_map_lookup_elem(&x0_flows, &c->key);
	if (fv)
		x0_add(fv, c->pending.packets, c->pending.bytes, c->pending.last_seen_ns,
		       c->pending.tcp_flags);
	else if (bpf_map_update_elem(&x0_flows, &c->key, &c->pending, BPF_NOEXIST) == 0)
		st->flows_created++; /* evicted meanwhile: back with what the cache held */
	c->pending.packets = 0;
	c->pending.bytes = 0;
	c->pending.tcp_flags = 0;
}

static __always_inline int x0_same_key(const struct x0_flow_key *a, const struct x0_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	/* 44 bytes: five 8-byte words and the last 4 bytes (ifindex is 4-aligned at 36). */
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]) |
		(__u64)(((const __u32 *)a)[10] ^ ((const __u32 *)b)[10])) == 0;
}

/* Counts one parsed frame of `len` bytes: interface counters, flow cache and flow table.
 * Returns the flow cache entry that now holds the frame's flow, if any. */
static __always_inline struct x0_flow_cache *x0_count(struct x0_parsed *r, __u32 len,
						       __u32 ifindex, __u32 hook)
{
	struct x0_iface_stats *st;
	struct x0_flow_cache *c;
	struct x0_flow_value *fv;
	__u32 idx, *slot;
	__u64 now;
	long err;

	slot = bpf_map_lookup_elem(&x0_ifslot, &ifindex);
	idx = (slot ? *slot : 0) * X0_HOOK_COUNT + hook;
	st = bpf_map_lookup_elem(&x0_ifstats, &idx);
	if (!st) { /* slot beyond the table: count under slot 0 */
		idx = hook;
		st = bpf_map_lookup_elem(&x0_ifstats, &idx);
		if (!st)
			return 0;
	}
	if (r->malformed >= 0) {
		if (r->malformed < X0_MAL_COUNT)
			st->malformed[r->malformed]++;
		r->cls = X0_CLASS_MALFORMED;
	}
	if (r->cls < X0_CLASS_COUNT) {
		st->classes[r->cls].packets++;
		st->classes[r->cls].bytes += len;
	}
	if (r->vlan)
		st->vlan_tagged++;
	if (r->cls == X0_CLASS_NON_IP || r->cls == X0_CLASS_MALFORMED)
		return 0;
	if (r->fragment)
		st->fragments++;

	r->key.ifindex = ifindex;
	r->key.hook = hook;
	now = x0_now();
	c = bpf_map_lookup_elem(&x0_flowcache, &idx);
	if (!c)
		return 0;
	if (x0_same_key(&c->key, &r->key)) {
		c->pending.packets++;
		c->pending.bytes += len;
		c->pending.last_seen_ns = now;
		c->pending.tcp_flags |= r->tcp_flags;
		return c;
	}
	x0_flush(c, st);
	c->key = r->key;
	c->enforce_gen = 0;
	c->pending.fragment = r->fragment;
	c->pending.first_seen_ns = now;
	c->pending.last_seen_ns = now;

	fv = bpf_map_lookup_elem(&x0_flows, &r->key);
	if (fv) {
		x0_add(fv, 1, len, now, r->tcp_flags);
		return c;
	}

	struct x0_flow_value nv = {
		.packets = 1,
		.bytes = len,
		.first_seen_ns = now,
		.last_seen_ns = now,
		.tcp_flags = r->tcp_flags,
		.fragment = r->fragment,
	};
	err = bpf_map_update_elem(&x0_flows, &r->key, &nv, BPF_NOEXIST);
	if (err == -EEXIST) { /* another CPU inserted it first */
		fv = bpf_map_lookup_elem(&x0_flows, &r->key);
		if (fv)
			x0_add(fv, 1, len, now, r->tcp_flags);
		return c;
	}
	if (err) {
		st->flow_insert_failed++;
		return c;
	}
	st->flows_created++;
	if (x0_event_rate)
		x0_emit(st, r, now, len);
	return c;
}

/* Index of an address in the enforcement prefilter: its 32-bit words XOR-folded (IPv4: the
 * one word), then a multiplicative hash; user space computes the same (enforceFilterIndex). */
static __always_inline __u32 x0_addr_hash(const __u8 *addr, __u8 family)
{
	const __u32 *w = (const __u32 *)addr;
	__u32 x = w[0];

	if (family == 6)
		x ^= w[1] ^ w[2] ^ w[3];
	return (x * 0x9E3779B1u) >> (32 - X0_ENFORCE_FILTER_BITS);
}

/*
 * The enforcement check on ingress: 1 when an action in x0_enforce drops the frame. Costs one
 * inlined array read while no action is live; with actions, a flow whose source had none is
 * remembered in the flow cache (per generation of x0_enforce), and a source whose bit is clear
 * in the prefilter has no rule: only sources that share a bit with a rule's source do the hash
 * lookup. The frame was counted before: accounting sees what is dropped.
 */
static __always_inline int x0_enforced(struct x0_parsed *r, struct x0_flow_cache *c, __u32 len)
{
	struct x0_enforce_key k = {};
	struct x0_enforce_value *v;
	struct x0_runtime *rt;
	__u32 zero = 0, h;
	__u64 now;

#ifdef X0_NO_ENFORCE /* the benchmark's baseline (bench/run.ts enforce): accounting alone */
	return 0;
#endif
	rt = bpf_map_lookup_elem(&x0_runtime, &zero);
	if (!rt || !rt->enforce_entries || !r->key.family)
		return 0;
	if (c && c->enforce_gen == rt->enforce_gen)
		return 0;
	h = x0_addr_hash(r->key.saddr, r->key.family);
	if (!(rt->enforce_filter[h >> 6] & (1ULL << (h & 63)))) {
		if (c)
			c->enforce_gen = rt->enforce_gen;
		return 0;
	}
	__builtin_memcpy(k.addr, r->key.saddr, 16);
	k.family = r->key.family;
	v = bpf_map_lookup_elem(&x0_enforce, &k);
	now = x0_now();
	if (!v || (v->expires_ns && now >= v->expires_ns)) {
		if (c)
			c->enforce_gen = rt->enforce_gen;
		return 0;
	}
	if (v->kind == X0_ENFORCE_RATE_LIMIT) {
		__u64 allowance = v->rate_pps / 10;

		if (now - v->window_ns >= X0_ENFORCE_WINDOW_NS) { /* racy across CPUs: at worst a
								   * window lets a few more through */
			v->window_ns = now;
			v->window_count = 0;
		}
		if (v->window_count < (allowance ? allowance : 1)) {
			__sync_fetch_and_add(&v->window_count, 1);
			__sync_fetch_and_add(&v->passed_packets, 1);
			return 0;
		}
	}
	__sync_fetch_and_add(&v->dropped_packets, 1);
	__sync_fetch_and_add(&v->dropped_bytes, len);
	return 1;
}


SEC("xdp")
int x0_xdp(struct xdp_md *ctx)
{
	struct x0_parsed r = { .cls = X0_CLASS_NON_IP, .malformed = -1 };
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 len = (__u64)(end - data);

	struct x0_flow_cache *c;

	x0_parse(data, end, len, &r, 0);
	c = x0_count(&r, len, ctx->ingress_ifindex, X0_HOOK_XDP);
	return x0_enforced(&r, c, len) ? XDP_DROP : XDP_PASS;
}

static __always_inline int x0_truncated(struct x0_parsed *r)
{
	return r->malformed == X0_MAL_L2_TRUNCATED || r->malformed == X0_MAL_L3_TRUNCATED ||
	       r->malformed == X0_MAL_L4_TRUNCATED;
}

static __always_inline int x0_tc(struct __sk_buff *skb, __u32 hook)
{
	struct x0_flow_cache *c;
	struct x0_parsed r = { .cls = X0_CLASS_NON_IP, .malformed = -1 };
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	x0_parse(data, end, skb->len, &r, skb);
	/* Headers beyond the linear part of a non-linear skb: pull them (rare) and parse again. */
	if (x0_truncated(&r) && skb->len > (__u64)(end - data)) {
		bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		__builtin_memset(&r, 0, sizeof(r));
		r.cls = X0_CLASS_NON_IP;
		r.malformed = -1;
		x0_parse(data, end, skb->len, &r, skb);
	}
	c = x0_count(&r, skb->len, skb->ifindex, hook);
	if (hook == X0_HOOK_TC_INGRESS && x0_enforced(&r, c, skb->len))
		return TC_ACT_SHOT;
	return TC_ACT_UNSPEC;
}

SEC("tc")
int x0_tc_ingress(struct __sk_buff *skb)
{
	return x0_tc(skb, X0_HOOK_TC_INGRESS);
}

SEC("tc")
int x0_tc_egress(struct __sk_buff *skb)
{
	return x0_tc(skb, X0_HOOK_TC_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
