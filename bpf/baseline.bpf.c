// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Empty programs: the floor that the benchmarks measure the flow programs against. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int x0_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int x0_tc_pass(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
