/**
 * The mesh lab: N nodes (default 4) as network namespaces on a bridge, one appliance in each
 * with the mesh enabled, and a real Prometheus that finds them all through the mesh's service
 * discovery. Used by `scripts/lab` and by the tests, which make their own labs and remove them.
 *
 *   deno run -A scripts/lab.ts up [N]    prints `node NAME NETNS API_URL` lines and
 *                                        `prometheus URL`
 *   deno run -A scripts/lab.ts down      removes everything, also after a crash
 *   deno run -A scripts/lab.ts measure [KILLS] [--loss P]
 *                                        on a lab that is up: P% of mesh datagrams dropped
 *                                        on every node (nftables; default 10), KILLS nodes
 *                                        (default 10) killed one at a time and restarted;
 *                                        prints the simulator's JSON line (docs/BENCHMARKS.md)
 *   deno run -A scripts/lab.ts flood [NODE] [SECONDS] [--enforce]
 *                                        a stranger (198.18.<subnet>.200, not a mesh peer)
 *                                        floods NODE (n2) with UDP; --enforce switches NODE's
 *                                        MAPE-K loop to enforce first (config file + SIGHUP)
 *
 * Addresses are 198.18.<subnet>.<i>/24 inside the lab's namespaces, in the benchmarking range
 * 198.18.0.0/15 (RFC 2544), which no real edge network uses; the host reaches them over a veth
 * from the root namespace (198.18.<subnet>.254), so a browser on the box can open them. `up`
 * returns once everything is started (the processes go on; `down` removes them).
 */
