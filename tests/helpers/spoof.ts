/**
 * TCP SYNs with any source address, as `hping3 -S -a SRC -p ++PORT` sends them, from inside a
 * test namespace:
 *   deno run -A spoof.ts IFACE DST FIRST_PORT PORTS SRC [SRC…]
 * Each SRC sends one SYN to each of PORTS ports from FIRST_PORT on, as whole Ethernet frames
 * (the test veth pair's own MAC addresses, correct IP and TCP checksums) written to IFACE, so
 * the source address is whatever the test says. DST is always an address of the test's own
 * namespaces.
 */
import {
  eth,
  ETH_P,
  IPPROTO,
  ipv4,
  ipv6,
  tcp,
  TCP_FLAGS,
  withL4Checksum,
} from "../kernel/frames.ts";
import { PacketSocket } from "./packet.ts";

const [iface, dst, first, ports, ...sources] = Deno.args;
if (!iface || !dst || !sources.length) {
  console.error("usage: spoof.ts IFACE DST FIRST_PORT PORTS SRC [SRC…]");
  Deno.exit(2);
}

using socket = new PacketSocket(iface);
for (const src of sources) {
  const v6 = src.includes(":");
  for (let p = Number(first); p < Number(first) + Number(ports); p++) {
    const seg = withL4Checksum(
      IPPROTO.tcp,
      src,
      dst,
      tcp(40000 + (socket.sent % 20000), p, TCP_FLAGS.syn),
    );
    const frame = v6
      ? eth(ETH_P.ipv6, ipv6(IPPROTO.tcp, seg, { src, dst }))
      : eth(ETH_P.ipv4, ipv4(IPPROTO.tcp, seg, { src, dst }));
    socket.send(frame, v6);
  }
}
console.log(socket.sent);
