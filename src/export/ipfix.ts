/**
 * IPFIX (RFC 7011) as this appliance sends it: the message header, template sets, the options
 * template that says "not sampled", and data records written straight from a raw flow key
 * (bpf/x0tta6bl4.h, struct x0_flow_key). Pure: bytes in, bytes out, no clock and no socket.
 *
 * Four flow templates (IPv4/IPv6 × received/sent), 13 fields each, fixed length (no
 * variable-length fields, no padding):
 *
 *   sourceIPv4Address(8) | sourceIPv6Address(27)                 4 | 16
 *   destinationIPv4Address(12) | destinationIPv6Address(28)      4 | 16
 *   sourceTransportPort(7)                                       2
 *   destinationTransportPort(11)                                 2   (ICMP: type × 256 + code)
 *   protocolIdentifier(4)                                        1
 *   tcpControlBits(6)                                            1   (reduced-size, RFC 7011 6.2)
 *   ingressInterface(10) | egressInterface(14)                   4
 *   flowDirection(61)                                            1   (0 ingress, 1 egress)
 *   flowEndReason(136)                                           1
 *   flowStartMilliseconds(152)                                   8
 *   flowEndMilliseconds(153)                                     8
 *   octetDeltaCount(1)                                           8
 *   packetDeltaCount(2)                                          8
 *
 * and one options template (RFC 7011 3.4.2.2) that says every packet is counted: scope
 * observationDomainId(149), then samplingPacketInterval(305) = 1 and samplingPacketSpace(306) = 0
 * (RFC 5477: systematic count-based selection, 1 packet selected, then 0 skipped). That pair,
 * and only it, is what the collectors read: nfdump 1.7.1 registers it as the domain's sampler
 * (and ignores the whole record once selectorId(302) or selectorAlgorithm(304) is added), later
 * nfdump reads it as "std sampling", pmacct takes 305 and 306 of four bytes each. With space 0
 * none of them scales a count.
 */

export const IPFIX_VERSION = 10;
export const HEADER_BYTES = 16;
export const SET_HEADER_BYTES = 4;
export const TEMPLATE_SET_ID = 2;
export const OPTIONS_TEMPLATE_SET_ID = 3;
/** Set ids from here up are data sets, named by their template id (RFC 7011 3.3.2). */
export const MIN_DATA_SET_ID = 256;
/**
 * At most this many bytes per message: a 1500-byte Ethernet MTU less IPv6 (40) and UDP (8)
 * headers leaves 1452; 1400 also leaves room for a tunnel or VLAN on the way. A record is never
 * split across messages.
 */
export const MAX_MESSAGE_BYTES = 1400;

/** The Information Elements used, by IANA id (RFC 7012, RFC 5102, RFC 5477). */
export const IE = {
  octetDeltaCount: 1,
  packetDeltaCount: 2,
  protocolIdentifier: 4,
  tcpControlBits: 6,
  sourceTransportPort: 7,
  sourceIPv4Address: 8,
  ingressInterface: 10,
  destinationTransportPort: 11,
  destinationIPv4Address: 12,
  egressInterface: 14,
  sourceIPv6Address: 27,
  destinationIPv6Address: 28,
  flowDirection: 61,
  flowEndReason: 136,
  flowStartMilliseconds: 152,
  flowEndMilliseconds: 153,
  observationDomainId: 149,
  samplingPacketInterval: 305,
  samplingPacketSpace: 306,
} as const;

/** flowEndReason (IANA, RFC 5102 5.11.3). */
export const EndReason = {
  idleTimeout: 1,
  activeTimeout: 2,
  endOfFlow: 3,
  forcedEnd: 4,
  lackOfResources: 5,
} as const;
export type EndReasonCode = typeof EndReason[keyof typeof EndReason];

export interface FieldSpec {
  id: number;
  length: number;
}

export interface Template {
  id: number;
  fields: readonly FieldSpec[];
  /** Options templates only: how many of the first fields are scope fields. */
  scopeCount?: number;
}

/** Template ids: flows by family and direction, then the sampling options. */
export const TEMPLATE_ID = {
  ipv4Ingress: 256,
  ipv4Egress: 257,
  ipv6Ingress: 258,
  ipv6Egress: 259,
  sampling: 260,
} as const;

function flowTemplate(id: number, family: 4 | 6, egress: boolean): Template {
  const a = family === 4 ? 4 : 16;
  return {
    id,
    fields: [
      { id: family === 4 ? IE.sourceIPv4Address : IE.sourceIPv6Address, length: a },
      { id: family === 4 ? IE.destinationIPv4Address : IE.destinationIPv6Address, length: a },
      { id: IE.sourceTransportPort, length: 2 },
      { id: IE.destinationTransportPort, length: 2 },
      { id: IE.protocolIdentifier, length: 1 },
      { id: IE.tcpControlBits, length: 1 },
      { id: egress ? IE.egressInterface : IE.ingressInterface, length: 4 },
      { id: IE.flowDirection, length: 1 },
      { id: IE.flowEndReason, length: 1 },
      { id: IE.flowStartMilliseconds, length: 8 },
      { id: IE.flowEndMilliseconds, length: 8 },
      { id: IE.octetDeltaCount, length: 8 },
      { id: IE.packetDeltaCount, length: 8 },
    ],
  };
}

