/**
 * TCP SYNs with any source address, as `hping3 -S -a SRC -p ++PORT` sends them, from inside a
 * test namespace:
 *   deno run -A spoof.ts IFACE DST FIRST_PORT PORTS SRC [SRC…]
 * Each SRC sends one SYN to each of PORTS ports from FIRST_PORT on. Whole Ethernet frames
 * (with the test veth pair's own MAC addresses, and correct IP and TCP checksums) are written
 * to an AF_PACKET socket on IFACE, so the source address is whatever the test says. DST is
 * always an address of the test's own namespaces.
 */
import {
  concat,
  eth,
  ETH_P,
  IPPROTO,
  ipv4,
  ipv6,
  tcp,
  TCP_FLAGS,
  withL4Checksum,
} from "../kernel/frames.ts";

const [iface, dst, first, ports, ...sources] = Deno.args;
if (!iface || !dst || !sources.length) {
  console.error("usage: spoof.ts IFACE DST FIRST_PORT PORTS SRC [SRC…]");
  Deno.exit(2);
}

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
}).symbols;

const AF_PACKET = 17, SOCK_RAW = 3;
const htons = (x: number) => ((x & 0xff) << 8) | (x >> 8);
const fd = libc.socket(AF_PACKET, SOCK_RAW, 0);
if (fd < 0) throw new Error("socket(AF_PACKET) failed: run as root inside the namespace");
const ifindex = libc.if_nametoindex(new TextEncoder().encode(`${iface}\0`));
if (ifindex === 0) throw new Error(`no interface ${iface}`);

/** struct sockaddr_ll for `ifindex`, destination MAC as eth() writes it. */
const addr = new Uint8Array(20);
const av = new DataView(addr.buffer);
av.setUint16(0, AF_PACKET, true);
av.setInt32(4, ifindex, true);
addr[11] = 6;
addr.set([0x02, 0, 0, 0, 0, 0x02], 12);

let sent = 0;
for (const src of sources) {
  const v6 = src.includes(":");
  av.setUint16(2, htons(v6 ? ETH_P.ipv6 : ETH_P.ipv4), true);
  for (let p = Number(first); p < Number(first) + Number(ports); p++) {
    const seg = withL4Checksum(
      IPPROTO.tcp,
      src,
      dst,
      tcp(40000 + (sent % 20000), p, TCP_FLAGS.syn),
    );
    const frame = v6
      ? eth(ETH_P.ipv6, ipv6(IPPROTO.tcp, seg, { src, dst }))
      : eth(ETH_P.ipv4, ipv4(IPPROTO.tcp, seg, { src, dst }));
    const buf = concat(frame);
    if (libc.sendto(fd, buf, BigInt(buf.length), 0, addr, addr.length) < 0) {
      throw new Error(`sendto failed after ${sent} frames`);
    }
    sent++;
  }
}
libc.close(fd);
console.log(sent);
