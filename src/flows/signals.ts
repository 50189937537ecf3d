/**
 * Kernel signals of a flow (drops, TCP retransmits, smoothed RTT) as the signals probe reports
 * them, keyed by the flow's 5-tuple, and matched to a flow in either direction. Pure.
 */

export interface FlowSignal {
  drops: number;
  retransmits: number;
  rttSamples: number;
  srttUs: number;
  ifindex: number;
  lastDropReason: number;
}

/** "family/proto/saddr/sport/daddr/dport" with host-order ports: how flows are matched. */
export function flowSignalKey(
  family: number,
  proto: number,
  saddr: string,
  sport: number,
  daddr: string,
  dport: number,
): string {
  return `${family}/${proto}/${saddr}/${sport}/${daddr}/${dport}`;
}

/**
 * The signals of a flow (drops, TCP retransmits, last smoothed RTT), matched in either
 * direction: a socket's signals are recorded as it sends, flows are seen both ways. Undefined
 * for a flow the kernel kept nothing of: drops are kept per flow only for the flows that drop
 * most (at most X0_DROP_FLOWS, bpf/x0tta6bl4.h), so a flow of a large scan may have none even
 * though its drops count per interface and reason.
 */
export function flowSignals(
  signals: Map<string, FlowSignal> | undefined,
  f: { family: number; proto: number; saddr: string; sport: number; daddr: string; dport: number },
): { drops: number; retransmits: number; srttUs?: number } | undefined {
  const s = signals?.get(flowSignalKey(f.family, f.proto, f.saddr, f.sport, f.daddr, f.dport)) ??
    signals?.get(flowSignalKey(f.family, f.proto, f.daddr, f.dport, f.saddr, f.sport));
  return s &&
    { drops: s.drops, retransmits: s.retransmits, srttUs: s.rttSamples ? s.srttUs : undefined };
}
