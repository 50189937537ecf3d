/**
 * A small, dependency-free reader of BTF (BPF Type Format), enough to look up struct layouts and
 * enum values: in a raw blob such as /sys/kernel/btf/vmlinux (`parseBtf`) or in the `.BTF`
 * section of a little-endian ELF64 object built by `clang -target bpf` (`btfFromElf`).
 * Only little-endian, non-split BTF is supported. Format reference:
 * https://docs.kernel.org/bpf/btf.html
 */

/** Raised for input that is not BTF/ELF, is truncated, or lacks what was asked for. */
export class BtfError extends Error {
  override name = "BtfError";
}

export const BtfKind = {
  UNKN: 0,
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

export interface BtfMember {
  readonly name: string;
  /** Byte offset in the struct (for a bitfield: the byte holding its first bit). */
  readonly offset: number;
  /** Size in bytes, resolved through typedefs, modifiers and arrays (bitfields: the base type). */
  readonly size: number;
}

export interface BtfStruct {
  readonly size: number;
  readonly members: BtfMember[];
}

const HEADER_LEN = 24;
const TYPE_LEN = 12; // struct btf_type: name_off, info, size/type
const MAX_CHAIN = 64; // bound on typedef/modifier/array chains, against malformed cycles

/** Bytes of data following a struct btf_type of the given kind with vlen entries. */
function trailingSize(kind: number, vlen: number): number {
  switch (kind) {
    case BtfKind.INT:
    case BtfKind.VAR:
    case BtfKind.DECL_TAG:
      return 4;
    case BtfKind.ARRAY:
      return 12;
    case BtfKind.STRUCT:
    case BtfKind.UNION:
    case BtfKind.DATASEC:
    case BtfKind.ENUM64:
      return 12 * vlen;
    case BtfKind.ENUM:
    case BtfKind.FUNC_PROTO:
      return 8 * vlen;
    case BtfKind.PTR:
    case BtfKind.FWD:
    case BtfKind.TYPEDEF:
    case BtfKind.VOLATILE:
    case BtfKind.CONST:
    case BtfKind.RESTRICT:
    case BtfKind.FUNC:
    case BtfKind.FLOAT:
    case BtfKind.TYPE_TAG:
      return 0;
    default:
      throw new BtfError(`unknown BTF kind ${kind}`);
  }
}

export class Btf {
  /** Byte offset (in `view`) of each type record, indexed by type id; id 0 is void. */
  readonly #offsets: number[] = [0];
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  readonly #strOff: number;
  readonly #strEnd: number;
  readonly #decoder = new TextDecoder();

  constructor(bytes: Uint8Array) {
    if (bytes.length < HEADER_LEN) throw new BtfError("BTF truncated: shorter than its header");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const magic = view.getUint16(0, true);
    if (magic === 0x9feb) throw new BtfError("big-endian BTF is not supported");
    if (magic !== 0xeb9f) throw new BtfError(`not BTF: magic 0x${magic.toString(16)}`);
    const hdrLen = view.getUint32(4, true);
    const typeOff = hdrLen + view.getUint32(8, true);
    const typeEnd = typeOff + view.getUint32(12, true);
    const strOff = hdrLen + view.getUint32(16, true);
    const strEnd = strOff + view.getUint32(20, true);
    if (hdrLen < HEADER_LEN || typeEnd > bytes.length || strEnd > bytes.length) {
      throw new BtfError(`BTF truncated: sections end past the ${bytes.length} bytes given`);
    }
    this.#bytes = bytes;
    this.#view = view;
    this.#strOff = strOff;
    this.#strEnd = strEnd;
    for (let p = typeOff; p < typeEnd;) {
      if (p + TYPE_LEN > typeEnd) throw new BtfError(`BTF truncated: type record at byte ${p}`);
      const info = view.getUint32(p + 4, true);
      const next = p + TYPE_LEN + trailingSize((info >>> 24) & 0x1f, info & 0xffff);
      if (next > typeEnd) throw new BtfError(`BTF truncated: type ${this.#offsets.length}`);
      this.#offsets.push(p);
      p = next;
    }
  }

  kind(id: number): number {
    return id === 0 ? BtfKind.UNKN : (this.#info(id) >>> 24) & 0x1f;
  }

  name(id: number): string {
    return id === 0 ? "" : this.#str(this.#view.getUint32(this.#rec(id), true));
  }

  /** Size in bytes of a type, resolved through typedefs, modifiers, variables and arrays. */
  sizeOf(id: number): number {
    let count = 1;
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
      const p = this.#rec(id);
      const kind = this.kind(id);
      const sizeOrType = this.#view.getUint32(p + 8, true);
      switch (kind) {
        case BtfKind.INT:
        case BtfKind.STRUCT:
        case BtfKind.UNION:
        case BtfKind.ENUM:
        case BtfKind.ENUM64:
        case BtfKind.FLOAT:
        case BtfKind.DATASEC:
          return count * sizeOrType;
        case BtfKind.PTR:
          return count * 8;
        case BtfKind.ARRAY:
          count *= this.#view.getUint32(p + TYPE_LEN + 8, true);
          id = this.#view.getUint32(p + TYPE_LEN, true);
          break;
        case BtfKind.TYPEDEF:
        case BtfKind.VOLATILE:
        case BtfKind.CONST:
        case BtfKind.RESTRICT:
        case BtfKind.TYPE_TAG:
        case BtfKind.VAR:
          id = sizeOrType;
          break;
        default:
          throw new BtfError(`type ${id} (kind ${kind}) has no size`);
      }
    }
    throw new BtfError(`type chain too long at type ${id}`);
  }

  /**
   * Ids of the types with this name, in id order: one pass comparing the name's bytes in the
   * string section, no index kept. An index of the running kernel's names (about 130 000) cost
   * the appliance 20-27 MiB of resident memory for the four look-ups it makes at start.
   */
  idsByName(name: string): readonly number[] {
    if (name === "") return [];
    const want = new TextEncoder().encode(name);
    const bytes = this.#bytes, view = this.#view, out: number[] = [];
    for (let id = 1; id < this.#offsets.length; id++) {
      const at = this.#strOff + view.getUint32(this.#offsets[id], true);
      if (bytes[at + want.length] !== 0 || at + want.length >= this.#strEnd) continue;
      let j = 0;
      while (j < want.length && bytes[at + j] === want[j]) j++;
      if (j === want.length) out.push(id);
    }
    return out;
  }

  /**
   * Layout of `struct name`. Members of anonymous struct/union members are listed in their
   * place, as C lets them be named (e.g. iphdr's saddr inside its __struct_group union).
   */
  struct(name: string): BtfStruct | undefined {
    const id = this.idsByName(name).find((i) => this.kind(i) === BtfKind.STRUCT);
    if (id === undefined) return undefined;
    const members: BtfMember[] = [];
    this.#members(id, 0, members, 0);
    return { size: this.sizeOf(id), members };
  }

  /** Values of `enum name` (ENUM or ENUM64; 64-bit values beyond 2^53 lose precision). */
  enumValues(name: string): Map<string, number> | undefined {
    const id = this.idsByName(name).find((i) => {
      const k = this.kind(i);
      return k === BtfKind.ENUM || k === BtfKind.ENUM64;
    });
    if (id === undefined) return undefined;
    const info = this.#info(id);
    const signed = info >>> 31 === 1;
    const is64 = this.kind(id) === BtfKind.ENUM64;
    const entry = is64 ? 12 : 8;
    const values = new Map<string, number>();
    for (let i = 0, p = this.#rec(id) + TYPE_LEN; i < (info & 0xffff); i++, p += entry) {
      const v = this.#view;
      const lo = signed && !is64 ? v.getInt32(p + 4, true) : v.getUint32(p + 4, true);
      const hi = !is64 ? 0 : signed ? v.getInt32(p + 8, true) : v.getUint32(p + 8, true);
      values.set(this.#str(v.getUint32(p, true)), hi * 2 ** 32 + lo);
    }
    return values;
  }

  #members(id: number, base: number, out: BtfMember[], depth: number): void {
    if (depth > MAX_CHAIN) throw new BtfError(`struct nesting too deep at type ${id}`);
    const info = this.#info(id);
    const bitfields = info >>> 31 === 1; // kind_flag: offset = bitfield_size << 24 | bit_offset
    for (let i = 0, p = this.#rec(id) + TYPE_LEN; i < (info & 0xffff); i++, p += 12) {
      const name = this.#str(this.#view.getUint32(p, true));
      const type = this.#view.getUint32(p + 4, true);
      const raw = this.#view.getUint32(p + 8, true);
      const offset = base + Math.floor((bitfields ? raw & 0xffffff : raw) / 8);
      const target = this.#skipTypedefs(type);
      const k = this.kind(target);
      if (name === "" && (k === BtfKind.STRUCT || k === BtfKind.UNION)) {
        this.#members(target, offset, out, depth + 1);
      } else {
        out.push({ name, offset, size: this.sizeOf(type) });
      }
    }
  }

  #skipTypedefs(id: number): number {
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
      const k = this.kind(id);
      if (
        k !== BtfKind.TYPEDEF && k !== BtfKind.VOLATILE && k !== BtfKind.CONST &&
        k !== BtfKind.RESTRICT && k !== BtfKind.TYPE_TAG
      ) return id;
      id = this.#view.getUint32(this.#rec(id) + 8, true);
    }
    throw new BtfError(`type chain too long at type ${id}`);
  }

  #rec(id: number): number {
    if (!(id > 0 && id < this.#offsets.length)) throw new BtfError(`no BTF type id ${id}`);
    return this.#offsets[id];
  }

  #info(id: number): number {
    return this.#view.getUint32(this.#rec(id) + 4, true);
  }

  #str(off: number): string {
    const start = this.#strOff + off;
    const end = this.#bytes.indexOf(0, start);
    if (start >= this.#strEnd || end < 0 || end >= this.#strEnd) {
      throw new BtfError(`BTF string offset ${off} outside the string section`);
    }
    return this.#decoder.decode(this.#bytes.subarray(start, end));
  }
}

