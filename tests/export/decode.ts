/**
 * An IPFIX (RFC 7011) reader for the tests: parses messages as a collector would, learning
 * templates from template and options template sets, and checking every length on the way.
 * Written from the RFC independently of src/export/ipfix.ts, so that the two check each other.
 */
import { formatAddress } from "../../src/net/address.ts";

export interface Header {
  version: number;
  length: number;
  exportTime: number;
  sequence: number;
  domain: number;
}

export interface Field {
  id: number;
  length: number;
  enterprise?: number;
}

export interface TemplateDef {
  id: number;
  fields: Field[];
  scopeCount: number;
}

/** A data record: values by element id (numbers, or address text for addresses). */
export type DataRecord = Map<number, number | string>;

export interface ParsedSet {
  id: number;
  length: number;
  templates?: TemplateDef[];
  records?: DataRecord[];
}

export interface ParsedMessage {
  header: Header;
  sets: ParsedSet[];
  /** Data records (flows and options) in the message: what its sequence number counts. */
  dataRecords: number;
}

const ADDRESS4 = new Set([8, 12]);
const ADDRESS6 = new Set([27, 28]);

function readUint(b: Uint8Array, at: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + b[at + i];
  return v;
}

/** A collector's view: templates per observation domain, learned as messages arrive. */
export class Collector {
  readonly templates = new Map<string, TemplateDef>();

  parse(msg: Uint8Array): ParsedMessage {
    const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    if (msg.length < 16) throw new Error(`message of ${msg.length} bytes`);
    const header: Header = {
      version: v.getUint16(0),
      length: v.getUint16(2),
      exportTime: v.getUint32(4),
      sequence: v.getUint32(8),
      domain: v.getUint32(12),
    };
    if (header.version !== 10) throw new Error(`version ${header.version}`);
    if (header.length !== msg.length) {
      throw new Error(`header says ${header.length} bytes, message has ${msg.length}`);
    }
    const sets: ParsedSet[] = [];
    let dataRecords = 0;
    for (let at = 16; at < msg.length;) {
      if (at + 4 > msg.length) throw new Error("truncated set header");
      const id = v.getUint16(at), length = v.getUint16(at + 2);
      if (length < 4 || at + length > msg.length) throw new Error(`set ${id} of length ${length}`);
      const body = msg.subarray(at + 4, at + length);
      if (id === 2 || id === 3) {
        sets.push({ id, length, templates: this.#templates(body, id === 3, header.domain) });
      } else if (id >= 256) {
        const t = this.templates.get(`${header.domain}/${id}`);
        if (!t) throw new Error(`data set ${id} before its template`);
        const records = this.#records(body, t);
        dataRecords += records.length;
        sets.push({ id, length, records });
      } else {
        throw new Error(`reserved set id ${id}`);
      }
      at += length;
    }
    return { header, sets, dataRecords };
  }

  #templates(b: Uint8Array, options: boolean, domain: number): TemplateDef[] {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out: TemplateDef[] = [];
    for (let at = 0; at + 4 <= b.length;) {
      const id = v.getUint16(at), count = v.getUint16(at + 2);
      const scopeCount = options ? v.getUint16(at + 4) : 0;
      if (options && scopeCount === 0) throw new Error("options template without scope");
      at += options ? 6 : 4;
      const fields: Field[] = [];
      for (let i = 0; i < count; i++) {
        if (at + 4 > b.length) throw new Error("truncated template");
        const raw = v.getUint16(at), length = v.getUint16(at + 2);
        at += 4;
        const f: Field = { id: raw & 0x7fff, length };
        if (raw & 0x8000) {
          f.enterprise = v.getUint32(at);
          at += 4;
        }
        fields.push(f);
      }
      const t = { id, fields, scopeCount };
      this.templates.set(`${domain}/${id}`, t);
      out.push(t);
    }
    return out;
  }

  #records(b: Uint8Array, t: TemplateDef): DataRecord[] {
    const size = t.fields.reduce((n, f) => n + f.length, 0);
    if (size === 0) throw new Error("empty template");
    // Padding is allowed only when shorter than a record (RFC 7011 3.3.1).
    if (b.length % size >= size) throw new Error("bad padding");
    const out: DataRecord[] = [];
    for (let at = 0; at + size <= b.length; at += size) {
      const r: DataRecord = new Map();
      let o = at;
      for (const f of t.fields) {
        const bytes = b.subarray(o, o + f.length);
        if (ADDRESS4.has(f.id) && f.length === 4) r.set(f.id, formatAddress(bytes, 4));
        else if (ADDRESS6.has(f.id) && f.length === 16) r.set(f.id, formatAddress(bytes, 6));
        else r.set(f.id, readUint(b, o, f.length));
        o += f.length;
      }
      out.push(r);
    }
    return out;
  }
}
