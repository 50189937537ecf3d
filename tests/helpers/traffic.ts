/**
 * Traffic for the kernel tests, run inside a test namespace with `ip netns exec`:
 *   udp-send HOST PORT COUNT PAYLOAD   send COUNT datagrams of PAYLOAD bytes
 *   tcp-sink PORT                      accept one connection, read to EOF, print the byte count
 *   tcp-send HOST PORT BYTES           connect, write BYTES bytes, close
 *   udp-rate SRC HOST PORT PPS SECONDS  send 32-byte datagrams from SRC at about PPS
 *   udp-sink PORT SECONDS [HOST]       count datagrams per source and 500 ms slot, print JSON
 *                                      (HOST: the address to bind, 0.0.0.0 unless given)
 *   tcp-listen PORT SECONDS            accept and close connections (the kernel completes
 *                                      handshakes); print how many were accepted
 *   tcp-connect HOST PORT COUNT        COUNT connections one after another, each refused or
 *                                      closed at once; PORT may be FROM-TO (the route picks
 *                                      the source address: Deno.connect cannot bind one)
 * Addresses are the test's own namespace addresses; nothing else is ever a target.
 */
const [mode, ...args] = Deno.args;

if (mode === "udp-send") {
  const [host, port, count, size] = [args[0], Number(args[1]), Number(args[2]), Number(args[3])];
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: host.includes(":") ? "::" : "0.0.0.0",
    port: 0,
  });
  const payload = new Uint8Array(size).fill(0x78);
  for (let i = 0; i < count; i++) {
    await sock.send(payload, { transport: "udp", hostname: host, port });
  }
  sock.close();
} else if (mode === "tcp-sink") {
  const listener = Deno.listen({ hostname: "::", port: Number(args[0]) });
  console.log("listening");
  const conn = await listener.accept();
  let total = 0;
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    total += n;
  }
  conn.close();
  listener.close();
  console.log(total);
} else if (mode === "tcp-send") {
  const conn = await Deno.connect({ hostname: args[0], port: Number(args[1]) });
  const bytes = Number(args[2]);
  const chunk = new Uint8Array(Math.min(bytes, 65536)).fill(0x79);
  for (let sent = 0; sent < bytes;) {
    sent += await conn.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)));
  }
  conn.close();
} else if (mode === "udp-rate") {
  const [src, host, port, pps, seconds] = [
    args[0],
    args[1],
    Number(args[2]),
    Number(args[3]),
    Number(args[4]),
  ];
  const sock = Deno.listenDatagram({ transport: "udp", hostname: src, port: 0 });
  const payload = new Uint8Array(32).fill(0x7a);
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * pps);
    while (sent < due) {
      await sock.send(payload, { transport: "udp", hostname: host, port });
      sent++;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  sock.close();
  console.log(sent);
} else if (mode === "udp-sink") {
  const [port, seconds] = [Number(args[0]), Number(args[1])];
  const sock = Deno.listenDatagram({ transport: "udp", hostname: args[2] ?? "0.0.0.0", port });
  const start = performance.now();
  const counts: Record<string, number[]> = {};
  setTimeout(() => sock.close(), seconds * 1000);
  console.log("listening");
  try {
    for await (const [, from] of sock) {
      const slot = Math.floor((performance.now() - start) / 500);
      const src = (from as Deno.NetAddr).hostname;
      (counts[src] ??= [])[slot] = ((counts[src] ?? [])[slot] ?? 0) + 1;
    }
  } catch { /* closed */ }
  for (const c of Object.values(counts)) for (let i = 0; i < c.length; i++) c[i] ??= 0;
  console.log(JSON.stringify(counts));
} else if (mode === "tcp-listen") {
  const listener = Deno.listen({ hostname: "0.0.0.0", port: Number(args[0]) });
  setTimeout(() => listener.close(), Number(args[1]) * 1000);
  let accepted = 0;
  try {
    for await (const conn of listener) {
      accepted++;
      conn.close();
    }
  } catch { /* closed */ }
  console.log(accepted);
} else if (mode === "tcp-connect") {
  const [host, ports, count] = [args[0], args[1], Number(args[2])];
  const [from, to] = ports.includes("-")
    ? ports.split("-").map(Number)
    : [Number(ports), Number(ports)];
  let ok = 0, refused = 0;
  for (let i = 0; i < count; i++) {
    const port = from + (i % (to - from + 1));
    try {
      const c = await Deno.connect({ hostname: host, port, transport: "tcp" });
      c.close();
      ok++;
    } catch {
      refused++;
    }
  }
  console.log(JSON.stringify({ ok, refused }));
} else {
  console.error(`usage: traffic.ts udp-send|tcp-sink|tcp-send …`);
  Deno.exit(2);
}