/** Parses a raw BTF blob, such as /sys/kernel/btf/vmlinux. */
export function parseBtf(bytes: Uint8Array): Btf {
  return new Btf(bytes);
}

/** Finds and parses the `.BTF` section of a little-endian ELF64 object (clang -target bpf). */
interface ElfSection {
  name: string;
  type: number;
  link: number;
  data: Uint8Array;
}

/** The sections of a little-endian ELF64 object (as clang -target bpf writes them). */
function elfSections(bytes: Uint8Array): ElfSection[] {
  const isElf = bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 &&
    bytes[2] === 0x4c && bytes[3] === 0x46;
  if (!isElf) throw new BtfError("not an ELF file");
  if (bytes.length < 64) throw new BtfError("ELF truncated: shorter than its header");
  if (bytes[4] !== 2 || bytes[5] !== 1) {
    throw new BtfError("only little-endian ELF64 objects are supported");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u64 = (p: number) => Number(view.getBigUint64(p, true));
  const shoff = u64(0x28);
  const shentsize = view.getUint16(0x3a, true);
  let shnum = view.getUint16(0x3c, true);
  let shstrndx = view.getUint16(0x3e, true);
  const header = (i: number) => {
    const p = shoff + i * shentsize;
    if (shentsize < 64 || p + 64 > bytes.length) {
      throw new BtfError(`ELF truncated: section header ${i} past the end`);
    }
    return {
      name: view.getUint32(p, true),
      type: view.getUint32(p + 4, true),
      offset: u64(p + 24),
      size: u64(p + 32),
      link: view.getUint32(p + 40, true),
      p,
    };
  };
  if (shoff === 0) throw new BtfError("ELF has no section headers, so no .BTF section");
  if (shnum === 0) shnum = header(0).size; // extended numbering
  if (shstrndx === 0xffff) shstrndx = header(0).link;
  const data = (i: number) => {
    const h = header(i);
    if (h.type === 8) return new Uint8Array(0); // SHT_NOBITS (.bss): nothing in the file
    if (h.offset + h.size > bytes.length) throw new BtfError(`ELF truncated: section ${i}`);
    return bytes.subarray(h.offset, h.offset + h.size);
  };
  const names = data(shstrndx);
  const str = (at: number) => {
    const end = names.indexOf(0, at);
    return new TextDecoder().decode(names.subarray(at, end < 0 ? names.length : end));
  };
  const out: ElfSection[] = [{ name: "", type: 0, link: 0, data: new Uint8Array(0) }];
  for (let i = 1; i < shnum; i++) {
    const h = header(i);
    out.push({ name: str(h.name), type: h.type, link: h.link, data: data(i) });
  }
  return out;
}

export function btfFromElf(bytes: Uint8Array): Btf {
  const btf = elfSections(bytes).find((s) => s.name === ".BTF");
  if (!btf) throw new BtfError("ELF has no .BTF section");
  return parseBtf(btf.data);
}

/**
 * Offsets and sizes of the symbols defined in one section of an ELF object, by name: where
 * a global such as a `const volatile` in .rodata lives (BTF in the file leaves them 0).
 */
export function elfSymbols(
  bytes: Uint8Array,
  section: string,
): Map<string, { offset: number; size: number }> {
  const sections = elfSections(bytes);
  const index = sections.findIndex((s) => s.name === section);
  const symtab = sections.find((s) => s.type === 2); // SHT_SYMTAB
  const out = new Map<string, { offset: number; size: number }>();
  if (index < 0 || !symtab) return out;
  const strtab = sections[symtab.link].data;
  const v = new DataView(symtab.data.buffer, symtab.data.byteOffset, symtab.data.byteLength);
  for (let p = 0; p + 24 <= symtab.data.length; p += 24) {
    if (v.getUint16(p + 6, true) !== index) continue;
    const at = v.getUint32(p, true);
    const end = strtab.indexOf(0, at);
    const name = new TextDecoder().decode(strtab.subarray(at, end));
    if (name) {
      out.set(name, {
        offset: Number(v.getBigUint64(p + 8, true)),
        size: Number(v.getBigUint64(p + 16, true)),
      });
    }
  }
  return out;
}
