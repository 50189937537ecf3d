// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Why packets die and how TCP fares, from the kernel itself:
 *  - skb:kfree_skb (tp_btf): drops per interface and reason, real drops only (not "consumed"),
 *    and per flow for a bounded set of flows: those that drop most (see X0_DROP_FLOWS);
 *  - tcp:tcp_retransmit_skb: retransmits per flow;
 *  - tcp:tcp_probe: the socket's smoothed RTT per flow, and a histogram per interface.
 * Each program is attached on its own, so one missing hook does not take the others down.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "x0tta6bl4.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Only this network namespace (its inode number), set before load; 0: every namespace. */
const volatile __u32 x0_netns_ino = 0;
/* tcp_probe fires on every received segment; the socket's srtt is already smoothed, so one
 * segment in 2^x0_rtt_sample_shift, chosen at random (a counter would alias with flows that
 * take turns), is looked at. 0: every segment. */
const volatile __u32 x0_rtt_sample_shift = 3;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct x0_drop_key);
	__type(value, __u64);
} x0_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct x0_sig_key);
	__type(value, struct x0_sig_value);
} x0_sigflows SEC(".maps");

/* Per flow: drops of at most X0_DROP_FLOWS flows (admitted as x0_drop_admit says). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, X0_DROP_FLOWS);
	__type(key, struct x0_sig_key);
	__type(value, struct x0_sig_value);
} x0_dropflows SEC(".maps");

/* The admission of flows into x0_dropflows: cells of (epoch << 24 | count), racy by design
 * (an estimate; a lost update only delays an admission). */
__u32 x0_drop_sketch[X0_DROP_SKETCH_ROWS][X0_DROP_SKETCH_WIDTH];
__u32 x0_drop_budget;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct x0_rtt_key);
	__type(value, __u64);
} x0_rtt_hist SEC(".maps");

static __always_inline struct x0_sig_value *x0_sig(struct x0_sig_key *k)
{
	struct x0_sig_value *v = bpf_map_lookup_elem(&x0_sigflows, k);

	if (v)
		return v;
	struct x0_sig_value zero = {};
	bpf_map_update_elem(&x0_sigflows, k, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&x0_sigflows, k);
}

/* A cell's count in `epoch`: kept from the same epoch, halved from the previous one, else 0. */
static __always_inline __u32 x0_cell_count(__u32 cell, __u32 epoch)
{
	__u32 age = (epoch - (cell >> 24)) & 0xff;

	return age == 0 ? cell & 0xffffff : age == 1 ? (cell & 0xffffff) >> 1 : 0;
}

/*
 * Whether a flow not yet in x0_dropflows enters it at this drop, and with how many drops: its
 * count-min estimate (conservative update: only the smallest cells grow).
 */
static __always_inline __u32 x0_drop_admit(const struct x0_sig_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 epoch = (bpf_ktime_get_ns() >> 30) & 0xff;
	__u32 cells[X0_DROP_SKETCH_ROWS], est = 0xffffff, i, n;
	__u64 h = 0x9E3779B97F4A7C15ULL;

#pragma unroll
	for (i = 0; i < sizeof(*k) / 4; i++) {
		h = (h ^ w[i]) * 0xff51afd7ed558ccdULL;
		h ^= h >> 29;
	}
#pragma unroll
	for (i = 0; i < X0_DROP_SKETCH_ROWS; i++) {
		cells[i] = (__u32)(h >> (i * 32)) & (X0_DROP_SKETCH_WIDTH - 1);
		n = x0_cell_count(x0_drop_sketch[i][cells[i]], epoch);
		if (n < est)
			est = n;
	}
	if (est < 0xffffff)
		est++;
#pragma unroll
	for (i = 0; i < X0_DROP_SKETCH_ROWS; i++) {
		n = x0_cell_count(x0_drop_sketch[i][cells[i]], epoch);
		x0_drop_sketch[i][cells[i]] = epoch << 24 | (n > est ? n : est);
	}
	if (est >= X0_DROP_FLOW_MIN)
		return est;
	n = (x0_drop_budget >> 24) == epoch ? x0_drop_budget & 0xffffff : 0;
	if (n >= X0_DROP_FLOW_BUDGET)
		return 0;
	x0_drop_budget = epoch << 24 | (n + 1);
	return est;
}

