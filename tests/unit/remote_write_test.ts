/**
 * Remote-write without a network: the /metrics page as samples (the real MetricsRenderer's
 * page, parsed back), stale markers, external labels, hostile lines, and the WriteRequest body
 * decoded again with the same libraries a test receiver uses.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Page,
  PageSampler,
  parseSeries,
  parseValue,
  type Series,
  STEP_LINES,
} from "../../src/export/remote_write_series.ts";
import {
  encodeWriteRequest,
  type Label,
  STALE_NAN_BITS,
  valueBits,
} from "../../src/export/remote_write_wire.ts";
import { MetricsRenderer } from "../../src/metrics/exposition.ts";
import { formatLabels, formatValue, MetricHistogram } from "../../src/metrics/writer.ts";
import { BUILD, decodeWriteRequest, flow, snapshot } from "../helpers/remote_write.ts";

const renderer = (topFlows = 1) =>
  new MetricsRenderer({ topFlows, interfaceAllow: [], interfaceDeny: [], processMetrics: false });

/** A page read to its end. */
function read(sampler: PageSampler, text: string, timestamp: number): Page {
  const reading = sampler.sample(text, timestamp);
  for (;;) {
    const step = reading.next();
    if (step.done) return step.value;
  }
}

/** Labels as an object, for comparisons. */
const obj = (labels: readonly Label[]) => Object.fromEntries(labels.map((l) => [l.name, l.value]));

/** The value of the series whose labels include `want`, and how many such series there are. */
function find(page: { series: readonly Series[]; values: Float64Array }, want: Label[]) {
  const hits = page.series.map((s, i) => ({ s, v: page.values[i] }))
    .filter(({ s }) =>
      want.every((w) => s.labels.some((l) => l.name === w.name && l.value === w.value))
    );
  return { count: hits.length, value: hits[0]?.v, labels: hits[0]?.s.labels };
}

/** The bits of values[i] (a stale marker must be read as bits: see STALE_NAN_BITS). */
const bitsAt = (values: Float64Array, i: number) => new BigUint64Array(values.buffer)[i];

Deno.test("remote-write: sample values as the exposition format writes them", () => {
  for (const v of [0, 1, -2.5, 1e21, 1.5e-7, 123456789012345, Infinity, -Infinity]) {
    assert.equal(parseValue(formatValue(v)), v);
  }
  assert.ok(Number.isNaN(parseValue("NaN")));
  for (const bad of ["", " ", "0x10", "Infinity", "1,5", "--1", "1e", "inf"]) {
    assert.equal(parseValue(bad), undefined, bad);
  }
});

Deno.test("remote-write: series text parses back to the labels the writer escaped", () => {
  assert.deepEqual(parseSeries("up"), [{ name: "__name__", value: "up" }]);
  assert.deepEqual(parseSeries('a_b:c{x="1",y="q\\"uote\\\\back\\nline, } {"}'), [
    { name: "__name__", value: "a_b:c" },
    { name: "x", value: "1" },
    { name: "y", value: 'q"uote\\back\nline, } {' },
  ]);
  for (
    const [bad, why] of [
      ["", /no metric name/],
      ["9up", /no metric name/],
      ['up{x="1"', /bad label set/],
      ['up{x="1"}x', /bad label set/],
      ['up{x="1}', /unterminated/],
      ['up{x="\\t"}', /bad escape/],
      ['up{x="1"y="2"}', /no comma/],
      ['up{__name__="x"}', /reserved/],
      ['up{x="1",x="2"}', /twice/],
      ['up{="1"}', /bad label name/],
      ["up{x=1}", /no ="…"/],
    ] as const
  ) {
    const r = parseSeries(bad);
    assert.equal(typeof r, "string", bad);
    assert.match(r as string, why, bad);
  }
});

