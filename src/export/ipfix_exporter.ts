/**
 * The IPFIX exporter (RFC 7011 over UDP): one per collector. Each snapshot's flow table carries
 * cumulative counters per flow; the exporter keeps, per flow, what it has already exported and
 * sends the difference when the flow's record ends, so a collector's sums are what crossed
 * the wire:
 *   - end of flow (3): a TCP flow that has seen FIN or RST and was quiet for one snapshot;
 *   - idle timeout (1): no packet for `idle_timeout_s`;
 *   - active timeout (2): a record open for `active_timeout_s` is cut, the flow goes on;
 *   - lack of resources (5): the kernel's table evicted the flow (it is gone from the snapshot,
 *     or its key came back as a new flow): its last known counts are exported, what it counted
 *     after the last snapshot is lost with it;
 *   - forced end (4): the exporter stops.
 * offer() does this synchronously over typed arrays, packs records into messages of at most
 * 1400 bytes and queues them (at most `queue_max_records`; beyond that the oldest are dropped
 * and counted); a background pump sends them, templates first and again every
 * `template_refresh_s`. A send that fails is counted, retried with backoff, never thrown.
 * What was exported per flow is journaled in the state directory before it is sent, so that a
 * restart neither counts a flow twice nor loses what the pinned kernel table still holds.
 */
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { FLOW_KEY, Hook } from "../../ffi/layout.ts";
import type { Config } from "../config/schema.ts";
import { monotonicNs } from "../datapath/enforce.ts";
import { isAddress } from "../net/address.ts";
import { joinHostPort, parseHostPort } from "../net/hostport.ts";
import type { HealthState, Snapshot } from "../state/snapshot.ts";
import type { Exporter, ExportStatus } from "./exporter.ts";
import {
  EndReason,
  type EndReasonCode,
  FLOW_RECORD_BYTES,
  FLOW_TEMPLATES,
  flowTemplateId,
  type KeyLayout,
  MAX_MESSAGE_BYTES,
  MessageWriter,
  type RecordValues,
  SAMPLING_TEMPLATE,
  samplingDataSet,
  templateSet,
  writeFlowRecord,
  writeHeader,
} from "./ipfix.ts";
import {
  ENTRY_BYTES,
  ExportedLog,
  FlowStates,
  KEY_BYTES,
  KEY_WORDS,
  writeEntry,
} from "./ipfix_state.ts";