export const FLOW_TEMPLATES: readonly Template[] = [
  flowTemplate(TEMPLATE_ID.ipv4Ingress, 4, false),
  flowTemplate(TEMPLATE_ID.ipv4Egress, 4, true),
  flowTemplate(TEMPLATE_ID.ipv6Ingress, 6, false),
  flowTemplate(TEMPLATE_ID.ipv6Egress, 6, true),
];

export const SAMPLING_TEMPLATE: Template = {
  id: TEMPLATE_ID.sampling,
  scopeCount: 1,
  fields: [
    { id: IE.observationDomainId, length: 4 },
    { id: IE.samplingPacketInterval, length: 4 },
    { id: IE.samplingPacketSpace, length: 4 },
  ],
};

/** Systematic count-based selection of 1 packet out of every 1: all of them. */
export const SAMPLING = { packetInterval: 1, packetSpace: 0 } as const;

export function recordLength(t: Template): number {
  return t.fields.reduce((n, f) => n + f.length, 0);
}

/** Length of a data record of each flow template: 52 bytes for IPv4, 76 for IPv6. */
export const FLOW_RECORD_BYTES = {
  4: recordLength(FLOW_TEMPLATES[0]),
  6: recordLength(FLOW_TEMPLATES[2]),
};

export function flowTemplateId(family: 4 | 6, egress: boolean): number {
  return family === 4
    ? (egress ? TEMPLATE_ID.ipv4Egress : TEMPLATE_ID.ipv4Ingress)
    : (egress ? TEMPLATE_ID.ipv6Egress : TEMPLATE_ID.ipv6Ingress);
}

/** A template set (id 2) or options template set (id 3) holding these templates. */
export function templateSet(templates: readonly Template[]): Uint8Array {
  const options = templates[0]?.scopeCount !== undefined;
  if (templates.some((t) => (t.scopeCount !== undefined) !== options)) {
    throw new TypeError("a template set holds either templates or options templates");
  }
  const head = options ? 6 : 4;
  const size = SET_HEADER_BYTES +
    templates.reduce((n, t) => n + head + 4 * t.fields.length, 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint16(0, options ? OPTIONS_TEMPLATE_SET_ID : TEMPLATE_SET_ID);
  v.setUint16(2, size);
  let at = SET_HEADER_BYTES;
  for (const t of templates) {
    v.setUint16(at, t.id);
    v.setUint16(at + 2, t.fields.length);
    if (options) v.setUint16(at + 4, t.scopeCount!);
    at += head;
    for (const f of t.fields) {
      v.setUint16(at, f.id);
      v.setUint16(at + 2, f.length);
      at += 4;
    }
  }
  return out;
}

/** The data set of the sampling options: one record (SAMPLING) for the observation domain. */
export function samplingDataSet(observationDomainId: number): Uint8Array {
  const size = SET_HEADER_BYTES + recordLength(SAMPLING_TEMPLATE);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint16(0, SAMPLING_TEMPLATE.id);
  v.setUint16(2, size);
  v.setUint32(4, observationDomainId >>> 0);
  v.setUint32(8, SAMPLING.packetInterval);
  v.setUint32(12, SAMPLING.packetSpace);
  return out;
}

/** Writes the 16-byte message header at the start of `msg` (its length is msg.length). */
export function writeHeader(
  msg: Uint8Array,
  exportTimeS: number,
  sequence: number,
  observationDomainId: number,
): void {
  const v = new DataView(msg.buffer, msg.byteOffset, HEADER_BYTES);
  v.setUint16(0, IPFIX_VERSION);
  v.setUint16(2, msg.length);
  v.setUint32(4, exportTimeS >>> 0);
  v.setUint32(8, sequence >>> 0);
  v.setUint32(12, observationDomainId >>> 0);
}

/** The layout of the raw flow key (ffi/layout.ts FLOW_KEY), as offsets. */
export interface KeyLayout {
  size: number;
  saddr: number;
  daddr: number;
  sport: number;
  dport: number;
  ifindex: number;
  proto: number;
  family: number;
  hook: number;
}

/** What a flow record says beyond its key. */
export interface RecordValues {
  octets: number;
  packets: number;
  startMs: number;
  endMs: number;
  tcpFlags: number;
  endReason: EndReasonCode;
  egress: boolean;
}

const ICMP = 1, ICMPV6 = 58;

/** An unsigned integer below 2^53 as 8 big-endian bytes. */
function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, Math.floor(n / 0x1_0000_0000));
  v.setUint32(at + 4, n >>> 0);
}

