/**
 * Test namespaces: two network namespaces joined by a veth pair, with IPv4 and IPv6
 * addresses and static neighbours (no ARP/NDP noise). Everything is removed by close(),
 * which tests call from `using` or finally, also when they fail. Names carry the pid, so a
 * leftover from a crashed run is recognisable and `sweep()` removes it.
 */

export function sh(cmd: string, args: string[], netns?: string): string {
  const full = netns ? ["netns", "exec", netns, cmd, ...args] : args;
  const out = new Deno.Command(netns ? "ip" : cmd, { args: full, stderr: "piped", stdout: "piped" })
    .outputSync();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${netns ? `[${netns}] ` : ""}${cmd} ${args.join(" ")}: ` +
        new TextDecoder().decode(out.stderr).trim(),
    );
  }
  return text;
}

let seq = 0;
const PREFIX = "x0t";

export interface Side {
  ns: string;
  dev: string;
  ip4: string;
  ip6: string;
  mac: string;
}

export class VethPair implements Disposable {
  readonly a: Side;
  readonly b: Side;

  /** `subnet` picks 10.201.<subnet>.0/24 and fd00:201:<subnet>::/64, private to the test. */
  constructor(subnet = 1) {
    const id = `${PREFIX}${Deno.pid}-${seq++}`;
    this.a = {
      ns: `${id}a`,
      dev: "veth-a",
      ip4: `10.201.${subnet}.1`,
      ip6: `fd00:201:${subnet}::1`,
      mac: "02:00:00:00:00:01",
    };
    this.b = {
      ns: `${id}b`,
      dev: "veth-b",
      ip4: `10.201.${subnet}.2`,
      ip6: `fd00:201:${subnet}::2`,
      mac: "02:00:00:00:00:02",
    };
    try {
      for (const s of [this.a, this.b]) sh("ip", ["netns", "add", s.ns]);
      // One datapath watches both sides: give them different ifindexes (veth-b gets 4).
      sh("ip", ["link", "add", "pad0", "type", "veth", "peer", "name", "pad1"], this.b.ns);
      sh("ip", [
        "link",
        "add",
        this.a.dev,
        "netns",
        this.a.ns,
        "address",
        this.a.mac,
        "type",
        "veth",
        "peer",
        "name",
        this.b.dev,
        "netns",
        this.b.ns,
        "address",
        this.b.mac,
      ]);
      for (const [s, peer] of [[this.a, this.b], [this.b, this.a]]) {
        sh("ip", ["link", "set", "lo", "up"], s.ns);
        sh("sysctl", ["-qw", "net.ipv6.conf.all.disable_ipv6=0"], s.ns);
        sh("ip", ["addr", "add", `${s.ip4}/24`, "dev", s.dev], s.ns);
        sh("ip", ["-6", "addr", "add", `${s.ip6}/64`, "dev", s.dev, "nodad"], s.ns);
        sh("ip", ["link", "set", s.dev, "up"], s.ns);
        for (const addr of [peer.ip4, peer.ip6]) {
          sh(
            "ip",
            ["neigh", "replace", addr, "lladdr", peer.mac, "dev", s.dev, "nud", "permanent"],
            s.ns,
          );
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Runs a command inside one side's namespace and returns its stdout. */
  run(side: Side, cmd: string, args: string[]): string {
    return sh(cmd, args, side.ns);
  }

  /** The kernel's own rx/tx counters of a side's device. */
  stats(side: Side): { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number } {
    const read = (f: string) =>
      Number(this.run(side, "cat", [`/sys/class/net/${side.dev}/statistics/${f}`]).trim());
    return {
      rxPackets: read("rx_packets"),
      rxBytes: read("rx_bytes"),
      txPackets: read("tx_packets"),
      txBytes: read("tx_bytes"),
    };
  }

  close(): void {
    for (const s of [this.a, this.b]) {
      try {
        sh("ip", ["netns", "del", s.ns]);
      } catch { /* not created, or already gone */ }
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Removes namespaces that earlier test runs of this suite left behind (their pid is gone). */
export function sweep(): void {
  for (const line of sh("ip", ["netns", "list"]).split("\n")) {
    const m = line.match(/^(x0t(\d+)-\d+[ab])\b/);
    if (!m) continue;
    try {
      Deno.statSync(`/proc/${m[2]}`);
    } catch {
      sh("ip", ["netns", "del", m[1]]);
    }
  }
}

const TRAFFIC = new URL("./traffic.ts", import.meta.url).pathname;

/** A traffic.ts command inside a namespace (udp-send, tcp-sink, tcp-send). */
export function trafficCommand(ns: string, ...args: (string | number)[]): Deno.Command {
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      TRAFFIC,
      ...args.map(String),
    ],
    stdout: "piped",
    stderr: "piped",
  });
}

/** Sends `count` UDP datagrams of `size` bytes from inside `ns`, and waits until they are sent. */
export function udpSend(ns: string, host: string, port: number, count: number, size: number) {
  const out = trafficCommand(ns, "udp-send", host, port, count, size).outputSync();
  if (!out.success) throw new Error(`udp-send: ${new TextDecoder().decode(out.stderr)}`);
}

/** Loads an nftables ruleset inside `ns` (removed with the namespace). */
export async function nft(ns: string, rules: string): Promise<void> {
  const p = new Deno.Command("ip", {
    args: ["netns", "exec", ns, "nft", "-f", "-"],
    stdin: "piped",
    stderr: "piped",
  }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(rules));
  await w.close();
  const o = await p.output();
  if (!o.success) throw new Error(`nft: ${new TextDecoder().decode(o.stderr)}`);
}

/** An inet table with one input rule, e.g. "udp dport 9999 drop". */
export function nftInputRule(table: string, rule: string): string {
  return `table inet ${table} {\n chain input {\n  type filter hook input priority 0;\n  ${rule}\n }\n}\n`;
}
