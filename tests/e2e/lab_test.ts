/**
 * The mesh lab end to end: 4 appliances in namespaces on a bridge, a real Prometheus finding
 * them through the mesh's service discovery, nftables loss, kills and restarts, hostile
 * datagrams, and every query of the Grafana dashboard answered by the lab's Prometheus.
 */
import assert from "node:assert/strict";
import { Lab, LAB_MAPEK, type LabNode } from "../../scripts/lab.ts";
import { nft, nftInputRule, sh, trafficCommand, udpSend } from "../helpers/netns.ts";
import type { Action, Decision } from "../../src/mapek/plan.ts";

const INJECT = new URL("../helpers/mesh_inject.ts", import.meta.url).pathname;
const DASHBOARD = new URL("../../deploy/grafana/x0tta6bl4.json", import.meta.url).pathname;
const ALERTS = new URL("../../deploy/prometheus/alerts.yml", import.meta.url).pathname;

interface Peer {
  name: string;
  state: string;
  loss: { ratio: number | null; window: number };
  bytes: { sent: number; received: number };
}

function peers(lab: Lab, n: LabNode): Peer[] | undefined {
  try {
    const r = lab.get(`${n.api}/api/v1/mesh/peers`);
    return r.status === 200 ? JSON.parse(r.body).peers : undefined;
  } catch {
    return undefined;
  }
}

