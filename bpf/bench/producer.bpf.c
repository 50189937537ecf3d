// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark fixture: writes flow events into a ring buffer as fast as the kernel can, so the
 * user-space consumer can be measured against it. Not part of the appliance. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "x0tta6bl4.h"

const volatile __u32 x0_batch = 1000;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 28); /* room for 3.7 M records: a whole run fits */
} x0_bench_events SEC(".maps");

/* [0] events written, [1] events that found the ring full */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} x0_bench_stats SEC(".maps");

static long x0_produce_one(__u64 i, void *ctx)
{
	__u32 k = 0;
	__u64 *n;
	struct x0_flow_event *e = bpf_ringbuf_reserve(&x0_bench_events, sizeof(*e), 0);

	if (!e)
		k = 1;
	n = bpf_map_lookup_elem(&x0_bench_stats, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = i;
	e->key.family = 4;
	e->key.proto = 17;
	e->key.sport = (__u16)i;
	e->pkt_len = 64;
	e->type = X0_EVENT_NEW_FLOW;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("xdp")
int x0_produce(struct xdp_md *ctx)
{
	bpf_loop(x0_batch, x0_produce_one, NULL, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
