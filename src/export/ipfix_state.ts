/**
 * What the IPFIX exporter remembers per flow, and how it survives a restart.
 *
 * FlowStates: one row per flow the kernel's table holds (plus flows restored from disk until the
 * first snapshot says whether they still exist), as typed-array columns with an open-addressing
 * index: no object per flow, keys compared as 11 32-bit words. The hash is seeded at random per
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

/** Index entries: 0 empty, DELETED, or a row number + 1. */
const DELETED = 0xffff_ffff;

/**
 * Rows (one per flow, dense, reused once freed: a row keeps its number for the flow's life) and an
 * open-addressing index over them, at most 3/4 full. About 110 bytes a row and 4 an index slot: at
 * 100k flows, about 15 MB.
 */
export class FlowStates {
  #index = new Uint32Array(0);
  #mask = 0;
  #inIndex = 0; // live and deleted entries
  #rows = 0; // rows ever used (the next new one)
  #free: number[] = [];
  #live = 0;
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
  /** The snapshot that last showed the flow (1..255, cycling; 0: none yet). */
  epoch = new Uint8Array(0);

  constructor(capacity = 1024, seed = crypto.getRandomValues(new Uint32Array(1))[0]) {
    this.#seed = seed;
    this.#growRows(Math.max(16, capacity));
    this.#reindex(Math.max(16, 2 ** Math.ceil(Math.log2((capacity * 4) / 3))));
  }

  get size(): number {
    return this.#live;
  }

  /** Rows to look at when iterating: row numbers are below it; isLive() says which are flows. */
  get capacity(): number {
    return this.#rows;
  }

  #growRows(n: number): void {
    const grow = <T extends Uint8Array | Uint32Array | Float64Array>(
      a: T,
      make: (n: number) => T,
    ) => {
      const b = make(a === this.words ? n * KEY_WORDS : n);
      b.set(a);
      return b;
    };
    this.words = grow(this.words, (m) => new Uint32Array(m));
    this.keyBytes = new Uint8Array(this.words.buffer);
    this.hash = grow(this.hash, (m) => new Uint32Array(m));
    this.used = grow(this.used, (m) => new Uint8Array(m));
    for (
      const c of [
        "exPackets",
        "exOctets",
        "packets",
        "octets",
        "firstNs",
        "lastNs",
        "startNs",
      ] as const
    ) {
      this[c] = grow(this[c], (m) => new Float64Array(m));
    }
    this.tcpFlags = grow(this.tcpFlags, (m) => new Uint8Array(m));
    this.low = grow(this.low, (m) => new Uint8Array(m));
    this.epoch = grow(this.epoch, (m) => new Uint8Array(m));
  }

  /** A new index of `size` slots holding every live row. */
  #reindex(size: number): void {
    this.#index = new Uint32Array(size);
    this.#mask = size - 1;
    this.#inIndex = 0;
    for (let row = 0; row < this.#rows; row++) if (this.used[row]) this.#place(row);
  }

  #place(row: number): void {
    let s = this.hash[row] & this.#mask;
    while (this.#index[s] !== 0 && this.#index[s] !== DELETED) s = (s + 1) & this.#mask;
    if (this.#index[s] === 0) this.#inIndex++;
    this.#index[s] = row + 1;
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

  #same(row: number, w: Uint32Array, at: number): boolean {
    const o = row * KEY_WORDS, k = this.words;
    for (let j = 0; j < KEY_WORDS; j++) if (k[o + j] !== w[at + j]) return false;
    return true;
  }

  /** The row of the key at `w[at…]` (hash `h`), or -1. */
  find(w: Uint32Array, at: number, h: number): number {
    for (let s = h & this.#mask;; s = (s + 1) & this.#mask) {
      const e = this.#index[s];
      if (e === 0) return -1;
      if (e !== DELETED && this.hash[e - 1] === h && this.#same(e - 1, w, at)) return e - 1;
    }
  }

  /** A zeroed row for a key that is not in the table; returns its number. */
  insert(w: Uint32Array, at: number, h: number): number {
    // At most 3/4 full, deleted entries included: a probe always ends at an empty slot.
    if ((this.#inIndex + 1) * 4 > this.#index.length * 3) {
      const n = this.#index.length;
      this.#reindex((this.#live + 1) * 2 > n ? n * 2 : n);
    }
    let row = this.#free.pop();
    if (row === undefined) {
      if (this.#rows === this.used.length) this.#growRows(this.used.length * 2);
      row = this.#rows++;
    }
    this.used[row] = 1;
    this.hash[row] = h;
    this.words.set(w.subarray(at, at + KEY_WORDS), row * KEY_WORDS);
    this.reset(row, 0);
    this.epoch[row] = 0;
    this.#live++;
    this.#place(row);
    return row;
  }

  /** Forgets what was exported of the flow in `row`: a new flow with this key from now. */
  reset(row: number, firstNs: number): void {
    this.exPackets[row] =
      this.exOctets[row] =
      this.packets[row] =
      this.octets[row] =
        0;
    this.firstNs[row] = this.lastNs[row] = this.startNs[row] = firstNs;
    this.tcpFlags[row] = this.low[row] = 0;
  }

  remove(row: number): void {
    let s = this.hash[row] & this.#mask;
    while (this.#index[s] !== row + 1) s = (s + 1) & this.#mask;
    this.#index[s] = DELETED;
    this.used[row] = 0;
    this.#free.push(row);
    this.#live--;
  }

  /** Counts seen that are not exported yet. */
  open(row: number): boolean {
    return this.packets[row] > this.exPackets[row] || this.octets[row] > this.exOctets[row];
  }

  isLive(row: number): boolean {
    return this.used[row] === 1;
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

/** Writes the exported counters of `row` as one entry at `out[at…]`. */
export function writeEntry(out: Uint8Array, at: number, s: FlowStates, row: number): void {
  out.set(s.keyBytes.subarray(row * KEY_BYTES, (row + 1) * KEY_BYTES), at);
  const v = new DataView(out.buffer, out.byteOffset + at + KEY_BYTES, 32);
  v.setFloat64(0, s.exPackets[row], true);
  v.setFloat64(8, s.exOctets[row], true);
  v.setFloat64(16, s.firstNs[row], true);
  v.setFloat64(24, s.lastNs[row], true);
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
        let row = s.find(w, 0, h);
        if (row < 0) row = s.insert(w, 0, h);
        s.exPackets[row] = s.packets[row] = v.getFloat64(0, true);
        s.exOctets[row] = s.octets[row] = v.getFloat64(8, true);
        s.firstNs[row] = v.getFloat64(16, true);
        s.lastNs[row] = s.startNs[row] = v.getFloat64(24, true);
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
    for (let row = 0; row < s.capacity; row++) {
      if (s.isLive(row) && (s.exPackets[row] > 0 || s.exOctets[row] > 0)) n++;
    }
    const out = new Uint8Array(HEAD_BYTES + n * ENTRY_BYTES);
    out.set(this.#head());
    let at = HEAD_BYTES;
    for (let row = 0; row < s.capacity; row++) {
      if (!s.isLive(row) || (s.exPackets[row] === 0 && s.exOctets[row] === 0)) continue;
      writeEntry(out, at, s, row);
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
