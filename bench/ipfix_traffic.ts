/**
 * The traffic of `deno task bench ipfix`, with exact counts known in advance:
 *   deno run -A ipfix_traffic.ts IFACE FLOWS ROUNDS BURST PPS SRC4 SRC6 DST4 DST6
 * FLOWS flows, in turn IPv4 UDP, IPv4 TCP, IPv6 UDP, IPv6 TCP, each from its own source port
 * to port 5001 of DST4 or DST6 (addresses the bench routes inside its own namespace), payloads
 * of 64 to 414 bytes; ROUNDS rounds, BURST packets of every flow each, back to back (1: every
 * packet is of another flow than the one before), at about PPS packets a second, written as whole Ethernet frames to IFACE (see tests/helpers/packet.ts). Prints the
 * number of frames sent (FLOWS × ROUNDS × BURST unless the kernel refused one: then it throws), the
 * seconds it took, and the CPU-seconds this process used meanwhile (user and system time of all
 * its threads; without IRQ time accounting, as here, that includes the softirq work done in its
 * system calls: the receive path of every frame written into the veth).
 */
import {
  eth,
  ETH_P,
  IPPROTO,
  ipv4,
  ipv6,
  payload,
  tcp,
  TCP_FLAGS,
  udp,
  withL4Checksum,
} from "../tests/kernel/frames.ts";
import { PacketSocket } from "../tests/helpers/packet.ts";
import process from "node:process";

export const DPORT = 5001;
const FIRST_SPORT = 10_000;

export interface BenchFlow {
  v6: boolean;
  proto: number;
  sport: number;
  /** Bytes of the whole frame (what the datapath counts) and of the IP packet alone. */
  frameBytes: number;
  ipBytes: number;
  frame: Uint8Array<ArrayBuffer>;
}

/** Flow `i` of the bench's traffic. */
export function benchFlow(
  i: number,
  addrs: { src4: string; src6: string; dst4: string; dst6: string },
): BenchFlow {
  const v6 = (i & 2) !== 0, proto = i & 1 ? IPPROTO.tcp : IPPROTO.udp;
  const sport = FIRST_SPORT + i;
  const [src, dst] = v6 ? [addrs.src6, addrs.dst6] : [addrs.src4, addrs.dst4];
  const body = payload(64 + (i % 8) * 50);
  const segment = withL4Checksum(
    proto,
    src,
    dst,
    proto === IPPROTO.tcp
      ? tcp(sport, DPORT, TCP_FLAGS.ack | TCP_FLAGS.psh, body)
      : udp(sport, DPORT, body),
  );
  const ip = v6 ? ipv6(proto, segment, { src, dst }) : ipv4(proto, segment, { src, dst });
  const frame = eth(v6 ? ETH_P.ipv6 : ETH_P.ipv4, ip);
  return { v6, proto, sport, frameBytes: frame.length, ipBytes: ip.length, frame };
}

if (import.meta.main) {
  const [iface, flows, rounds, burst, pps, src4, src6, dst4, dst6] = Deno.args;
  if (!dst6 || !(Number(pps) > 0)) {
    console.error("usage: ipfix_traffic.ts IFACE FLOWS ROUNDS BURST PPS SRC4 SRC6 DST4 DST6");
    Deno.exit(2);
  }
  const all = Array.from(
    { length: Number(flows) },
    (_, i) => benchFlow(i, { src4, src6, dst4, dst6 }),
  );
  const nRounds = Number(rounds), nBurst = Number(burst), rate = Number(pps);
  using socket = new PacketSocket(iface);
  const start = performance.now(), cpu = process.cpuUsage();
  for (let r = 0; r < nRounds; r++) {
    for (const f of all) {
      for (let b = 0; b < nBurst; b++) {
        socket.send(f.frame, f.v6);
        await socket.pace(rate, start, 500);
      }
    }
  }
  const used = process.cpuUsage(cpu);
  console.log(
    socket.sent,
    ((performance.now() - start) / 1000).toFixed(3),
    ((used.user + used.system) / 1e6).toFixed(3),
  );
}
