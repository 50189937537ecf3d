/**
 * Raw sockets for the kernel tests, made inside a test namespace (a socket stays in the
 * namespace it was made in):
 *  - RawTcp: TCP segments exactly as the test writes them (any flags, any checksum) from a raw
 *    IPv4 or IPv6 socket; the kernel adds the IP header with the namespace's own source address
 *    and routes it, so they cross the test's veth pair as real traffic. Destinations are always
 *    addresses of the test's own namespaces.
 *  - setLinkU32: one rtnetlink RTM_NEWLINK with u32 attributes, for link settings that
 *    iproute2 6.1 has no words for (IFLA_GSO_IPV4_MAX_SIZE and IFLA_GRO_IPV4_MAX_SIZE, BIG TCP:
 *    `ip link set … gso_ipv4_max_size` arrived in iproute2 6.3).
 */
import { lastErrno } from "../../ffi/libbpf.ts";
import { ifindexOf } from "../../src/datapath/netdev.ts";
import { withNetns } from "../../src/datapath/netns.ts";
import { addr4, addr6, IPPROTO } from "../kernel/frames.ts";

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
}).symbols;

const AF_INET = 2, AF_INET6 = 10, AF_NETLINK = 16, SOCK_RAW = 3, NETLINK_ROUTE = 0;

/** A socket made inside `ns`; throws with errno when the kernel refuses. */
function socketIn(ns: string, domain: number, protocol: number): number {
  const [fd, errno] = withNetns(ns, () => {
    const fd = libc.socket(domain, SOCK_RAW, protocol);
    return [fd, fd < 0 ? lastErrno() : 0];
  });
  if (fd < 0) throw new Error(`socket(${domain}, SOCK_RAW, ${protocol}) in ${ns}: errno ${errno}`);
  return fd;
}

/** IFLA_* attribute numbers (include/uapi/linux/if_link.h) the tests set. */
export const IFLA = { gsoIpv4MaxSize: 63, groIpv4MaxSize: 64 } as const;

/** A raw TCP socket (IPv4 or IPv6) made inside `ns`. */
export class RawTcp implements Disposable {
  #fd: number;

  constructor(ns: string, readonly family: 4 | 6) {
    this.#fd = socketIn(ns, family === 4 ? AF_INET : AF_INET6, IPPROTO.tcp);
  }

  /** Sends `segment` (TCP header and payload, as they are) to `dst`. */
  send(dst: string, segment: Uint8Array<ArrayBuffer>): void {
    // struct sockaddr_in (16 bytes, address at 4) or sockaddr_in6 (28 bytes, address at 8);
    // the port stays 0 (raw sockets take none), the family is in host byte order.
    const sa = new Uint8Array(this.family === 4 ? 16 : 28);
    new DataView(sa.buffer).setUint16(0, this.family === 4 ? AF_INET : AF_INET6, true);
    sa.set(this.family === 4 ? addr4(dst) : addr6(dst), this.family === 4 ? 4 : 8);
    const n = libc.sendto(this.#fd, segment, BigInt(segment.length), 0, sa, sa.length);
    if (Number(n) !== segment.length) throw new Error(`sendto ${dst}: errno ${lastErrno()}`);
  }

  close(): void {
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Sets u32 attributes (IFLA number → value) of link `dev` in namespace `ns`; waits for the ack. */
export function setLinkU32(ns: string, dev: string, attrs: Record<number, number>): void {
  const ifindex = withNetns(ns, () => ifindexOf(dev));
  const entries = Object.entries(attrs);
  // struct nlmsghdr (16 bytes), struct ifinfomsg (16), one 8-byte rtattr per attribute.
  const msg = new Uint8Array(32 + 8 * entries.length);
  const v = new DataView(msg.buffer);
  v.setUint32(0, msg.length, true);
  v.setUint16(4, 16, true); // RTM_NEWLINK
  v.setUint16(6, 0x1 | 0x4, true); // NLM_F_REQUEST | NLM_F_ACK
  v.setUint32(8, 1, true); // sequence number
  v.setInt32(20, ifindex, true);
  entries.forEach(([type, value], i) => {
    v.setUint16(32 + 8 * i, 8, true);
    v.setUint16(34 + 8 * i, Number(type), true);
    v.setUint32(36 + 8 * i, value, true);
  });
  const fd = socketIn(ns, AF_NETLINK, NETLINK_ROUTE);
  try {
    const to = new Uint8Array(12); // struct sockaddr_nl: the kernel (pid 0)
    new DataView(to.buffer).setUint16(0, AF_NETLINK, true);
    if (Number(libc.sendto(fd, msg, BigInt(msg.length), 0, to, to.length)) !== msg.length) {
      throw new Error(`rtnetlink send: errno ${lastErrno()}`);
    }
    // The answer is an NLMSG_ERROR whose error (0: done, else -errno) follows the header.
    const ack = new Uint8Array(1024);
    if (libc.recv(fd, ack, BigInt(ack.length), 0) < 20) {
      throw new Error(`rtnetlink recv: errno ${lastErrno()}`);
    }
    const av = new DataView(ack.buffer);
    if (av.getUint16(4, true) !== 2) throw new Error(`rtnetlink: no NLMSG_ERROR in the answer`);
    const error = av.getInt32(16, true);
    if (error !== 0) throw new Error(`RTM_NEWLINK ${dev} in ${ns}: errno ${-error}`);
  } finally {
    libc.close(fd);
  }
}