/* The 5-tuple of a packet in kernel memory, from its network header; 0 if it has none. */
static __always_inline int x0_skb_tuple(struct sk_buff *skb, struct x0_sig_key *k)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u16 ports[2] = {};

	if (!head || nh == (__u16)~0U)
		return 0;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) || ip.version != 4)
			return 0;
		k->family = 4;
		k->proto = ip.protocol;
		__builtin_memcpy(k->saddr, &ip.saddr, 4);
		__builtin_memcpy(k->daddr, &ip.daddr, 4);
		if ((ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) &&
		    !(ip.frag_off & bpf_htons(0x1fff)) &&
		    !bpf_probe_read_kernel(ports, sizeof(ports), head + nh + ip.ihl * 4)) {
			k->sport = ports[0];
			k->dport = ports[1];
		}
		return 1;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) || ip6.version != 6)
			return 0;
		k->family = 6;
		k->proto = ip6.nexthdr;
		__builtin_memcpy(k->saddr, &ip6.saddr, 16);
		__builtin_memcpy(k->daddr, &ip6.daddr, 16);
		if ((ip6.nexthdr == IPPROTO_TCP || ip6.nexthdr == IPPROTO_UDP) &&
		    !bpf_probe_read_kernel(ports, sizeof(ports), head + nh + sizeof(ip6))) {
			k->sport = ports[0];
			k->dport = ports[1];
		}
		return 1;
	}
	return 0;
}

/*
 * The network namespace (inode number) of a dropped packet; 0 when nothing tells. Once TCP
 * holds a packet (tcp_v4_rcv and tcp_v6_rcv, after the socket lookup) skb->dev is NULL: it
 * shares its memory with dev_scratch. Then the receiving socket tells, else the packet's route,
 * whose device for local delivery is the namespace's loopback.
 */
