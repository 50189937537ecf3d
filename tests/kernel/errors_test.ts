/**
 * Error paths against the real kernel: each failure gives a precise error that names the fix.
 */
import assert from "node:assert/strict";
import rejectObject from "../../bpf/build/testdata/reject.bpf.o" with { type: "bytes" };
import { KernelError } from "../../src/datapath/errors.ts";
import { FLOW_OBJECT, FlowDatapath } from "../../src/datapath/flow.ts";
import { ifindexOf } from "../../src/datapath/netdev.ts";
import { withNetns } from "../../src/datapath/netns.ts";
import { Collection, PinMismatchError } from "../../src/datapath/object.ts";
import { Bpffs } from "../helpers/daemon.ts";
import { udpSend, VethPair } from "../helpers/netns.ts";
import { readFlows } from "../../src/collect/decode.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const deno = Deno.execPath();

function kernelError(fn: () => unknown): KernelError {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e;
    throw e;
  }
  assert.fail("expected a KernelError");
}

Deno.test("errors: a nonexistent interface is ENODEV and says how to check", () => {
  const e = kernelError(() => ifindexOf("x0nope0"));
  assert.equal(e.errnoName, "ENODEV");
  assert.match(e.message, /x0nope0.*ip link/);
  using dp = new FlowDatapath();
  assert.equal(kernelError(() => dp.attach(999999, "tc")).errnoName, "ENODEV");
  assert.equal(kernelError(() => ifindexOf("bad name/")).errnoName, "EINVAL");
});

Deno.test("errors: an XDP hook held by another program is refused, naming it, and left alone", () => {
  using v = new VethPair(3);
  const obj = new URL("../../bpf/build/baseline.bpf.o", import.meta.url).pathname;
  v.run(v.b, "ip", ["link", "set", "dev", v.b.dev, "xdpgeneric", "obj", obj, "sec", "xdp"]);
  using dp = new FlowDatapath();
  const e = withNetns(v.b.ns, () => kernelError(() => dp.attach(ifindexOf(v.b.dev), "xdp")));
  assert.equal(e.errnoName, "EBUSY");
  assert.match(e.message, /held by program "x0_xdp_pass" \(id \d+, generic mode\)/);
  assert.match(e.hint, /never replaces another XDP program/);
  // The other program is still there, and nothing of ours was left on the interface.
  assert.match(v.run(v.b, "ip", ["-d", "link", "show", v.b.dev]), /xdpgeneric/);
  assert.equal(v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, "egress"]), "");
  assert.equal(dp.attachments().length, 0);
});

Deno.test("errors: a verifier rejection carries the verifier's log", () => {
  const e = kernelError(() =>
    Collection.load(rejectObject as Uint8Array<ArrayBuffer>, { name: "x0_reject" })
  );
  assert.equal(e.errnoName, "EACCES");
  assert.match(e.verifierLog, /invalid access to packet/);
  assert.match(e.message, /verifier log:/);
});

Deno.test("errors: unusable kernel BTF names the BTF fix", () => {
  const e = kernelError(() => new FlowDatapath({ btfPath: "/nonexistent/vmlinux" }));
  assert.match(e.message, /kernel BTF at \/nonexistent\/vmlinux is missing or unreadable/);
  assert.match(e.hint, /CONFIG_DEBUG_INFO_BTF=y/);
});

