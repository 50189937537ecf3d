/**
 * Cilium enrichment in the running appliance, against a stand-in agent: the recorded
 * /v1/endpoint response (tests/testdata/cilium, reconstructed from Cilium's API model, not
 * captured from a live agent, which cannot run here) served on a UNIX socket, with one
 * endpoint's address replaced by the test's own namespace address. Real traffic, real flows.
 */
import assert from "node:assert/strict";
import { Daemon } from "../helpers/daemon.ts";
import { udpSend, VethPair } from "../helpers/netns.ts";
import { GOOD, recorded, withAgent } from "../helpers/cilium_agent.ts";

interface Endpoint {
  id: number;
  status: { networking?: { addressing: { ipv4?: string; ipv6?: string }[] } };
}

Deno.test("cilium: the appliance labels flows with endpoint identities from a stand-in agent serving recorded API responses on a UNIX socket", async () => {
  using v = new VethPair(89);
  const endpoints = JSON.parse(recorded("endpoints.json")) as Endpoint[];
  // The "frontend" pod (endpoint 1843, identity 48861) gets the sending namespace's address.
  endpoints.find((e) => e.id === 1843)!.status.networking!.addressing = [{ ipv4: v.a.ip4 }];
  await withAgent(async (agent) => {
    await using d = new Daemon(v.b, [
      "--interface",
      v.b.dev,
      "--cilium.socket",
      agent.socket,
      "--cilium.refresh-s",
      "1",
    ]);
    await d.start();
    await d.until("ready", () => d.request("/readyz").status === 200 || undefined);
    udpSend(v.a.ns, v.b.ip4, 7000, 5, 100);
    type Flows = {
      flows: {
        saddr: string;
        cilium?: { src?: { identity: number; labels: string[]; pod?: string } };
      }[];
    };
    const flow = await d.until("a flow labelled with its Cilium identity", () => {
      const f = (d.json(`/api/v1/flows?address=${v.a.ip4}&port=7000`) as Flows).flows
        .find((x) => x.saddr === v.a.ip4);
      return f?.cilium?.src ? f : undefined;
    });
    assert.equal(flow.cilium!.src!.identity, 48861);
    assert.equal(flow.cilium!.src!.pod, "frontend-7d9c5b6f4-x2v8k");
    assert.ok(flow.cilium!.src!.labels.includes("k8s:app=frontend"));
    // The other end is not a Cilium endpoint: no dst.
    assert.equal((flow.cilium as Record<string, unknown>).dst, undefined);
    const health = d.json("/api/v1/health") as {
      components: { component: string; state: string; reason: string }[];
    };
    const c = health.components.find((x) => x.component === "cilium")!;
    assert.equal(c.state, "healthy", c.reason);
    assert.match(c.reason, /never touches its programs/);
  }, { ...GOOD, "/v1/endpoint": () => Response.json(endpoints) });
});
