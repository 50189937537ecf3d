/**
 * Whole Ethernet frames written to an AF_PACKET socket on one interface, so that a test can
 * send packets with any source address (spoof.ts, udp_flows.ts). Run as root inside a test
 * namespace; destinations are always addresses of the test's own namespaces.
 */
import { ETH_P } from "../kernel/frames.ts";

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
}).symbols;

const AF_PACKET = 17, SOCK_RAW = 3;
const htons = (x: number) => ((x & 0xff) << 8) | (x >> 8);

export class PacketSocket implements Disposable {
  readonly #fd: number;
  /** struct sockaddr_ll of the interface, destination MAC as frames.ts's eth() writes it. */
  readonly #addr = new Uint8Array(20);
  sent = 0;

  constructor(iface: string) {
    this.#fd = libc.socket(AF_PACKET, SOCK_RAW, 0);
    if (this.#fd < 0) throw new Error("socket(AF_PACKET) failed: run as root inside the namespace");
    const ifindex = libc.if_nametoindex(new TextEncoder().encode(`${iface}\0`));
    if (ifindex === 0) {
      libc.close(this.#fd);
      throw new Error(`no interface ${iface}`);
    }
    const av = new DataView(this.#addr.buffer);
    av.setUint16(0, AF_PACKET, true);
    av.setInt32(4, ifindex, true);
    this.#addr[11] = 6;
    this.#addr.set([0x02, 0, 0, 0, 0, 0x02], 12);
  }

  /** Writes one frame (`v6`: of EtherType IPv6, else IPv4); throws when the kernel refuses. */
  send(frame: Uint8Array<ArrayBuffer>, v6 = false): void {
    new DataView(this.#addr.buffer).setUint16(2, htons(v6 ? ETH_P.ipv6 : ETH_P.ipv4), true);
    if (libc.sendto(this.#fd, frame, BigInt(frame.length), 0, this.#addr, this.#addr.length) < 0) {
      throw new Error(`sendto failed after ${this.sent} frames`);
    }
    this.sent++;
  }

  /**
   * Keeps the sending at `pps` frames a second since `start` (performance.now()): every `step`
   * frames, waits for as long as the sending is ahead.
   */
  async pace(pps: number, start: number, step: number): Promise<void> {
    if (this.sent % step) return;
    const ahead = start + (this.sent / pps) * 1000 - performance.now();
    if (ahead > 0) await new Promise((r) => setTimeout(r, ahead));
  }

  close(): void {
    libc.close(this.#fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