/**
 * Writes the data record of the flow whose raw key is at `key[keyAt…]` into `w` (a
 * MessageWriter's buffer and its view) at `at`, in the field order of its flow template
 * (flowTemplateId(family, egress)); returns its length.
 */
export function writeFlowRecord(
  w: { buf: Uint8Array; view: DataView },
  at: number,
  key: Uint8Array,
  keyAt: number,
  K: KeyLayout,
  r: RecordValues,
): number {
  const a = key[keyAt + K.family] === 6 ? 16 : 4;
  const start = at, b = w.buf, out = w.view;
  for (let j = 0; j < a; j++) b[at + j] = key[keyAt + K.saddr + j];
  at += a;
  for (let j = 0; j < a; j++) b[at + j] = key[keyAt + K.daddr + j];
  at += a;
  const proto = key[keyAt + K.proto];
  const sport = (key[keyAt + K.sport] << 8) | key[keyAt + K.sport + 1];
  const dport = (key[keyAt + K.dport] << 8) | key[keyAt + K.dport + 1];
  if (proto === ICMP || proto === ICMPV6) {
    // The key holds the type in sport and the code in dport; collectors read ICMP type and
    // code from the destination port (NetFlow's convention, which nfdump and pmacct follow).
    out.setUint16(at, 0);
    out.setUint16(at + 2, ((sport & 0xff) << 8) | (dport & 0xff));
  } else {
    out.setUint16(at, sport);
    out.setUint16(at + 2, dport);
  }
  b[at + 4] = proto;
  b[at + 5] = r.tcpFlags & 0xff;
  const i = keyAt + K.ifindex;
  out.setUint32(
    at + 6,
    (key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24)) >>> 0,
  );
  b[at + 10] = r.egress ? 1 : 0;
  b[at + 11] = r.endReason;
  setU64(out, at + 12, r.startMs);
  setU64(out, at + 20, r.endMs);
  setU64(out, at + 28, r.octets);
  setU64(out, at + 36, r.packets);
  return at + 44 - start;
}

/**
 * Packs sets and records into one message of at most `max` bytes. Data records of the same
 * template share a set; the header is written by finish(), when the sequence number and export
 * time are known (at send time).
 */
export class MessageWriter {
  readonly buf: Uint8Array;
  readonly view: DataView;
  #len = HEADER_BYTES;
  #setAt = -1;
  #setId = 0;
  /** Data records in the message (what its sequence number counts). */
  records = 0;

  /** `max` bytes and at most `maxRecords` data records per message. */
  constructor(readonly max = MAX_MESSAGE_BYTES, readonly maxRecords = Infinity) {
    if (max < HEADER_BYTES + SET_HEADER_BYTES + 1 || max > 65535) {
      throw new RangeError(`message size ${max} out of range`);
    }
    this.buf = new Uint8Array(max);
    this.view = new DataView(this.buf.buffer);
  }

  get length(): number {
    return this.#len;
  }

  get empty(): boolean {
    return this.#len === HEADER_BYTES;
  }

  /**
   * Room for one data record of `bytes` bytes in a set of `setId` (a new set unless the last one
   * has that id): the offset to write it at, or -1 when the message is full.
   */
  reserve(setId: number, bytes: number): number {
    const open = this.#setAt >= 0 && this.#setId === setId;
    const need = bytes + (open ? 0 : SET_HEADER_BYTES);
    if (this.#len + need > this.max || this.records >= this.maxRecords) return -1;
    if (!open) {
      this.#closeSet();
      this.#setAt = this.#len;
      this.#setId = setId;
      this.view.setUint16(this.#len, setId);
      this.#len += SET_HEADER_BYTES;
    }
    const at = this.#len;
    this.#len += bytes;
    this.records++;
    return at;
  }

  /** Appends a whole set (templates, options); false when it does not fit. */
  appendSet(set: Uint8Array, dataRecords = 0): boolean {
    if (this.#len + set.length > this.max) return false;
    this.#closeSet();
    this.buf.set(set, this.#len);
    this.#len += set.length;
    this.records += dataRecords;
    return true;
  }

  #closeSet(): void {
    if (this.#setAt < 0) return;
    this.view.setUint16(this.#setAt + 2, this.#len - this.#setAt);
    this.#setAt = -1;
  }

  /** The message body so far (header bytes left for writeHeader), copied; then empties. */
  take(): Uint8Array {
    this.#closeSet();
    const out = this.buf.slice(0, this.#len);
    this.#len = HEADER_BYTES;
    this.records = 0;
    return out;
  }
}
