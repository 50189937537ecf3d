// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test fixture: reads the packet without a bounds check, so the verifier must reject it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int x0_reject(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20] == 6 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
