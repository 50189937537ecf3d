import assert from "node:assert/strict";
import { BtfError, btfFromElf, parseBtf } from "../../src/datapath/btf.ts";

const VMLINUX = "/sys/kernel/btf/vmlinux";
const hasVmlinux = (() => {
  try {
    return Deno.statSync(VMLINUX).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "btf: vmlinux parses quickly and has iphdr, ethhdr and skb_drop_reason",
  ignore: !hasVmlinux,
  async fn() {
    const bytes = await Deno.readFile(VMLINUX);
    const start = performance.now();
    const btf = parseBtf(bytes);
    const iphdr = btf.struct("iphdr");
    const reasons = btf.enumValues("skb_drop_reason");
    const elapsed = performance.now() - start;
    assert.ok(elapsed < 1000, `parse and lookups took ${elapsed.toFixed(0)} ms`);

    assert.ok(iphdr);
    assert.equal(iphdr.size, 20);
    const saddr = iphdr.members.find((m) => m.name === "saddr");
    assert.deepEqual(saddr, { name: "saddr", offset: 12, size: 4 });
    // Bitfields: ihl and version share the first byte.
    assert.deepEqual(iphdr.members.filter((m) => m.offset === 0).map((m) => m.size), [1, 1]);

    const ethhdr = btf.struct("ethhdr");
    assert.ok(ethhdr);
    assert.equal(ethhdr.size, 14);
    assert.deepEqual(ethhdr.members.find((m) => m.name === "h_proto"), {
      name: "h_proto",
      offset: 12,
      size: 2,
    });

    assert.ok(reasons);
    assert.equal(typeof reasons.get("SKB_DROP_REASON_NOT_SPECIFIED"), "number");
    assert.ok(reasons.size > 10);
    assert.equal(btf.struct("no_such_struct_x0"), undefined);
    assert.equal(btf.enumValues("no_such_enum_x0"), undefined);
  },
});

Deno.test({
  name: "btf: truncated BTF is rejected",
  ignore: !hasVmlinux,
  async fn() {
    const bytes = await Deno.readFile(VMLINUX);
    assert.throws(() => parseBtf(bytes.subarray(0, 10)), BtfError);
    assert.throws(() => parseBtf(bytes.subarray(0, bytes.length - 100)), /truncated/);
  },
});

Deno.test("btf: header errors name the problem", () => {
  const header = new Uint8Array(24);
  header.set([0xeb, 0x9f]); // 0xeB9F stored big-endian
  assert.throws(() => parseBtf(header), /big-endian/);
  header.set([0x12, 0x34]);
  assert.throws(() => parseBtf(header), /not BTF/);
});

Deno.test("btf: non-ELF input is rejected", () => {
  assert.throws(() => btfFromElf(new TextEncoder().encode("#!/bin/sh\necho hi\n")), /not an ELF/);
  assert.throws(() => btfFromElf(new Uint8Array()), BtfError);
});

Deno.test("btf: an ELF without .BTF is rejected", async () => {
  const elf = await Deno.readFile("/bin/true");
  assert.throws(() => btfFromElf(elf), /no \.BTF section/);
  assert.throws(() => btfFromElf(elf.subarray(0, 100)), /truncated/);
});

Deno.test("btf: truncated .BTF in an ELF object is rejected", async () => {
  const obj = await Deno.readFile(new URL("../../bpf/build/flow.bpf.o", import.meta.url));
  assert.ok(btfFromElf(obj).struct("x0_flow_key"));
  // Cut the object's .BTF short by rewriting the BTF header's string-section length.
  const at = obj.findIndex((b, i) => b === 0x9f && obj[i + 1] === 0xeb && obj[i + 2] === 1);
  const broken = obj.slice();
  const view = new DataView(broken.buffer);
  view.setUint32(at + 20, view.getUint32(at + 20, true) + 1_000_000, true);
  assert.throws(() => btfFromElf(broken), /BTF truncated/);
});