static __always_inline __u32 x0_drop_netns(struct sk_buff *skb, struct sock *rx_sk)
{
	struct dst_entry *dst;

	if (skb->dev)
		return skb->dev->nd_net.net->ns.inum;
	if (rx_sk)
		return rx_sk->__sk_common.skc_net.net->ns.inum;
	dst = (struct dst_entry *)(skb->_skb_refdst & ~1UL); /* bit 0 is SKB_DST_NOREF */
	return dst ? BPF_CORE_READ(dst, dev, nd_net.net, ns.inum) : 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(x0_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct x0_drop_key dk = { .reason = reason };
	struct x0_sig_key k = {};
	struct x0_sig_value *v;
	struct net_device *dev;
	struct sock *rx_sk = 0;
	__u64 *n, one = 1;
	__u32 netns;

	/* Frees of packets that were delivered are not drops. */
	if (reason <= bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	/* The receiving socket: the tracepoint's fourth argument since Linux 6.11. */
	if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
		rx_sk = (struct sock *)ctx[3];
	netns = x0_drop_netns(skb, rx_sk);
	/* Another namespace's drop is not ours; one whose namespace nothing tells is counted. */
	if (x0_netns_ino && netns && netns != x0_netns_ino)
		return 0;
	/* Without a device, the interface it arrived on (skb_iif stays set), if its namespace is
	 * known; else X0_IFINDEX_UNKNOWN. */
	dev = skb->dev;
	dk.ifindex = dev ? dev->ifindex : netns ? skb->skb_iif : X0_IFINDEX_UNKNOWN;
	n = bpf_map_lookup_elem(&x0_drops, &dk);
	if (n)
		*n += 1;
	else
		bpf_map_update_elem(&x0_drops, &dk, &one, BPF_NOEXIST);
	if (!x0_skb_tuple(skb, &k))
		return 0;
	v = bpf_map_lookup_elem(&x0_dropflows, &k);
	if (v) {
		__sync_fetch_and_add(&v->drops, 1);
		v->ifindex = dk.ifindex;
		v->last_drop_reason = reason;
		return 0;
	}
	struct x0_sig_value nv = { .ifindex = dk.ifindex, .last_drop_reason = reason };

	nv.drops = x0_drop_admit(&k);
	if (nv.drops)
		bpf_map_update_elem(&x0_dropflows, &k, &nv, BPF_NOEXIST);
	return 0;
}

/* A TCP socket's flow, oriented as it sends: local → remote. */
/* tp_btf arguments are BTF pointers: fields are read directly (no helper call per read). */
static __always_inline int x0_sock_tuple(const struct sock *sk, struct x0_sig_key *k)
{
	__u16 family = sk->__sk_common.skc_family;

	if (x0_netns_ino && sk->__sk_common.skc_net.net->ns.inum != x0_netns_ino)
		return 0;
	k->proto = IPPROTO_TCP;
	k->sport = bpf_htons(sk->__sk_common.skc_num);
	k->dport = sk->__sk_common.skc_dport;
	if (family == AF_INET) {
		__u32 s = sk->__sk_common.skc_rcv_saddr;
		__u32 d = sk->__sk_common.skc_daddr;

		k->family = 4;
		__builtin_memcpy(k->saddr, &s, 4);
		__builtin_memcpy(k->daddr, &d, 4);
		return 1;
	}
	if (family == AF_INET6) {
		k->family = 6;
		BPF_CORE_READ_INTO(&k->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&k->daddr, sk, __sk_common.skc_v6_daddr);
		return 1;
	}
	return 0;
}

/* The interface of a socket's cached route; X0_IFINDEX_UNKNOWN without one. */
static __always_inline __u32 x0_sock_ifindex(const struct sock *sk)
{
	struct dst_entry *dst = sk->sk_dst_cache;

	return dst && dst->dev ? dst->dev->ifindex : X0_IFINDEX_UNKNOWN;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(x0_tcp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	struct x0_sig_key k = {};
	struct x0_sig_value *v;

	if (!x0_sock_tuple(sk, &k))
		return 0;
	v = x0_sig(&k);
	if (v) {
		__sync_fetch_and_add(&v->retransmits, 1);
		v->ifindex = x0_sock_ifindex(sk);
	}
	return 0;
}

/* floor(log2(x)) for x > 0, by halving (BPF has no count-leading-zeros instruction). */
static __always_inline __u32 x0_log2(__u32 x)
{
	__u32 r = 0, shift;

	shift = (x > 0xffff) << 4; x >>= shift; r |= shift;
	shift = (x > 0xff) << 3; x >>= shift; r |= shift;
	shift = (x > 0xf) << 2; x >>= shift; r |= shift;
	shift = (x > 0x3) << 1; x >>= shift; r |= shift;
	r |= (x >> 1);
	return r;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(x0_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	struct x0_rtt_key rk = {};
	struct x0_sig_key k = {};
	struct x0_sig_value *v;
	struct tcp_sock *tp;
	__u32 srtt;
	__u64 *n, one = 1;

	if (bpf_get_prandom_u32() & ((1U << x0_rtt_sample_shift) - 1))
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	srtt = tp->srtt_us >> 3;
	if (!srtt || !x0_sock_tuple(sk, &k))
		return 0;
	rk.ifindex = x0_sock_ifindex(sk);
	v = x0_sig(&k);
	if (v) {
		v->srtt_us = srtt;
		v->ifindex = rk.ifindex;
		__sync_fetch_and_add(&v->rtt_samples, 1);
	}
	rk.bucket = x0_log2(srtt);
	if (rk.bucket >= X0_RTT_BUCKETS)
		rk.bucket = X0_RTT_BUCKETS - 1;
	n = bpf_map_lookup_elem(&x0_rtt_hist, &rk);
	if (n)
		*n += 1;
	else
		bpf_map_update_elem(&x0_rtt_hist, &rk, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