import { nft, nftInputRule, sh, trafficCommand } from "../tests/helpers/netns.ts";
import { V8_FLAGS } from "./v8_flags.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** MAPE-K in the lab: observe mode, a flood floor a demo reaches, and no management network
 * (the lab's one network is where the APIs listen, so by default it would never be acted on). */
export const LAB_MAPEK = "mapek:\n  mode: observe\n  flood_pps: 2000\n  action_ttl_s: 4\n" +
  "  allow_management: false\n  policy:\n    source_flood: block";

function tryRun(cmd: string, args: string[]) {
  try {
    sh(cmd, args);
  } catch { /* already gone */ }
}

export interface LabNode {
  name: string;
  ns: string;
  ip: string;
  api: string;
  stateDir: string;
  configFile: string;
  process?: Deno.ChildProcess;
}

export interface LabOptions {
  /** Distinguishes concurrent labs: names, subnet. */
  tag: string;
  subnet: number;
  nodes: number;
  /** Host access through a veth from the root namespace (for people; tests do without). */
  hostAccess: boolean;
  /** Extra config lines for every node. */
  extraConfig?: string;
}

export class Lab {
  readonly dir: string;
  readonly bridgeNs: string;
  readonly nodes: LabNode[] = [];
  prometheus?: { url: string; process: Deno.ChildProcess };

  constructor(readonly o: LabOptions) {
    this.dir = `/run/x0lab-${o.tag}`;
    this.bridgeNs = `x0lab-${o.tag}-br`;
  }

  get prefix(): string {
    return `198.18.${this.o.subnet}`;
  }

  /** Namespaces, bridge, addresses, keys and configs; no process yet. */
  build(): void {
    Deno.mkdirSync(`${this.dir}/bpf`, { recursive: true });
    sh("mount", ["-t", "bpf", "bpf", `${this.dir}/bpf`]);
    const key = crypto.getRandomValues(new Uint8Array(32));
    Deno.writeFileSync(`${this.dir}/mesh.key`, key, { mode: 0o600 });
    sh("ip", ["netns", "add", this.bridgeNs]);
    sh("ip", ["link", "add", "br0", "type", "bridge"], this.bridgeNs);
    sh("ip", ["link", "set", "br0", "up"], this.bridgeNs);
    sh("ip", ["link", "set", "lo", "up"], this.bridgeNs);
    sh("ip", ["addr", "add", `${this.prefix}.253/24`, "dev", "br0"], this.bridgeNs);
    for (let i = 1; i <= this.o.nodes; i++) {
      const node = this.node(`n${i}`);
      const { name, ns, ip, stateDir, configFile } = node;
      sh("ip", ["netns", "add", ns]);
      sh("ip", [
        "link",
        "add",
        "eth0",
        "netns",
        ns,
        "type",
        "veth",
        "peer",
        "name",
        `p${i}`,
        "netns",
        this.bridgeNs,
      ]);
      sh("ip", ["link", "set", `p${i}`, "master", "br0", "up"], this.bridgeNs);
      sh("ip", ["link", "set", "lo", "up"], ns);
      sh("ip", ["addr", "add", `${ip}/24`, "dev", "eth0"], ns);
      sh("ip", ["link", "set", "eth0", "up"], ns);
      Deno.mkdirSync(stateDir, { recursive: true });
      Deno.writeTextFileSync(
        configFile,
        [
          `api:\n  listen: "${ip}:9477"`,
          `state_dir: ${stateDir}`,
          `datapath:\n  interfaces: [eth0]\n  bpffs_dir: ${this.dir}/bpf/${name}`,
          `collect:\n  interval_ms: 250`,
          `mesh:\n  enabled: true\n  listen: "${ip}:5000"\n  key_file: ${this.dir}/mesh.key` +
          `\n  name: ${name}\n  peers: ["${this.prefix}.1:5000"]`,
          this.o.extraConfig ?? "",
        ].join("\n") + "\n",
      );
      this.nodes.push(node);
    }
    if (this.o.hostAccess) {
      sh("ip", [
        "link",
        "add",
        `x0lab-${this.o.tag}`,
        "type",
        "veth",
        "peer",
        "name",
        "host",
        "netns",
        this.bridgeNs,
      ]);
      sh("ip", ["link", "set", "host", "master", "br0", "up"], this.bridgeNs);
      sh("ip", ["addr", "add", `${this.prefix}.254/24`, "dev", `x0lab-${this.o.tag}`]);
      sh("ip", ["link", "set", `x0lab-${this.o.tag}`, "up"]);
    }
  }

  /** Starts (or restarts) one node's appliance; its log goes to its state directory. */
  startNode(node: LabNode, detached = false): void {
    const cmd = [
      Deno.execPath(),
      "run",
      "-A",
      V8_FLAGS,
      MAIN,
      "serve",
      "--config",
      node.configFile,
    ].map((a) => `'${a}'`).join(" ");
    node.process = new Deno.Command("ip", {
      args: ["netns", "exec", node.ns, "sh", "-c", `exec ${cmd} >>'${node.stateDir}/log' 2>&1`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached,
    }).spawn();
    if (detached) node.process.unref(); // `scripts/lab up` returns; `down` ends it
    Deno.writeTextFileSync(`${node.stateDir}/pid`, String(node.process.pid));
  }

  startPrometheus(detached = false): void {
    const dir = `${this.dir}/prometheus`;
    Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(
      `${dir}/prometheus.yml`,
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n` +
        `rule_files: ["${
          new URL("../deploy/prometheus/alerts.yml", import.meta.url).pathname
        }"]\n` +
        `scrape_configs:\n  - job_name: x0tta6bl4\n    http_sd_configs:\n` +
        `      - url: ${this.nodes[0].api}/api/v1/mesh/sd\n        refresh_interval: 2s\n`,
    );
    const url = `http://${this.prefix}.253:9090`;
    const process = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.bridgeNs,
        "prometheus",
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=${this.prefix}.253:9090`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached,
    }).spawn();
    if (detached) process.unref();
    Deno.writeTextFileSync(`${dir}/pid`, String(process.pid));
    this.prometheus = { url, process };
  }

  /** A node of a lab that is up (built by this or another process), by name: n1, n2… */
  node(name: string): LabNode {
    const i = Number(name.replace(/^n/, ""));
    if (!Number.isInteger(i) || i < 1) throw new Error(`no lab node ${name}: names are n1, n2…`);
    const stateDir = `${this.dir}/${name}`;
    return {
      name,
      ns: `x0lab-${this.o.tag}-${name}`,
      ip: `${this.prefix}.${i}`,
      api: `http://${this.prefix}.${i}:9477`,
      stateDir,
      configFile: `${stateDir}/x0tta6bl4.yaml`,
    };
  }

  /** Switches a node's MAPE-K loop to enforce mode: its config file, then SIGHUP. */
  enforce(node: LabNode): void {
    const cfg = Deno.readTextFileSync(node.configFile);
    Deno.writeTextFileSync(node.configFile, cfg.replace("mode: observe", "mode: enforce"));
    Deno.kill(node.process?.pid ?? Number(Deno.readTextFileSync(`${node.stateDir}/pid`)), "SIGHUP");
  }

  /**
   * A UDP flood of `pps` packets/s for `seconds` at `node` from a stranger on the lab's network
   * (198.18.<subnet>.200 on the bridge: not a mesh peer). Resolves to the datagrams sent.
   */
  flood(node: LabNode, pps: number, seconds: number): { source: string; sent: Promise<number> } {
    const source = `${this.prefix}.200`;
    const addrs = sh("ip", ["-o", "addr", "show", "dev", "br0"], this.bridgeNs);
    if (!addrs.includes(` ${source}/`)) {
      sh("ip", ["addr", "add", `${source}/24`, "dev", "br0"], this.bridgeNs);
    }
    const child = trafficCommand(this.bridgeNs, "udp-rate", source, node.ip, 9999, pps, seconds)
      .spawn();
    const sent = child.output().then((o) => {
      if (!o.success) throw new Error(`flood: ${new TextDecoder().decode(o.stderr)}`);
      return Number(new TextDecoder().decode(o.stdout).trim());
    });
    // Rejected before anyone awaits it (the sender failed): not an unhandled rejection, which
    // would end a test before it removes its lab. Whoever awaits it still gets the error.
    sent.catch(() => {});
    return { source, sent };
  }

  /** Kills every process of the lab (by the pid files, so also after a crash) and removes it. */
  down(): void {
    for (const pidFile of walkPids(this.dir)) {
      try {
        Deno.kill(Number(Deno.readTextFileSync(pidFile)), "SIGKILL");
      } catch { /* gone */ }
    }
    const names = sh("ip", ["netns", "list"]).split("\n").map((l) => l.split(" ")[0])
      .filter((n) => n.startsWith(`x0lab-${this.o.tag}-`));
    for (const ns of names) tryRun("ip", ["netns", "del", ns]);
    tryRun("ip", ["link", "del", `x0lab-${this.o.tag}`]);
    tryRun("umount", [`${this.dir}/bpf`]);
    try {
      Deno.removeSync(this.dir, { recursive: true });
    } catch { /* not there */ }
  }

  /** One HTTP GET inside the bridge namespace (which reaches every node). */
  get(url: string): { status: number; body: string } {
    const out = sh("curl", ["-s", "--max-time", "3", "-w", "\n%{http_code}", url], this.bridgeNs);
    const i = out.lastIndexOf("\n");
    return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
  }
}

/** A peer as a node's API gives it. */
export interface LabPeer {
  name: string;
  state: string;
  /** When the state began, ISO 8601 (the node's own clock). */
  since: string;
  probeBytes: { sent: number; received: number };
}

/** A node's peers from its API; none when it does not answer. */
export function labPeers(lab: Lab, n: LabNode): LabPeer[] {
  try {
    const r = lab.get(`${n.api}/api/v1/mesh/peers`);
    return r.status === 200 ? JSON.parse(r.body).peers : [];
  } catch {
    return [];
  }
}

export async function waitFor(ms: number, fn: () => boolean): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

const quantile = (xs: number[], q: number) =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.ceil(q * xs.length) - 1] : null;