async function cli(args: string[], env: Record<string, string> = {}, dropCaps = false) {
  const cmd = [deno, "run", "-A", MAIN, ...args];
  const out = await (dropCaps
    ? new Deno.Command("capsh", {
      args: [
        "--drop=cap_bpf,cap_perfmon,cap_sys_admin,cap_net_admin",
        "--",
        "-c",
        cmd.map((a) => `'${a}'`).join(" "),
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    })
    : new Deno.Command(cmd[0], { args: cmd.slice(1), env, stdout: "piped", stderr: "piped" }))
    .output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("errors: without privileges the CLI exits 1 naming the capabilities", async () => {
  const r = await cli(["attach", "lo", "--count", "1"], {}, true);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /EPERM|EACCES/);
  assert.match(r.stderr, /CAP_BPF.*CAP_NET_ADMIN/);
});

Deno.test("errors: a missing libbpf exits 1 naming the package to install", async () => {
  const r = await cli(["attach", "lo", "--count", "1"], {
    X0TTA6BL4_LIBBPF: "/nonexistent/libbpf.so.1",
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot load \/nonexistent\/libbpf\.so\.1/);
  assert.match(r.stderr, /apt-get install libbpf1/);
});

Deno.test("errors: bad usage exits 2", async () => {
  const r = await cli(["attach", "--hook", "bogus"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--hook must be tc or xdp/);
});

Deno.test("errors: a foreign TC filter (like Cilium's, priority 1) runs first and stays; ours goes after it and leaves alone", () => {
  using v = new VethPair(4);
  const obj = new URL("../../bpf/build/baseline.bpf.o", import.meta.url).pathname;
  v.run(v.b, "tc", ["qdisc", "add", "dev", v.b.dev, "clsact"]);
  v.run(v.b, "tc", [
    "filter",
    "add",
    "dev",
    v.b.dev,
    "ingress",
    "prio",
    "1",
    "handle",
    "1",
    "bpf",
    "da",
    "obj",
    obj,
    "sec",
    "tc",
  ]);
  using dp = new FlowDatapath();
  const ifindex = withNetns(v.b.ns, () => ifindexOf(v.b.dev));
  withNetns(v.b.ns, () => dp.attach(ifindex, "tc"));
  const shown = v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, "ingress"]);
  const prefs = [...shown.matchAll(/pref (\d+) bpf/g)].map((m) => Number(m[1]));
  assert.deepEqual([...new Set(prefs)], [1, 49152], shown);
  // The foreign filter passes packets on (TC_ACT_UNSPEC), so ours still sees them.
  udpSend(v.a.ns, v.b.ip4, 9, 5, 32);
  const seen = readFlows(dp).filter((f) => f.hook === "tcIngress" && f.dport === 9);
  assert.equal(seen.reduce((n, f) => n + f.packets, 0), 5);
  withNetns(v.b.ns, () => dp.detach(ifindex));
  const after = v.run(v.b, "tc", ["filter", "show", "dev", v.b.dev, "ingress"]);
  assert.match(after, /pref 1 bpf .*x0_tc_pass/s);
  assert.doesNotMatch(after, /pref 49152/);
});

Deno.test("errors: pins of another shape are found by their map info, not a log message, and start over", () => {
  using fs = new Bpffs();
  const pinDir = `${fs.path}/x0tta6bl4`;
  const first = new FlowDatapath({ flowTableSize: 1024, pinDir });
  assert.equal(first.adopted, false);
  first.close();
  // The same shape: adopted.
  const same = new FlowDatapath({ flowTableSize: 1024, pinDir });
  assert.equal(same.adopted, true);
  assert.equal(same.resetReason, "");
  same.close();
  // The flow table resized: the load itself says which maps differ, and how.
  const e = kernelError(() =>
    Collection.load(FLOW_OBJECT, {
      name: "x0tta6bl4_flow",
      maxEntries: { x0_flows: 2048 },
      pins: { x0_flows: `${pinDir}/x0_flows` },
    })
  );
  assert.ok(e instanceof PinMismatchError);
  assert.match(e.message, /x0_flows \(max entries 1024, not 2048\)/);
  // The datapath starts its counters over, and says so.
  const resized = new FlowDatapath({ flowTableSize: 2048, pinDir });
  try {
    assert.equal(resized.adopted, false);
    assert.match(resized.resetReason, /did not match/);
    assert.equal(resized.flows.maxEntries, 2048);
  } finally {
    resized.close();
    Deno.removeSync(pinDir, { recursive: true });
  }
});
