/**
 * `x0tta6bl4 attach IFACE…`: attaches the flow programs, prints per-interface rates and the
 * top flows every second, and detaches cleanly on Ctrl-C or SIGTERM.
 */
import { readFlows, readIfaceStats, totals } from "../collect/decode.ts";
import { decodeEvent, directionOf, flowId } from "../flows/key.ts";
import type { XdpModeRequest } from "../datapath/attach.ts";
import { type AttachMode, FlowDatapath } from "../datapath/flow.ts";
import { ifindexOf } from "../datapath/netdev.ts";
import { RingBuffer } from "../datapath/ringbuf.ts";
import { endpoint, si, table } from "./format.ts";
import { protocolName } from "../net/protocol.ts";

export interface AttachOptions {
  interfaces: string[];
  hook: AttachMode;
  xdpMode: XdpModeRequest;
  intervalMs: number;
  top: number;
  /** Stop after this many refreshes (0: until a signal). */
  count: number;
  flowTableSize?: number;
}

export async function runAttach(o: AttachOptions): Promise<number> {
  const dp = new FlowDatapath({ flowTableSize: o.flowTableSize });
  let newFlows = 0, badEvents = 0;
  const ring = new RingBuffer(dp.events, (rec) => {
    try {
      decodeEvent(rec);
      newFlows++;
    } catch {
      badEvents++;
    }
  });
  const stop = Promise.withResolvers<void>();
  const onSignal = () => stop.resolve();
  try {
    for (const name of o.interfaces) {
      const a = dp.attach(ifindexOf(name), o.hook, o.xdpMode);
      console.log(
        `attached to ${a.name} (ifindex ${a.ifindex}): ${a.hooks.join(", ")}` +
          (a.xdpMode ? `, XDP ${a.xdpMode} mode` : ""),
      );
    }
    ring.start();
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    let prevIface = new Map<string, { packets: number; bytes: number }>();
    let prevFlows = new Map<string, number>();
    let last = performance.now();
    for (let i = 0; o.count === 0 || i < o.count; i++) {
      const tick = new Promise((r) => setTimeout(r, o.intervalMs));
      if (await Promise.race([tick.then(() => false), stop.promise.then(() => true)])) break;
      const now = performance.now();
      const secs = (now - last) / 1000;
      last = now;
      const rows = [["INTERFACE", "HOOK", "bit/s", "pkt/s", "packets", "malformed", "lost events"]];
      const nextIface = new Map<string, { packets: number; bytes: number }>();
      const names = new Map(dp.attachments().map((a) => [a.ifindex, a.name]));
      for (const s of readIfaceStats(dp)) {
        const key = `${s.ifindex}/${s.hook}`;
        const t = totals(s);
        const p = prevIface.get(key) ?? { packets: 0, bytes: 0 };
        nextIface.set(key, t);
        rows.push([
          names.get(s.ifindex) ?? `#${s.ifindex}`,
          directionOf(s.hook) === "tx" ? "out" : "in",
          `${si(((t.bytes - p.bytes) * 8) / secs)}b`,
          si((t.packets - p.packets) / secs),
          String(t.packets),
          String(s.classes.malformed.packets),
          String(s.eventsLost),
        ]);
      }
      prevIface = nextIface;
      const flows = readFlows(dp);
      const nextFlows = new Map<string, number>();
      const rated = flows.map((f) => {
        const id = flowId(f);
        nextFlows.set(id, f.bytes);
        return { f, rate: (f.bytes - (prevFlows.get(id) ?? 0)) / secs };
      }).sort((a, b) => b.rate - a.rate).slice(0, o.top);
      prevFlows = nextFlows;
      const flowRows = [[
        "INTERFACE",
        "DIR",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "bit/s",
        "packets",
        "bytes",
      ]];
      for (const { f, rate } of rated) {
        const icmp = f.proto === 1 || f.proto === 58;
        flowRows.push([
          names.get(f.ifindex) ?? `#${f.ifindex}`,
          directionOf(f.hook) === "tx" ? "out" : "in",
          icmp ? `${protocolName(f.proto)} ${f.sport}/${f.dport}` : protocolName(f.proto),
          endpoint(f.saddr, f.sport, f.family, f.proto),
          endpoint(f.daddr, f.dport, f.family, f.proto),
          `${si(rate * 8)}b`,
          String(f.packets),
          String(f.bytes),
        ]);
      }
      console.log(
        `\n${new Date().toISOString()}  flows: ${flows.length}/${dp.flows.maxEntries}` +
          `  new flow events: ${newFlows}${badEvents ? `  undecodable: ${badEvents}` : ""}\n` +
          `${table(rows)}\n\n${table(flowRows)}`,
      );
    }
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await ring.stop();
    const had = dp.attachments().length;
    dp.close();
    if (had) console.log("detached");
  }
}
