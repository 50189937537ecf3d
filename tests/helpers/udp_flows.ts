/**
 * Many distinct UDP flows from one source, one datagram each, from inside a test namespace:
 *   deno run -A udp_flows.ts IFACE SRC SPORT FIRST_PORT PORTS PPS DST [DST…]
 * One datagram from SRC:SPORT to each port of PORTS from FIRST_PORT on, on each DST, at about
 * PPS datagrams per second, as whole Ethernet frames written to IFACE (see packet.ts). With no
 * listener on those ports, each is also a kernel drop (NO_SOCKET), and together a port scan.
 * Prints how many were sent. DST is always an address of the test's own namespaces.
 */
import { eth, ETH_P, IPPROTO, ipv4, udp } from "../kernel/frames.ts";
import { PacketSocket } from "./packet.ts";

const [iface, src, sport, first, ports, pps, ...dsts] = Deno.args;
if (!iface || !src || !dsts.length || !(Number(pps) > 0)) {
  console.error("usage: udp_flows.ts IFACE SRC SPORT FIRST_PORT PORTS PPS DST [DST…]");
  Deno.exit(2);
}

using socket = new PacketSocket(iface);
const start = performance.now();
for (const dst of dsts) {
  for (let p = Number(first); p < Number(first) + Number(ports); p++) {
    socket.send(eth(ETH_P.ipv4, ipv4(IPPROTO.udp, udp(Number(sport), p), { src, dst })));
    // Paced in steps of 1000 datagrams, so the receiving side keeps up.
    await socket.pace(Number(pps), start, 1000);
  }
}
console.log(socket.sent);
