/**
 * The body of a Prometheus remote-write 1.0 request: a `prometheus.WriteRequest` protobuf (the
 * messages of prometheus/prompb remote.proto and types.proto that 1.0 uses), compressed with
 * snappy's block format. protobufjs encodes from the descriptor below by reflection (no code
 * generation step); snappyjs compresses in plain JavaScript (no native addon, so it runs under
 * Deno without a node_modules folder and in a compiled binary).
 */
import { Root, type Type } from "protobufjs/light.js";
// @ts-types="@types/snappyjs"
import { compress } from "snappyjs";

/** One label, as remote-write sends it (`__name__` holds the metric name). */
export interface Label {
  name: string;
  value: string;
}

/** A sample's value as the bits of its IEEE 754 double: the low and the high 32-bit word. */
export interface ValueBits {
  low: number;
  high: number;
}

/** The series of a request: its labels, sorted by name, and its samples in time order. */
export interface TimeSeries {
  labels: readonly Label[];
  samples: { value: ValueBits; timestamp: number }[];
}

const ROOT = Root.fromJSON({
  nested: {
    prometheus: {
      nested: {
        WriteRequest: {
          fields: {
            timeseries: { rule: "repeated", type: "TimeSeries", id: 1 },
            // Field 3, metadata, is optional in 1.0 and not sent.
          },
          reserved: [[2, 2]],
        },
        TimeSeries: {
          fields: {
            labels: { rule: "repeated", type: "Label", id: 1 },
            samples: { rule: "repeated", type: "Sample", id: 2 },
          },
        },
        Label: {
          fields: { name: { type: "string", id: 1 }, value: { type: "string", id: 2 } },
        },
        Sample: {
          fields: {
            // A double in prompb. fixed64 has the same wire form (8 bytes, little-endian), and is
            // written from the double's bits: a NaN kept as a JavaScript number may be quietened
            // or made canonical by V8 (an object's field did it here), which would turn the stale
            // marker, a signalling NaN, into a plain NaN value.
            value: { type: "fixed64", id: 1 },
            // Milliseconds since the epoch.
            timestamp: { type: "int64", id: 2 },
          },
        },
      },
    },
  },
});

/** `prometheus.WriteRequest`, for encoding here and decoding in tests and stand-in receivers. */
export const WRITE_REQUEST: Type = ROOT.lookupType("prometheus.WriteRequest");

/** The protocol's request headers, besides authentication and the User-Agent. */
export const REMOTE_WRITE_HEADERS: Readonly<Record<string, string>> = {
  "Content-Encoding": "snappy",
  "Content-Type": "application/x-protobuf",
  "X-Prometheus-Remote-Write-Version": "0.1.0",
};

/**
 * The bits of the special NaN that marks a series stale, as a Prometheus scrape writes when a
 * series leaves the page (value.StaleNaN in prometheus/model/value).
 */
export const STALE_NAN_BITS = 0x7ff0000000000002n;

/**
 * The bits of `values[i]`, read from the array's memory (never through a JavaScript number, see
 * Sample above); `words` is a Uint32Array over the same memory (little-endian, as every platform
 * Deno runs on).
 */
export function valueBits(words: Uint32Array, i: number): ValueBits {
  return { low: words[2 * i], high: words[2 * i + 1] };
}

/** A request body: the series encoded as a WriteRequest, snappy block-compressed. */
export function encodeWriteRequest(timeseries: readonly TimeSeries[]): Uint8Array<ArrayBuffer> {
  // Copied into a plain ArrayBuffer, which fetch takes as a body (a Node Buffer's may be pooled).
  return new Uint8Array(compress(WRITE_REQUEST.encode({ timeseries }).finish()));
}