/**
 * Death detection on the real appliances of a lab that is up, as the simulator measures it
 * (scripts/mesh_sim.ts): `lossPct`% of mesh datagrams dropped on every node, `kills` nodes
 * (never n1, the seed) killed with SIGKILL one at a time; each survivor's own record of when it
 * declared the node dead (`since`) against the moment of the kill; then the node is restarted
 * and the lab waits until every node holds every other alive. Any other node seen dead meanwhile
 * is a false death. Bytes: the mesh datagrams the nodes send in 10 s before the first kill.
 */
export async function measure(lab: Lab, names: string[], kills: number, lossPct: number) {
  const nodes = names.map((n) => lab.node(n));
  for (const n of nodes) {
    n.process = undefined;
    await nft(
      n.ns,
      nftInputRule("x0loss", `udp dport 5000 numgen random mod 100 < ${lossPct} drop`),
    );
  }
  const allAlive = () =>
    nodes.every((n) =>
      labPeers(lab, n).filter((p) => p.state === "alive").length === nodes.length - 1
    );
  if (!await waitFor(60_000, allAlive)) throw new Error("the lab's mesh did not converge");
  const sentBytes = (of: LabNode[]) =>
    of.reduce((a, n) => {
      const r = lab.get(`${n.api}/api/v1/mesh/status`);
      return a + (r.status === 200 ? JSON.parse(r.body).datagrams.bytesSent : 0);
    }, 0);
  // The cost in a quiet minute's sixth, before any kill (what the simulator reports as well,
  // but for its kills' news).
  const b0 = sentBytes(nodes), t0 = performance.now();
  await new Promise((r) => setTimeout(r, 10_000));
  const bytesPerNodeS = (sentBytes(nodes) - b0) / ((performance.now() - t0) / 1000) / nodes.length;
  const detect: number[] = [];
  const falseDead = new Set<string>();
  let detected = 0;
  for (let k = 0; k < kills; k++) {
    const victim = nodes[1 + Math.floor(Math.random() * (nodes.length - 1))];
    const others = nodes.filter((n) => n !== victim);
    const killedAt = Date.now();
    Deno.kill(Number(Deno.readTextFileSync(`${victim.stateDir}/pid`)), "SIGKILL");
    const seen = new Map<string, number>();
    await waitFor(10_000, () => {
      for (const n of others) {
        for (const p of labPeers(lab, n)) {
          if (p.state !== "dead") continue;
          if (p.name !== victim.name) falseDead.add(p.name);
          else if (!seen.has(n.name)) seen.set(n.name, Date.parse(p.since) - killedAt);
        }
      }
      return seen.size === others.length;
    });
    detected += seen.size;
    detect.push(...seen.values());
    lab.startNode(victim, true);
    if (!await waitFor(60_000, allAlive)) throw new Error(`${victim.name} did not come back`);
  }
  for (const n of nodes) sh("nft", ["delete", "table", "inet", "x0loss"], n.ns);
  return {
    nodes: nodes.length,
    loss: lossPct / 100,
    killed: kills,
    detected,
    detect_ms: {
      median: quantile(detect, 0.5),
      p99: quantile(detect, 0.99),
      max: quantile(detect, 1),
    },
    false_dead: falseDead.size,
    bytes_per_node_s: Math.round(bytesPerNodeS),
  };
}

