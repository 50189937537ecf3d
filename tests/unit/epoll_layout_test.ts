/**
 * struct epoll_event as ffi/libbpf.ts lays it out for each architecture the release targets,
 * checked against C: the host's <sys/epoll.h> compiled and run, and every target's layout
 * under `clang --target=ARCH-linux-gnu` with static assertions. Cross headers are not
 * installed here, so the struct is written in the C below as include/uapi/linux/eventpoll.h
 * defines it (EPOLL_PACKED on __x86_64__ only); on the host that copy is also asserted equal
 * to the system header's. On aarch64 the AAPCS64 aligns a 64-bit member to 8 bytes ("Procedure
 * Call Standard for the Arm 64-bit Architecture", 5.1 Fundamental Data Types), hence 16 bytes.
 */
import assert from "node:assert/strict";
import { EPOLL_EVENT, EPOLL_EVENT_LAYOUTS } from "../../ffi/libbpf.ts";

const UAPI_EPOLL_EVENT = `
#include <stddef.h>
#ifdef __x86_64__
#define EPOLL_PACKED __attribute__((packed))
#else
#define EPOLL_PACKED
#endif
struct uapi_epoll_event {
  unsigned int events;     /* __poll_t */
  unsigned long long data; /* __u64 */
} EPOLL_PACKED;
`;

/** Runs a C compiler on `source` (given on stdin); its success and diagnostics. */
async function compile(cmd: string, args: string[], source: string) {
  const p = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(source));
  await w.close();
  const o = await p.output();
  return { success: o.success, stderr: new TextDecoder().decode(o.stderr) };
}

/** Static assertions that the uapi struct has `layout` for `arch`, compiled for that target. */
function checkTarget(arch: string, layout: { size: number; data: number }) {
  return compile(
    "clang",
    [`--target=${arch}-linux-gnu`, "-ffreestanding", "-fsyntax-only", "-x", "c", "-"],
    UAPI_EPOLL_EVENT + `
_Static_assert(sizeof(struct uapi_epoll_event) == ${layout.size}, "sizeof on ${arch}");
_Static_assert(offsetof(struct uapi_epoll_event, data) == ${layout.data}, "data on ${arch}");
`,
  );
}

Deno.test("epoll_event: the host's layout is the one <sys/epoll.h> gives", async () => {
  const dir = await Deno.makeTempDir({ prefix: "x0t-epoll" });
  try {
    const exe = `${dir}/epoll_layout`;
    const built = await compile(
      "cc",
      ["-x", "c", "-o", exe, "-"],
      UAPI_EPOLL_EVENT + `
#include <stdio.h>
#include <sys/epoll.h>
_Static_assert(sizeof(struct uapi_epoll_event) == sizeof(struct epoll_event), "size");
_Static_assert(offsetof(struct uapi_epoll_event, data) == offsetof(struct epoll_event, data),
               "data");
int main(void) {
  printf("%zu %zu\\n", sizeof(struct epoll_event), offsetof(struct epoll_event, data));
  return 0;
}
`,
    );
    assert.ok(built.success, built.stderr);
    const out = new Deno.Command(exe).outputSync();
    assert.ok(out.success);
    const [size, data] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
    assert.deepEqual({ size, data }, { ...EPOLL_EVENT });
    assert.deepEqual(EPOLL_EVENT, EPOLL_EVENT_LAYOUTS[Deno.build.arch]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const [arch, layout] of Object.entries(EPOLL_EVENT_LAYOUTS)) {
  Deno.test(`epoll_event: ${arch} is ${layout.size} bytes, data at ${layout.data}`, async () => {
    const ok = await checkTarget(arch, layout);
    assert.ok(ok.success, ok.stderr);
    // The check bites: the other architecture's numbers fail on this target.
    for (const [other, wrong] of Object.entries(EPOLL_EVENT_LAYOUTS)) {
      if (other === arch) continue;
      const bad = await checkTarget(arch, wrong);
      assert.ok(!bad.success, `${other}'s layout passed on ${arch}`);
      assert.match(bad.stderr, /static_assert|static assertion/i);
    }
  });
}
