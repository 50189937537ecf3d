/**
 * What the IPFIX exporter remembers per flow, and how it survives a restart.
 *
 * FlowStates: one row per flow the kernel's table holds (plus flows restored from disk until the
 * first snapshot says whether they still exist), in an open-addressing hash table over typed
 * arrays: no object per flow, keys compared as 11 32-bit words. The hash is seeded at random per
 * process, so flows an attacker chooses cannot be made to collide.
 *
 * ExportedLog: the counters already exported per flow, on disk in the state directory. Every
 * record is appended to a journal before it is handed to the socket (a crash never makes a flow
 * count twice); the journal is folded into a snapshot file (written to a temporary file,
 * fsynced, renamed) when it grows past twice the snapshot's size and at stop. Both files carry
 * the kernel's boot id: after a reboot the pinned flow table is gone, and so is what was
 * exported of it.
 */
import { FLOW_KEY } from "../../ffi/layout.ts";

export const KEY_BYTES = FLOW_KEY.size;
export const KEY_WORDS = FLOW_KEY.size / 4;

const EMPTY = 0, LIVE = 1, GONE = 2;

export class FlowStates {
  #cap = 0;
  #mask = 0;
  #live = 0;
  #gone = 0;
  readonly #seed: number;
  words = new Uint32Array(0);
  /** The same keys as bytes (FLOW_KEY layout), for writing records. */
  keyBytes = new Uint8Array(0);
  hash = new Uint32Array(0);
  used = new Uint8Array(0);
  /** Counters exported so far (cumulative, since the flow entered the kernel's table). */
  exPackets = new Float64Array(0);
  exOctets = new Float64Array(0);
  /** Counters, first and last packet as the latest snapshot showed them. */
  packets = new Float64Array(0);
  octets = new Float64Array(0);
  firstNs = new Float64Array(0);
  lastNs = new Float64Array(0);
  /** Start of the record not yet exported (its first packet came at or after this). */
  startNs = new Float64Array(0);
  tcpFlags = new Uint8Array(0);
  /** Consecutive snapshots whose counters were below the ones kept. */
  low = new Uint8Array(0);
  /** The snapshot that last showed the flow. */
  epoch = new Uint32Array(0);

  constructor(capacity = 1024, seed = crypto.getRandomValues(new Uint32Array(1))[0]) {
    this.#seed = seed;
    this.#alloc(Math.max(16, 2 ** Math.ceil(Math.log2(capacity * 2))));
  }

  get size(): number {
    return this.#live;
  }

  get capacity(): number {
    return this.#cap;
  }