/** The appliance's log (src/app/log.ts), as this module uses it. */
export type Log = (
  level: "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

/** How a message leaves: rejects when the send fails. The default is a UDP socket. */
export interface Transport {
  send(msg: Uint8Array, address: string, port: number, family: 4 | 6): Promise<void>;
  close(): void;
}

export interface IpfixOptions {
  /** HOST:PORT of the collector. */
  collector: string;
  observationDomainId: number;
  activeTimeoutS: number;
  idleTimeoutS: number;
  templateRefreshS: number;
  queueMaxRecords: number;
  /** Where what was exported is kept, without extension; undefined: nowhere (tests). */
  statePath?: string;
  log?: Log;
  /** The datapath's clock (CLOCK_MONOTONIC, ns): flow times are read on it. */
  monoNs?: () => number;
  /** The wall clock, ms since the epoch. */
  wallMs?: () => number;
  transport?: Transport;
  /** A host name's address; the default asks getaddrinfo (hosts file, then DNS). */
  resolve?: (host: string) => Promise<{ address: string; family: 4 | 6 }>;
  /** How long stop() tries to send what is queued. */
  stopGraceMs?: number;
}

const K: KeyLayout = Object.fromEntries(
  Object.entries(FLOW_KEY.members).map(([k, [o]]) => [k, o]),
) as unknown as KeyLayout;
K.size = FLOW_KEY.size;

const TCP = 6, FIN = 0x01, RST = 0x04;
/** A flow whose counters stay below the ones kept for this many snapshots was replaced. */
const LOW_SNAPSHOTS = 2;
const BACKOFF_MIN_MS = 250, BACKOFF_MAX_MS = 30_000;
const RESOLVE_TTL_MS = 60_000, RESOLVE_TIMEOUT_MS = 5_000;
/**
 * Pacing: at most this many messages back to back, then a pause. A collector's socket holds
 * about a hundred 1400-byte datagrams with Linux's default buffer (212992 bytes); bursts of
 * thousands (100k flows cut by one active timeout) would overflow it. 32 every 5 ms is still
 * 6400 messages (about 170k records) a second.
 */
const PACE_BURST = 32, PACE_PAUSE_MS = 5;
/** Nothing sent for this long while records wait: unhealthy, not just degraded. */
const UNHEALTHY_AFTER_MS = 60_000;
const RECENT_MS = 60_000;

/** One message waiting to be sent, with what it exported per flow (to take back at stop). */
interface Queued {
  bytes: Uint8Array;
  records: number;
  /** Per record: slot, key hash, first packet (ns), packets, octets. */
  refs: Float64Array;
}

/** Counts of records by end reason (RFC 5102 flowEndReason). */
export type RecordsByReason = Record<"idle" | "active" | "end" | "forced" | "evicted", number>;

const REASON_NAME: Record<EndReasonCode, keyof RecordsByReason> = {
  [EndReason.idleTimeout]: "idle",
  [EndReason.activeTimeout]: "active",
  [EndReason.endOfFlow]: "end",
  [EndReason.forcedEnd]: "forced",
  [EndReason.lackOfResources]: "evicted",
};

/** UDP, one unconnected socket per address family, made on first use. */
class UdpTransport implements Transport {
  readonly #sockets = new Map<4 | 6, dgram.Socket>();

  send(msg: Uint8Array, address: string, port: number, family: 4 | 6): Promise<void> {
    let s = this.#sockets.get(family);
    if (!s) {
      s = dgram.createSocket(family === 6 ? "udp6" : "udp4");
      // Errors of sends are reported to their callbacks; the socket's own are not fatal.
      s.on("error", () => {});
      this.#sockets.set(family, s);
    }
    const sock = s;
    return new Promise((resolve, reject) => {
      try {
        sock.send(msg, port, address, (err) => err ? reject(err) : resolve());
      } catch (e) {
        reject(e);
      }
    });
  }

  close(): void {
    for (const s of this.#sockets.values()) {
      try {
        s.close();
      } catch { /* already closed */ }
    }
    this.#sockets.clear();
  }
}

async function resolveHost(host: string): Promise<{ address: string; family: 4 | 6 }> {
  const r = await lookup(host);
  return { address: r.address, family: r.family === 6 ? 6 : 4 };
}

/** A file name for a collector: `127.0.0.1:4739` → `ipfix-127.0.0.1_4739`. */
export function stateFileBase(stateDir: string, collector: string): string {
  return `${stateDir.replace(/\/+$/, "")}/ipfix-${collector.replace(/[^A-Za-z0-9.-]/g, "_")}`;
}

export class IpfixExporter implements Exporter {
  readonly name: string;
  /** The collector, HOST:PORT. */
  readonly #destination: string;
  readonly #o: Required<Omit<IpfixOptions, "statePath" | "log">> & IpfixOptions;
  readonly #host: string;
  readonly #port: number;
  readonly #states: FlowStates;
  readonly #disk?: ExportedLog;
  readonly #writer: MessageWriter;
  readonly #queue: Queued[] = [];
  #queued = 0;
  #refs: number[] = [];
  #journal: Uint8Array = new Uint8Array(64 * ENTRY_BYTES);
  #journalLen = 0;
  #epoch = 0;
  #prevNowNs = 0;
  /** The wall clock and the datapath's, read together at the latest snapshot. */
  #nowNs = 0;
  #nowMs = 0;
  readonly #values: RecordValues = {
    octets: 0,
    packets: 0,
    startMs: 0,
    endMs: 0,
    tcpFlags: 0,
    endReason: EndReason.idleTimeout,
    egress: false,
  };

  // Sending.
  #seq = 0;
  #pump?: Promise<void>;
  #timer?: ReturnType<typeof setTimeout>;
  #retryAt = 0;
  #failures = 0;
  #templatesAt = -Infinity;
  #resendTemplates = true;
  #address?: { address: string; family: 4 | 6; at: number };
  #stopping = false;
  #stopped = false;

  // What status() says.
  #sent = 0;
  #messages = 0;
  #failed = 0;
  /** Records dropped: the queue was full, or stop() could not send them nor keep them. */
  #droppedQueueFull = 0;
  #droppedStopped = 0;
  #droppedAt = -Infinity;
  #lastSuccessAt?: number;
  #lastError?: string;
  #lastSentAt = performance.now();
  #persistLogged = false;
  readonly byReason: RecordsByReason = { idle: 0, active: 0, end: 0, forced: 0, evicted: 0 };
  /** Flows restored from the state directory at start. */
  readonly restored: number;

  constructor(o: IpfixOptions) {
    const { hostname, port } = parseHostPort(o.collector);
    this.#host = hostname;
    this.#port = port;
    this.#destination = joinHostPort(hostname, port);
    this.name = `ipfix ${this.#destination}`;
    this.#o = {
      monoNs: () => Number(monotonicNs()),
      wallMs: () => Date.now(),
      transport: new UdpTransport(),
      resolve: resolveHost,
      stopGraceMs: 2000,
      ...o,
    };
    this.#writer = new MessageWriter(MAX_MESSAGE_BYTES, o.queueMaxRecords);
    this.#states = new FlowStates();
    if (o.statePath) {
      this.#disk = new ExportedLog(o.statePath);
      this.restored = this.#disk.load(this.#states);
      if (this.#disk.error) this.#persistError();
      // The journal starts from a snapshot of what was restored (and of this boot).
      if (!this.#disk.compact(this.#states)) this.#persistError();
    } else {
      this.restored = 0;
    }
  }

  /** One exporter per collector of `export.ipfix.collectors` (none: no export). */
  static fromConfig(c: Config, log: Log, monoNowNs?: () => number): Exporter[] {
    const x = c.export.ipfix;
    return x.collectors.map((collector) => {
      const e = new IpfixExporter({
        collector,
        observationDomainId: x.observation_domain_id,
        activeTimeoutS: x.active_timeout_s,
        idleTimeoutS: x.idle_timeout_s,
        templateRefreshS: x.template_refresh_s,
        queueMaxRecords: x.queue_max_records,
        statePath: stateFileBase(c.state_dir, collector),
        log,
        ...(monoNowNs ? { monoNs: monoNowNs } : {}),
      });
      if (e.restored) {
        log("info", "IPFIX: resuming from what was exported before", {
          collector,
          flows: e.restored,
        });
      }
      return e;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Metering: a snapshot's cumulative counters → records of what is new.

  offer(s: Snapshot, _metrics?: () => string): void {
    // The fallback collector has no flows: it says nothing about the kernel's table.
    if (this.#stopping || s.mode !== "ebpf") return;
    const t = s.flows, n = t.size, st = this.#states;
    const nowNs = this.#o.monoNs();
    this.#nowNs = nowNs;
    this.#nowMs = this.#o.wallMs();
    const idleNs = this.#o.idleTimeoutS * 1e9, activeNs = this.#o.activeTimeoutS * 1e9;
    const raw = t.keys;
    const words = raw.byteOffset % 4 === 0
      ? new Uint32Array(raw.buffer, raw.byteOffset, n * KEY_WORDS)
      : new Uint32Array(raw.slice(0, n * KEY_BYTES).buffer);
    // A flow not seen in this snapshot goes at its end: two values would do, 255 leave room.
    const epoch = this.#epoch = (this.#epoch % 255) + 1;
    for (let i = 0; i < n; i++) {
      const w = i * KEY_WORDS, h = st.hashOf(words, w);
      const p = t.packets(i), b = t.bytes(i), last = t.lastSeenNs(i);
      const first = t.firstSeenNs(i) || last;
      let slot = st.find(words, w, h), fresh = false;
      if (slot < 0) {
        slot = st.insert(words, w, h);
        st.reset(slot, first);
        fresh = true;
      } else if (st.firstNs[slot] !== first) {
        // Another flow under the same key: the kernel evicted the one we knew.
        this.#emit(slot, EndReason.lackOfResources);
        st.reset(slot, first);
        fresh = true;
      } else if (p < st.packets[slot] || b < st.octets[slot]) {
        // Lower than before: a read that missed a flush of the kernel's flow cache (it comes
        // back next time), or the flow was evicted and its key holds only the cache's packets.
        if (++st.low[slot] < LOW_SNAPSHOTS) {
          st.epoch[slot] = epoch;
          continue;
        }
        this.#emit(slot, EndReason.lackOfResources);
        st.reset(slot, first);
        fresh = true;
      }
      const grew = p > st.packets[slot] || b > st.octets[slot];
      if (grew && !fresh && !st.open(slot)) {
        // A new record: its first packet came after the last one seen, and after the previous
        // snapshot.
        st.startNs[slot] = Math.min(last, Math.max(st.lastNs[slot], this.#prevNowNs));
      }
      st.packets[slot] = p;
      st.octets[slot] = b;
      st.lastNs[slot] = Math.max(st.lastNs[slot], last);
      st.tcpFlags[slot] = t.tcpFlags(i);
      st.low[slot] = 0;
      st.epoch[slot] = epoch;
      if (!st.open(slot)) continue;
      const tcp = st.keyBytes[slot * KEY_BYTES + K.proto] === TCP;
      if (!grew && !fresh && tcp && (st.tcpFlags[slot] & (FIN | RST))) {
        this.#emit(slot, EndReason.endOfFlow);
      } else if (nowNs - st.lastNs[slot] >= idleNs) {
        this.#emit(slot, EndReason.idleTimeout);
      } else if (nowNs - st.startNs[slot] >= activeNs) {
        this.#emit(slot, EndReason.activeTimeout);
      }
    }
    // Flows the snapshot no longer has: evicted by the kernel's table.
    for (let slot = 0; slot < st.capacity; slot++) {
      if (!st.isLive(slot) || st.epoch[slot] === epoch) continue;
      this.#emit(slot, EndReason.lackOfResources);
      st.remove(slot);
    }
    this.#prevNowNs = nowNs;
    this.#flush();
    this.#kick();
  }

  /** Datapath ns → wall-clock ms, on the clocks read at the latest snapshot. */
  #ms(ns: number): number {
    return Math.max(0, Math.round(this.#nowMs - (this.#nowNs - ns) / 1e6));
  }

  /** Exports what flow `slot` counted since its last export, ending its record for `reason`. */
  #emit(slot: number, reason: EndReasonCode): void {
    const st = this.#states;
    if (!st.open(slot)) return;
    const kb = st.keyBytes, at = slot * KEY_BYTES;
    const egress = kb[at + K.hook] === Hook.tcEgress;
    const family = kb[at + K.family] === 6 ? 6 : 4;
    const v = this.#values;
    v.packets = st.packets[slot] - st.exPackets[slot];
    v.octets = st.octets[slot] - st.exOctets[slot];
    v.endMs = this.#ms(st.lastNs[slot]);
    v.startMs = Math.min(v.endMs, this.#ms(st.startNs[slot]));
    v.tcpFlags = st.tcpFlags[slot];
    v.endReason = reason;
    v.egress = egress;
    const templateId = flowTemplateId(family, egress), size = FLOW_RECORD_BYTES[family];
    let pos = this.#writer.reserve(templateId, size);
    if (pos < 0) {
      this.#flush();
      pos = this.#writer.reserve(templateId, size);
    }
    writeFlowRecord(this.#writer, pos, kb, at, K, v);
    this.#refs.push(slot, st.hash[slot], st.firstNs[slot], v.packets, v.octets);
    st.exPackets[slot] = st.packets[slot];
    st.exOctets[slot] = st.octets[slot];
    st.startNs[slot] = st.lastNs[slot];
    this.byReason[REASON_NAME[reason]]++;
    if (this.#disk) {
      if (this.#journalLen + ENTRY_BYTES > this.#journal.length) {
        const bigger = new Uint8Array(this.#journal.length * 2);
        bigger.set(this.#journal.subarray(0, this.#journalLen));
        this.#journal = bigger;
      }
      writeEntry(this.#journal, this.#journalLen, st, slot);
      this.#journalLen += ENTRY_BYTES;
    }
  }

  /**
   * Ends the message being packed: journals what it exports (before it can be sent), then
   * queues it, dropping the oldest messages beyond `queue_max_records`.
   */
  #flush(): void {
    if (this.#disk && this.#journalLen > 0) {
      const ok = this.#disk.append(this.#journal.subarray(0, this.#journalLen));
      this.#journalLen = 0;
      if (!ok) this.#persistError();
      else if (this.#disk.wantsCompaction && !this.#disk.compact(this.#states)) {
        this.#persistError();
      }
    }
    if (this.#writer.empty) return;
    const records = this.#writer.records;
    this.#queue.push({ bytes: this.#writer.take(), records, refs: new Float64Array(this.#refs) });
    this.#refs = [];
    this.#queued += records;
    this.#bound();
  }

  #bound(): void {
    while (this.#queued > this.#o.queueMaxRecords && this.#queue.length > 0) {
      const m = this.#queue.shift()!;
      this.#queued -= m.records;
      this.#droppedQueueFull += m.records;
      this.#droppedAt = performance.now();
    }
  }

  #persistError(): void {
    if (this.#persistLogged) return;
    this.#persistLogged = true;
    this.#o.log?.(
      "error",
      "IPFIX: cannot keep what was exported; a restart may count flows twice",
      {
        collector: this.name,
        error: this.#disk?.error,
      },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Sending.

  /** Starts the pump unless it runs, waits for a retry, or has nothing to send. */
  #kick(): void {
    if (this.#pump || this.#timer !== undefined || this.#stopping || !this.#queue.length) return;
    this.#pump = this.#run(Infinity).finally(() => {
      this.#pump = undefined;
      this.#kick(); // what was queued while it finished
    });
  }

  /** Sends queued messages until none is left, a send fails, or `deadline` passes. */
  async #run(deadline: number): Promise<void> {
    let burst = 0;
    while (this.#queue.length > 0 && performance.now() < deadline) {
      if (++burst > PACE_BURST) {
        burst = 0;
        await new Promise((r) => setTimeout(r, PACE_PAUSE_MS));
        continue;
      }
      const wait = this.#retryAt - performance.now();
      if (wait > 0) {
        if (deadline !== Infinity) {
          await new Promise((r) => setTimeout(r, Math.min(wait, deadline - performance.now())));
          continue;
        }
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#kick();
        }, wait);
        return;
      }
      const to = await this.#resolve();
      if (!to) continue;
      const now = performance.now();
      if (this.#resendTemplates || now - this.#templatesAt >= this.#o.templateRefreshS * 1000) {
        if (!await this.#send(this.#templateMessage(), to)) continue;
        this.#seq = (this.#seq + 1) >>> 0; // the sampling options record is a data record
        this.#templatesAt = now;
        this.#resendTemplates = false;
      }
      const m = this.#queue.shift()!;
      this.#queued -= m.records;
      writeHeader(
        m.bytes,
        Math.floor(this.#o.wallMs() / 1000),
        this.#seq,
        this.#o.observationDomainId,
      );
      if (await this.#send(m.bytes, to)) {
        this.#seq = (this.#seq + m.records) >>> 0;
        this.#sent += m.records;
        this.#messages++;
        this.#lastSuccessAt = this.#o.wallMs();
      } else {
        this.#queue.unshift(m);
        this.#queued += m.records;
        this.#bound();
      }
    }
  }

  /** Templates, the sampling options template and its record, in one message. */
  #templateMessage(): Uint8Array {
    const w = new MessageWriter();
    w.appendSet(templateSet(FLOW_TEMPLATES));
    w.appendSet(templateSet([SAMPLING_TEMPLATE]));
    w.appendSet(samplingDataSet(this.#o.observationDomainId), 1);
    const m = w.take();
    writeHeader(m, Math.floor(this.#o.wallMs() / 1000), this.#seq, this.#o.observationDomainId);
    return m;
  }

  /** The collector's address, resolved at most every minute; undefined after a failure. */
  async #resolve(): Promise<{ address: string; family: 4 | 6; at: number } | undefined> {
    const now = performance.now(), a = this.#address;
    if (a && now - a.at < RESOLVE_TTL_MS) return a;
    if (isAddress(this.#host)) {
      return this.#address = {
        address: this.#host,
        family: this.#host.includes(":") ? 6 : 4,
        at: Infinity,
      };
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const r = await Promise.race([
        this.#o.resolve(this.#host),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("timed out")), RESOLVE_TIMEOUT_MS);
        }),
      ]);
      return this.#address = { ...r, at: now };
    } catch (e) {
      const error = `cannot resolve ${this.#host}: ${(e as Error).message}`;
      if (!a) {
        this.#fail(error);
        return undefined;
      }
      // A name that stops resolving keeps its last address, asked again a minute later.
      this.#lastError = error;
      a.at = now;
      return a;
    } finally {
      clearTimeout(timer);
    }
  }

  async #send(msg: Uint8Array, to: { address: string; family: 4 | 6 }): Promise<boolean> {
    try {
      await this.#o.transport.send(msg, to.address, this.#port, to.family);
    } catch (e) {
      const err = e as { code?: string; message?: string };
      this.#fail(`send to ${joinHostPort(to.address, this.#port)}: ${err.code ?? err.message}`);
      return false;
    }
    if (this.#failures > 0) {
      this.#o.log?.("info", "IPFIX: sending again", { collector: this.name });
    }
    this.#failures = 0;
    this.#retryAt = 0;
    this.#lastSentAt = performance.now();
    return true;
  }

  /** Counts a failed send; the next attempt waits 0.25 s, doubling up to 30 s. */
  #fail(error: string): void {
    this.#failed++;
    if (this.#failures === 0) {
      this.#o.log?.("warn", "IPFIX: cannot send; retrying with backoff", {
        collector: this.name,
        error,
      });
    }
    this.#lastError = error;
    this.#retryAt = performance.now() +
      Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.#failures, 16));
    this.#failures++;
    // Whatever made sends fail may have made the collector forget the templates.
    this.#resendTemplates = true;
  }

  // -------------------------------------------------------------------------------------------

  status(): ExportStatus {
    const now = performance.now();
    const failing = this.#failures > 0, waiting = this.#queued > 0;
    let state: HealthState = "healthy";
    const problems: string[] = [];
    if (failing) {
      state = waiting && now - this.#lastSentAt >= UNHEALTHY_AFTER_MS ? "unhealthy" : "degraded";
      problems.push(`sending fails: ${this.#lastError}`);
    }
    if (now - this.#droppedAt < RECENT_MS) {
      if (state === "healthy") state = "degraded";
      problems.push("records dropped in the last minute (queue full)");
    }
    if (this.#disk?.error) {
      if (state === "healthy") state = "degraded";
      problems.push(`${this.#disk.error}: a restart may count flows twice`);
    }
    const dropped = this.#droppedQueueFull + this.#droppedStopped;
    let counts = `sent ${this.#sent} records in ${this.#messages} messages, ${this.#queued} ` +
      `queued, ${dropped} dropped, ${this.#failed} failed sends`;
    // Sending again: the last error stays in view (while failing, it leads the reason).
    if (!failing && this.#lastError) counts += `; last error: ${this.#lastError}`;
    return {
      kind: "ipfix",
      destination: this.#destination,
      state,
      reason: problems.length ? `${problems.join("; ")} (${counts})` : counts,
      sent: this.#sent,
      failed: this.#failed,
      dropped,
      droppedBy: { queue_full: this.#droppedQueueFull, stopped: this.#droppedStopped },
      queued: this.#queued,
      ...(this.#lastSuccessAt === undefined ? {} : { lastSuccessAt: this.#lastSuccessAt }),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }

  /**
   * Ends every open record (forced end), sends what it can within the grace period, takes back
   * what it could not send (a restart exports it again, from the pinned table), saves what was
   * exported, and closes the socket.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const st = this.#states;
    for (let slot = 0; slot < st.capacity; slot++) {
      if (st.isLive(slot)) this.#emit(slot, EndReason.forcedEnd);
    }
    this.#flush();
    const deadline = performance.now() + this.#o.stopGraceMs;
    await this.#pump;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#retryAt = 0; // one more try, whatever the backoff
    await this.#run(deadline);
    this.#stopped = true;
    let gone = 0, unsent = 0;
    for (const m of this.#queue) {
      const g = this.#takeBack(m.refs);
      gone += g;
      unsent += m.records - g;
    }
    this.#queue.length = 0;
    this.#queued = 0;
    let kept = false;
    if (this.#disk) {
      kept = this.#disk.compact(st);
      if (!kept) this.#persistError();
      this.#disk.close();
    }
    // Taken back and saved, the counts go out after the next start; otherwise they are lost.
    this.#droppedStopped += gone + (kept ? 0 : unsent);
    if (gone + unsent > 0) {
      this.#o.log?.("warn", "IPFIX: records not sent before stopping", {
        collector: this.name,
        keptForNextStart: kept ? unsent : 0,
        lost: gone + (kept ? 0 : unsent),
      });
    }
    this.#o.transport.close();
  }

  /** Gives unsent records back to their flows; returns how many belonged to flows now gone. */
  #takeBack(refs: Float64Array): number {
    const st = this.#states;
    let lost = 0;
    for (let r = 0; r < refs.length; r += 5) {
      const slot = refs[r];
      if (!st.isLive(slot) || st.hash[slot] !== refs[r + 1] || st.firstNs[slot] !== refs[r + 2]) {
        lost++;
        continue;
      }
      st.exPackets[slot] = Math.max(0, st.exPackets[slot] - refs[r + 3]);
      st.exOctets[slot] = Math.max(0, st.exOctets[slot] - refs[r + 4]);
    }
    return lost;
  }
}