function* walkPids(dir: string): Generator<string> {
  try {
    for (const e of Deno.readDirSync(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory && e.name !== "bpf") yield* walkPids(p);
      else if (e.name === "pid") yield p;
    }
  } catch { /* no lab */ }
}

if (import.meta.main) {
  const [cmd = "up", ...args] = Deno.args;
  const n = cmd === "up" ? args[0] ?? "4" : "4";
  const lab = new Lab({
    tag: "lab",
    subnet: 0,
    nodes: Number(n),
    hostAccess: true,
    extraConfig: LAB_MAPEK,
  });
  if (cmd === "down") {
    lab.down();
    console.log("lab removed");
  } else if (cmd === "up") {
    if (!(Number(n) >= 2 && Number(n) <= 16)) {
      console.error("scripts/lab up [N]: N from 2 to 16");
      Deno.exit(2);
    }
    lab.down(); // what a crashed lab left
    lab.build();
    for (const node of lab.nodes) lab.startNode(node, true);
    lab.startPrometheus(true);
    for (const node of lab.nodes) console.log(`node ${node.name} ${node.ns} ${node.api}`);
    console.log(`prometheus ${lab.prometheus!.url}`);
    console.log(`(logs in ${lab.dir}/NODE/log; remove with: scripts/lab down)`);
  } else if (cmd === "measure") {
    const rest = args.filter((a, i) => !a.startsWith("--") && args[i - 1] !== "--loss");
    const lossAt = args.indexOf("--loss");
    const loss = lossAt >= 0 ? Number(args[lossAt + 1]) : 10;
    const names = Deno.readDirSync(lab.dir).filter((e) => e.isDirectory && /^n\d+$/.test(e.name))
      .map((e) => e.name).toArray().sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
    if (names.length < 3 || !(loss >= 0 && loss < 100)) {
      console.error(
        "scripts/lab measure [KILLS] [--loss P]: on a lab of 3 or more nodes that is up",
      );
      Deno.exit(2);
    }
    console.log(JSON.stringify(await measure(lab, names, Number(rest[0] ?? 10), loss)));
  } else if (cmd === "flood") {
    const [name = "n2", seconds = "5"] = args.filter((a) => !a.startsWith("--"));
    const node = lab.node(name);
    if (args.includes("--enforce")) lab.enforce(node);
    const { source, sent } = lab.flood(node, 20000, Number(seconds));
    console.log(`flooding ${node.name} (${node.ip}) from ${source} for ${seconds} s…`);
    console.log(`sent ${await sent} datagrams; ${node.name}'s latest MAPE-K decisions:`);
    const d = JSON.parse(lab.get(`${node.api}/api/v1/mapek/decisions?limit=3`).body);
    for (const x of d.decisions ?? []) console.log(`  ${x.outcome}: ${x.reason}`);
    console.log(`live actions: ${node.api}/api/v1/mapek/actions; status page: ${node.api}/`);
  } else {
    console.error(
      "usage: scripts/lab [up [N] | measure [KILLS] [--loss P] | flood [NODE] [SECONDS] " +
        "[--enforce] | down]",
    );
    Deno.exit(2);
  }
}