Deno.test("remote-write: any label values survive the writer's escaping and the parser", () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ unit: "grapheme", maxLength: 20 }), { minLength: 1, maxLength: 4 }),
      (values) => {
        const names = values.map((_, i) => `l${i}`);
        const labels = parseSeries(`m${formatLabels(names, values)}`);
        assert.notEqual(typeof labels, "string");
        assert.deepEqual(
          (labels as Label[]).slice(1),
          names.map((name, i) => ({ name, value: values[i] })),
        );
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("remote-write: a rendered page becomes one sample per line, with its labels", () => {
  const r = renderer();
  const text = r.renderSnapshot(snapshot([flow(53, 900), flow(443, 100)]), [], BUILD);
  const page = read(new PageSampler([{ name: "job", value: "x0tta6bl4" }]), text, 42);
  const lines = text.split("\n").filter((l) => l && !l.startsWith("#"));
  assert.equal(page.errors, 0, page.firstError);
  assert.equal(page.stale, 0);
  assert.equal(page.series.length, lines.length);
  assert.equal(page.timestamp, 42);
  // Every line is there, in order, with its name, value and each label.
  lines.forEach((line, i) => {
    const { __name__, job, ...rest } = obj(page.series[i].labels);
    assert.ok(line.startsWith(__name__), line);
    assert.ok(line.endsWith(` ${formatValue(page.values[i])}`), line);
    for (const [k, v] of Object.entries(rest)) {
      assert.ok(line.includes(formatLabels([k], [v]).slice(1, -1)), line);
    }
    assert.equal(job, "x0tta6bl4");
    const names = page.series[i].labels.map((l) => l.name);
    assert.deepEqual(names, [...names].sort(), "labels sorted by name");
  });
  const ifPackets = find(page, [
    { name: "__name__", value: "x0tta6bl4_interface_packets_total" },
    { name: "direction", value: "rx" },
  ]);
  assert.equal(ifPackets.count, 1);
  assert.equal(ifPackets.value, 10);
  // Top 1 flow: only the biggest is on the page.
  const flows = find(page, [{ name: "__name__", value: "x0tta6bl4_flow_bytes_total" }]);
  assert.equal(flows.count, 1);
  assert.equal(flows.value, 900);
  assert.equal(obj(flows.labels!).dport, "53");
});

Deno.test("remote-write: histograms are their _bucket, _sum and _count series", () => {
  const h = new MetricHistogram("x0tta6bl4_rtt_seconds", "RTT.", [0.01, 0.1], ["peer"]);
  h.set(["b"], [2, 3], 0.25, 6);
  const page = read(new PageSampler([]), h.render(), 1);
  const got = page.series.map((s, i) => {
    const { __name__, ...rest } = obj(s.labels);
    return [__name__, rest.le ?? "", page.values[i]];
  });
  assert.deepEqual(got, [
    ["x0tta6bl4_rtt_seconds_bucket", "0.01", 2],
    ["x0tta6bl4_rtt_seconds_bucket", "0.1", 5],
    ["x0tta6bl4_rtt_seconds_bucket", "+Inf", 6],
    ["x0tta6bl4_rtt_seconds_sum", "", 0.25],
    ["x0tta6bl4_rtt_seconds_count", "", 6],
  ]);
});

Deno.test("remote-write: external labels fill in, the series' own win, empty ones vanish", () => {
  const sampler = new PageSampler([
    { name: "instance", value: "box-1" },
    { name: "job", value: "x0tta6bl4" },
    { name: "site", value: "" },
  ]);
  const page = read(sampler, 'a{job="own",x=""} 1\nb 2\n', 1);
  assert.deepEqual(page.series.map((s) => obj(s.labels)), [
    { __name__: "a", instance: "box-1", job: "own" },
    { __name__: "b", instance: "box-1", job: "x0tta6bl4" },
  ]);
});

Deno.test("remote-write: a series gone from the page gets a stale marker, once", () => {
  const r = renderer();
  const sampler = new PageSampler([]);
  const first = read(sampler, r.renderSnapshot(snapshot([flow(53, 900)]), [], BUILD), 1);
  assert.equal(first.stale, 0);
  // The flow on port 53 leaves the top 1 (the one on 443 is bigger now).
  const second = read(
    sampler,
    r.renderSnapshot(snapshot([flow(53, 900), flow(443, 5000)]), [], BUILD),
    2,
  );
  assert.equal(second.stale, 2, "flow_bytes_total and flow_packets_total of port 53");
  const gone = second.series.map((s, i) => ({ l: obj(s.labels), i }))
    .filter(({ l }) => l.dport === "53");
  assert.equal(gone.length, 2);
  for (const { i } of gone) assert.equal(bitsAt(second.values, i), STALE_NAN_BITS, "StaleNaN");
  // A series that stays reuses its parsed labels.
  const keep = (p: typeof first) =>
    p.series.find((s) => obj(s.labels).__name__ === "x0tta6bl4_interface_packets_total");
  assert.equal(keep(second), keep(first));
  const third = read(
    sampler,
    r.renderSnapshot(snapshot([flow(53, 900), flow(443, 5000)]), [], BUILD),
    3,
  );
  assert.equal(third.stale, 0, "marked stale once only");
});

Deno.test("remote-write: a large page is read a slice of lines at a time", () => {
  const sampler = new PageSampler([]);
  const lines = 3 * STEP_LINES + 5;
  const text = Array.from({ length: lines }, (_, i) => `m{i="${i}"} ${i}`).join("\n");
  const reading = sampler.sample(text, 1);
  let yields = 0, step = reading.next();
  for (; !step.done; step = reading.next()) yields++;
  assert.equal(yields, 3);
  assert.equal(step.value.series.length, lines);
  assert.equal(step.value.values[lines - 1], lines - 1);
  // The next page, empty: every series ends with a stale marker, read in one go.
  const empty = read(sampler, "", 2);
  assert.equal(empty.stale, lines);
  assert.equal(bitsAt(empty.values, lines - 1), STALE_NAN_BITS);
});

Deno.test("remote-write: lines that are not samples are skipped and counted", () => {
  const sampler = new PageSampler([]);
  const page = read(
    sampler,
    [
      "# HELP ok A fine one.",
      "ok 1",
      "novalue",
      "ok 2",
      'bad{x="1" 3',
      "also bad value",
      "",
      "fine_too -Inf",
    ].join("\n"),
    1,
  );
  assert.deepEqual(page.series.map((s) => obj(s.labels).__name__), ["ok", "fine_too"]);
  assert.deepEqual([...page.values], [1, -Infinity]);
  assert.equal(page.errors, 4);
  assert.match(page.firstError!, /no value: "novalue"/);
  const long = read(sampler, `x{a="${"z".repeat(5000)}`, 2);
  assert.ok(long.firstError!.length < 200, "a long bad line is cut in the error");
  assert.equal(long.stale, 2, "ok and fine_too are gone");
});

Deno.test("remote-write: the request body decodes to the series, samples and stale marker", () => {
  const labels = [{ name: "__name__", value: "x" }, { name: "y", value: 'ü"\n' }];
  const values = new Float64Array([1.5, -0, 0]);
  new BigUint64Array(values.buffer)[2] = STALE_NAN_BITS;
  const words = new Uint32Array(values.buffer);
  const body = encodeWriteRequest([
    {
      labels,
      samples: [
        { value: valueBits(words, 0), timestamp: 1_700_000_000_000 },
        { value: valueBits(words, 1), timestamp: 1_700_000_001_000 },
      ],
    },
    {
      labels: [{ name: "__name__", value: "z" }],
      samples: [{ value: valueBits(words, 2), timestamp: 7 }],
    },
  ]);
  assert.ok(body.buffer instanceof ArrayBuffer);
  const req = decodeWriteRequest(body);
  assert.deepEqual(req[0].labels, { __name__: "x", y: 'ü"\n' });
  assert.deepEqual(req[0].samples.map((s) => [s.value, s.timestamp]), [
    [1.5, 1_700_000_000_000],
    [-0, 1_700_000_001_000],
  ]);
  assert.deepEqual(req[1].samples.map((s) => [s.bits, s.timestamp]), [[STALE_NAN_BITS, 7]]);
});