async function until<T>(what: string, ms: number, fn: () => T | undefined): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("lab: 4 nodes converge, count per-peer traffic, detect death and loss, feed Prometheus", async (t) => {
  const lab = new Lab({
    tag: `t${Deno.pid}`,
    subnet: 10 + (Deno.pid % 200),
    nodes: 4,
    hostAccess: false,
    // MAPE-K observes everywhere, as `scripts/lab up` sets it; n2 goes to enforce below.
    extraConfig: LAB_MAPEK,
  });
  lab.down();
  try {
    lab.build();
    for (const n of lab.nodes) lab.startNode(n);
    const [n1, n2, n3, n4] = lab.nodes;

    await t.step("every node sees 3 alive peers within 3 s of being up", async () => {
      // Up: each API answers; from then on the mesh has 3 s.
      await until("all APIs up", 20_000, () => lab.nodes.every((n) => peers(lab, n)) || undefined);
      await until(
        "3 alive peers everywhere",
        3000,
        () =>
          lab.nodes.every((n) => peers(lab, n)?.filter((p) => p.state === "alive").length === 3) ||
          undefined,
      );
    });

    await t.step(
      "UDP traffic between two nodes is per-peer bytes on both ends, exactly",
      async () => {
        // Exactly what was sent is added (other traffic between the two, such as an ICMP
        // error about a hello that came before the peer's socket was up, counts too, before).
        const sentTo = () => peers(lab, n1)?.find((p) => p.name === "n2")?.bytes.sent ?? 0;
        const receivedFrom = () =>
          peers(lab, n2)?.find((p) => p.name === "n1")?.bytes.received ?? 0;
        const [sent0, received0] = [sentTo(), receivedFrom()];
        udpSend(n1.ns, n2.ip, 7777, 20, 200);
        const want = 20 * (14 + 20 + 8 + 200);
        let seen = "";
        try {
          await until(`n1 sent and n2 received ${want} more bytes`, 8000, () => {
            const [a, b] = [sentTo() - sent0, receivedFrom() - received0];
            seen = `n1 sent ${a} more, n2 received ${b} more`;
            return a === want && b === want || undefined;
          });
        } catch (e) {
          throw new Error(`${(e as Error).message}; last seen: ${seen}`);
        }
      },
    );

    await t.step(
      "kill one: the others say dead within 1.5 s; restart: alive within 3 s",
      async () => {
        const t0 = performance.now();
        Deno.kill(n4.process!.pid, "SIGKILL");
        await n4.process!.status;
        await until(
          "n4 dead on n1, n2, n3",
          1500,
          () =>
            [n1, n2, n3].every((n) =>
              peers(lab, n)?.find((p) => p.name === "n4")?.state === "dead"
            ) ||
            undefined,
        );
        const detected = performance.now() - t0;
        assert.ok(detected <= 1500, `detected in ${detected} ms`);
        lab.startNode(n4);
        await until("n4 API up", 20_000, () => peers(lab, n4) ? true : undefined);
        await until(
          "n4 alive everywhere again",
          3000,
          () =>
            [n1, n2, n3].every((n) =>
              peers(lab, n)?.find((p) => p.name === "n4")?.state === "alive"
            ) ||
            undefined,
        );
      },
    );

    await t.step("10% and 30% loss (nftables) are measured; 10% makes no false dead", async () => {
      const drop = (n: LabNode, pct: number) =>
        nft(n.ns, nftInputRule("x0loss", `udp dport 5000 numgen random mod 100 < ${pct} drop`));
      await drop(n2, 10);
      await drop(n3, 30);
      const start = performance.now();
      let falseDead = "";
      while (performance.now() - start < 24_000) { // > 200 probes: the loss window refills
        for (const n of [n1, n3, n4]) {
          if (peers(lab, n)?.find((p) => p.name === "n2")?.state === "dead") falseDead = n.name;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(falseDead, "", `n2 (10% loss) declared dead by ${falseDead}`);
      const l2 = peers(lab, n1)!.find((p) => p.name === "n2")!.loss;
      const l3 = peers(lab, n1)!.find((p) => p.name === "n3")!.loss;
      // 200 probes: the binomial standard deviation is 2.1 points at 10%, 3.2 at 30%.
      assert.ok(Math.abs(l2.ratio! - 0.1) <= 0.07, `10% measured as ${l2.ratio} over ${l2.window}`);
      assert.ok(Math.abs(l3.ratio! - 0.3) <= 0.1, `30% measured as ${l3.ratio} over ${l3.window}`);
      for (const n of [n2, n3]) sh("nft", ["delete", "table", "inet", "x0loss"], n.ns);
    });

    await t.step("bad datagrams are dropped and counted; the node keeps working", async () => {
      const out = sh(
        Deno.execPath(),
        ["run", "-A", INJECT, `${lab.dir}/mesh.key`, n1.ip, "5000"],
        n2.ns,
      );
      assert.match(out, /sent 9/);
      const dropped = await until("drops counted", 3000, () => {
        const s = JSON.parse(lab.get(`${n1.api}/api/v1/mesh/status`).body);
        const d = s.dropped as Record<string, number>;
        return ["replay", "bad_mac", "truncated", "oversized", "unknown_version"].every((r) =>
            d[r] >= 1
          ) && (d.bad_mac ?? 0) + (d.bad_magic ?? 0) + (d.bad_length ?? 0) >= 3
          ? d
          : undefined;
      });
      assert.ok(dropped.bad_mac >= 2, JSON.stringify(dropped)); // flipped bit, wrong key
      // The one valid stranger said hello, then left; the mesh itself is untouched.
      const after = peers(lab, n1)!;
      assert.equal(after.find((p) => p.name === "intruder")?.state, "left");
      assert.equal(after.filter((p) => p.state === "alive").length, 3);
    });

    await t.step(
      "n2 switched to enforce by a reload: a stranger's UDP flood is blocked within seconds and released at its TTL; a mesh peer's flood is never blocked",
      async () => {
        const json = <T>(url: string) => JSON.parse(lab.get(url).body) as T;
        const actions = (all: boolean) =>
          json<{ actions: Action[] }>(`${n2.api}/api/v1/mapek/actions${all ? "?all=1" : ""}`)
            .actions;
        const decisions = () =>
          json<{ decisions: Decision[] }>(`${n2.api}/api/v1/mapek/decisions`).decisions;
        lab.enforce(n2);
        await until(
          "n2 in enforce mode",
          5000,
          () => json<{ mode: string }>(`${n2.api}/api/v1/mapek`).mode === "enforce" || undefined,
        );
        // A stranger on the lab's network (not a mesh peer) floods n2, as `scripts/lab flood`.
        const t0 = performance.now();
        const { source: stranger, sent } = lab.flood(n2, 20000, 3);
        const blocked = await until(
          "the stranger blocked on n2",
          5000,
          () => actions(false).find((a) => a.target === stranger && a.state === "active"),
        );
        console.log(`lab: flood to block ${Math.round(performance.now() - t0)} ms`);
        const why = decisions().find((d) => d.id === blocked.decisionId)!;
        assert.equal(why.symptom.kind, "source_flood");
        assert.match(why.reason, /block 198\.18\.\d+\.200 in the datapath for 4 s/);
        await sent;
        const during = actions(false).find((a) => a.id === blocked.id);
        assert.ok((during?.droppedPackets ?? 0) > 0, "dropped in the kernel");
        // A mesh peer flooding the same way: allow-listed, never blocked.
        await trafficCommand(n3.ns, "udp-rate", n3.ip, n2.ip, 9999, 20000, 2).output();
        const skipped = await until(
          "the decision on n3's flood",
          5000,
          () => decisions().find((d) => d.symptom.source === n3.ip),
        );
        assert.equal(skipped.outcome, "skipped");
        assert.match(skipped.reason, /allow-listed \(mesh peer n3\)/);
        // Released on its own at its TTL.
        const ended = await until(
          "the block expired",
          8000,
          () => actions(true).find((a) => a.id === blocked.id && a.state === "expired"),
        );
        assert.ok(Math.abs(ended.endedAt! - ended.expiresAt) < 1000);
        assert.equal(peers(lab, n2)!.filter((p) => p.state === "alive").length, 3);
      },
    );

    await t.step(
      "Prometheus finds all 4 through the SD endpoint; dashboard queries return data",
      async () => {
        lab.startPrometheus();
        const query = (q: string) =>
          JSON.parse(
            lab.get(`${lab.prometheus!.url}/api/v1/query?query=${encodeURIComponent(q)}`).body,
          );
        await until("4 targets up", 30_000, () => {
          try {
            return query('count(up{job="x0tta6bl4"} == 1)').data?.result?.[0]?.value?.[1] === "4" ||
              undefined;
          } catch {
            return undefined;
          }
        });
        await new Promise((r) => setTimeout(r, 4000)); // a few scrapes, for rate()
        // The mesh families (the RTT histogram among them) and the alert rules pass promtool.
        for (const args of [["check", "metrics"], ["check", "rules", ALERTS]]) {
          const p = new Deno.Command("promtool", {
            args,
            stdin: "piped",
            stdout: "piped",
            stderr: "piped",
          })
            .spawn();
          const w = p.stdin.getWriter();
          await w.write(
            new TextEncoder().encode(
              args[1] === "metrics" ? lab.get(`${n1.api}/metrics`).body : "",
            ),
          );
          await w.close();
          const o = await p.output();
          const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
          assert.ok(o.success, text);
          if (args[1] === "metrics") assert.equal(text.trim(), "");
        }
        assert.match(
          lab.get(`${n1.api}/metrics`).body,
          /^x0tta6bl4_mesh_peer_rtt_seconds_bucket\{peer="n2",le="\+Inf"\} \d+/m,
        );
        const dash = JSON.parse(Deno.readTextFileSync(DASHBOARD));
        const exprs: string[] = dash.panels.flatMap((p: { targets?: { expr: string }[] }) =>
          (p.targets ?? []).map((t) => t.expr)
        );
        assert.ok(exprs.length >= 6);
        for (const expr of exprs) {
          const q = expr.replaceAll("$node", ".+").replaceAll("$__rate_interval", "15s")
            .replaceAll("$interface", ".+");
          const r = query(q);
          assert.equal(r.status, "success", `${expr}: ${JSON.stringify(r)}`);
          assert.ok(r.data.result.length > 0, `no data for: ${expr}`);
        }
      },
    );
  } finally {
    lab.down();
  }
});