  #alloc(cap: number): void {
    this.#cap = cap;
    this.#mask = cap - 1;
    this.words = new Uint32Array(cap * KEY_WORDS);
    this.keyBytes = new Uint8Array(this.words.buffer);
    this.hash = new Uint32Array(cap);
    this.used = new Uint8Array(cap);
    this.exPackets = new Float64Array(cap);
    this.exOctets = new Float64Array(cap);
    this.packets = new Float64Array(cap);
    this.octets = new Float64Array(cap);
    this.firstNs = new Float64Array(cap);
    this.lastNs = new Float64Array(cap);
    this.startNs = new Float64Array(cap);
    this.tcpFlags = new Uint8Array(cap);
    this.low = new Uint8Array(cap);
    this.epoch = new Uint32Array(cap);
    this.#live = this.#gone = 0;
  }

  /** MurmurHash3 (x86, 32-bit) of the key of 11 words at `w[at…]`, with this table's seed. */
  hashOf(w: Uint32Array, at: number): number {
    let h = this.#seed;
    for (let j = 0; j < KEY_WORDS; j++) {
      let k = Math.imul(w[at + j], 0xcc9e2d51);
      k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
      h ^= k;
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    }
    h ^= KEY_BYTES;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }

  #same(slot: number, w: Uint32Array, at: number): boolean {
    const o = slot * KEY_WORDS, k = this.words;
    for (let j = 0; j < KEY_WORDS; j++) if (k[o + j] !== w[at + j]) return false;
    return true;
  }

  /** The slot of the key at `w[at…]` (hash `h`), or -1. */
  find(w: Uint32Array, at: number, h: number): number {
    for (let s = h & this.#mask;; s = (s + 1) & this.#mask) {
      const u = this.used[s];
      if (u === EMPTY) return -1;
      if (u === LIVE && this.hash[s] === h && this.#same(s, w, at)) return s;
    }
  }

  /** A zeroed row for a key that is not in the table; returns its slot. */
  insert(w: Uint32Array, at: number, h: number): number {
    if ((this.#live + this.#gone + 1) * 2 > this.#cap) this.#rehash();
    let s = h & this.#mask;
    while (this.used[s] === LIVE) s = (s + 1) & this.#mask;
    if (this.used[s] === GONE) this.#gone--;
    this.used[s] = LIVE;
    this.hash[s] = h;
    this.words.set(w.subarray(at, at + KEY_WORDS), s * KEY_WORDS);
    this.reset(s, 0);
    this.epoch[s] = 0;
    this.#live++;
    return s;
  }

  /** Forgets what was exported of the flow in `slot`: a new flow with this key from now. */
  reset(slot: number, firstNs: number): void {
    this.exPackets[slot] =
      this.exOctets[slot] =
      this.packets[slot] =
      this.octets[slot] =
        0;
    this.firstNs[slot] = this.lastNs[slot] = this.startNs[slot] = firstNs;
    this.tcpFlags[slot] = this.low[slot] = 0;
  }

  remove(slot: number): void {
    this.used[slot] = GONE;
    this.#live--;
    this.#gone++;
  }

  /** Counts seen that are not exported yet. */
  open(slot: number): boolean {
    return this.packets[slot] > this.exPackets[slot] || this.octets[slot] > this.exOctets[slot];
  }

  isLive(slot: number): boolean {
    return this.used[slot] === LIVE;
  }

  /** Doubles the table when live rows fill it; rebuilds it in place when deleted rows do. */
  #rehash(): void {
    const old = {
      cap: this.#cap,
      words: this.words,
      hash: this.hash,
      used: this.used,
      cols: [
        this.exPackets,
        this.exOctets,
        this.packets,
        this.octets,
        this.firstNs,
        this.lastNs,
        this.startNs,
      ],
      tcpFlags: this.tcpFlags,
      low: this.low,
      epoch: this.epoch,
    };
    const live = this.#live;
    this.#alloc((live + 1) * 4 > old.cap ? old.cap * 2 : old.cap);
    const cols = [
      this.exPackets,
      this.exOctets,
      this.packets,
      this.octets,
      this.firstNs,
      this.lastNs,
      this.startNs,
    ];
    for (let o = 0; o < old.cap; o++) {
      if (old.used[o] !== LIVE) continue;
      let s = old.hash[o] & this.#mask;
      while (this.used[s] !== EMPTY) s = (s + 1) & this.#mask;
      this.used[s] = LIVE;
      this.hash[s] = old.hash[o];
      this.words.set(old.words.subarray(o * KEY_WORDS, (o + 1) * KEY_WORDS), s * KEY_WORDS);
      for (let c = 0; c < cols.length; c++) cols[c][s] = old.cols[c][o];
      this.tcpFlags[s] = old.tcpFlags[o];
      this.low[s] = old.low[o];
      this.epoch[s] = old.epoch[o];
    }
    this.#live = live;
  }
}

// ---------------------------------------------------------------------------------------------
// On disk.

const MAGIC = new TextEncoder().encode("X0IPFIX1");
const HEAD_BYTES = MAGIC.length + 16;
/** Key, then exported packets and octets, first and last packet (f64, little-endian). */
export const ENTRY_BYTES = KEY_BYTES + 32;
const MIN_JOURNAL_BYTES = 1 << 20;

/** The kernel's boot id as 16 bytes (zeros where it cannot be read). */
export function bootId(): Uint8Array {
  const out = new Uint8Array(16);
  try {
    const hex = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").replace(/[^0-9a-f]/gi, "");
    for (let i = 0; i < 16 && i * 2 + 2 <= hex.length; i++) {
      out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    }
  } catch { /* not Linux, or no procfs: every run matches every other */ }
  return out;
}

/** Writes the exported counters of `slot` as one entry at `out[at…]`. */
export function writeEntry(out: Uint8Array, at: number, s: FlowStates, slot: number): void {
  out.set(s.keyBytes.subarray(slot * KEY_BYTES, (slot + 1) * KEY_BYTES), at);
  const v = new DataView(out.buffer, out.byteOffset + at + KEY_BYTES, 32);
  v.setFloat64(0, s.exPackets[slot], true);
  v.setFloat64(8, s.exOctets[slot], true);
  v.setFloat64(16, s.firstNs[slot], true);
  v.setFloat64(24, s.lastNs[slot], true);
}

function writeAll(f: Deno.FsFile, b: Uint8Array): void {
  for (let at = 0; at < b.length;) at += f.writeSync(b.subarray(at));
}

export class ExportedLog {
  readonly snapshotPath: string;
  readonly journalPath: string;
  readonly #boot: Uint8Array;
  #journal?: Deno.FsFile;
  #journalBytes = 0;
  #snapshotEntries = 0;
  /** The last failure to read or write, until a write succeeds again. */
  error?: string;

  /** `path` without extension: `<state_dir>/ipfix-<collector>`. */
  constructor(path: string, boot = bootId()) {
    this.snapshotPath = `${path}.state`;
    this.journalPath = `${path}.journal`;
    this.#boot = boot;
    try {
      Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true, mode: 0o700 });
    } catch { /* the first write says why */ }
  }

  #head(): Uint8Array {
    const h = new Uint8Array(HEAD_BYTES);
    h.set(MAGIC);
    h.set(this.#boot, MAGIC.length);
    return h;
  }

  /** The entries of a file written in this boot; none from another boot or another format. */
  #entries(path: string): { bytes: Uint8Array; count: number } {
    let b: Uint8Array;
    try {
      b = Deno.readFileSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) this.error = `cannot read ${path}: ${e}`;
      return { bytes: new Uint8Array(0), count: 0 };
    }
    const head = this.#head();
    if (b.length < HEAD_BYTES || head.some((x, i) => b[i] !== x)) {
      return { bytes: new Uint8Array(0), count: 0 };
    }
    // A journal cut short by a crash ends in a partial entry: it is ignored.
    return { bytes: b, count: Math.floor((b.length - HEAD_BYTES) / ENTRY_BYTES) };
  }

  /**
   * Restores into `s` every flow exported in this boot (the snapshot, then the journal: a later
   * entry wins), with counters seen equal to counters exported; returns how many.
   */
  load(s: FlowStates): number {
    const w = new Uint32Array(KEY_WORDS), wb = new Uint8Array(w.buffer);
    for (const path of [this.snapshotPath, this.journalPath]) {
      const { bytes, count } = this.#entries(path);
      for (let i = 0; i < count; i++) {
        const at = HEAD_BYTES + i * ENTRY_BYTES;
        wb.set(bytes.subarray(at, at + KEY_BYTES));
        const v = new DataView(bytes.buffer, bytes.byteOffset + at + KEY_BYTES, 32);
        const h = s.hashOf(w, 0);
        let slot = s.find(w, 0, h);
        if (slot < 0) slot = s.insert(w, 0, h);
        s.exPackets[slot] = s.packets[slot] = v.getFloat64(0, true);
        s.exOctets[slot] = s.octets[slot] = v.getFloat64(8, true);
        s.firstNs[slot] = v.getFloat64(16, true);
        s.lastNs[slot] = s.startNs[slot] = v.getFloat64(24, true);
      }
    }
    return s.size;
  }

  /** Appends entries (ENTRY_BYTES each) to the journal; false (and `error`) if it cannot. */
  append(entries: Uint8Array): boolean {
    if (entries.length === 0) return true;
    try {
      if (!this.#journal) {
        this.#journal = Deno.openSync(this.journalPath, { append: true, create: true });
        this.#journalBytes = this.#journal.statSync().size;
        if (this.#journalBytes < HEAD_BYTES) {
          this.#journal.truncateSync(0);
          writeAll(this.#journal, this.#head());
          this.#journalBytes = HEAD_BYTES;
        }
      }
      writeAll(this.#journal, entries);
      this.#journalBytes += entries.length;
      return true;
    } catch (e) {
      this.error = `cannot append to ${this.journalPath}: ${(e as Error).message}`;
      this.#journal?.close();
      this.#journal = undefined;
      return false;
    }
  }

  /** True when the journal has outgrown the snapshot it extends. */
  get wantsCompaction(): boolean {
    return this.#journalBytes >
      Math.max(MIN_JOURNAL_BYTES, 2 * this.#snapshotEntries * ENTRY_BYTES);
  }

  /**
   * Writes every exported flow of `s` as the new snapshot (temporary file, fsync, rename) and
   * empties the journal. False (and `error`) if it cannot; the journal then stays.
   */
  compact(s: FlowStates): boolean {
    let n = 0;
    for (let slot = 0; slot < s.capacity; slot++) {
      if (s.isLive(slot) && (s.exPackets[slot] > 0 || s.exOctets[slot] > 0)) n++;
    }
    const out = new Uint8Array(HEAD_BYTES + n * ENTRY_BYTES);
    out.set(this.#head());
    let at = HEAD_BYTES;
    for (let slot = 0; slot < s.capacity; slot++) {
      if (!s.isLive(slot) || (s.exPackets[slot] === 0 && s.exOctets[slot] === 0)) continue;
      writeEntry(out, at, s, slot);
      at += ENTRY_BYTES;
    }
    const tmp = `${this.snapshotPath}.tmp`;
    try {
      const f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
      try {
        writeAll(f, out);
        f.syncSync();
      } finally {
        f.close();
      }
      Deno.renameSync(tmp, this.snapshotPath);
    } catch (e) {
      this.error = `cannot write ${this.snapshotPath}: ${(e as Error).message}`;
      return false;
    }
    this.#journal?.close();
    this.#journal = undefined;
    // The journal's entries are older than the snapshot's: replayed after it, they would
    // undo it. Removed, or at least emptied.
    try {
      Deno.removeSync(this.journalPath);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        try {
          Deno.truncateSync(this.journalPath, 0);
        } catch {
          this.error = `cannot remove ${this.journalPath}: ${(e as Error).message}`;
          return false;
        }
      }
    }
    this.#snapshotEntries = n;
    this.#journalBytes = 0;
    this.error = undefined;
    return true;
  }

  close(): void {
    this.#journal?.close();
    this.#journal = undefined;
  }
}
