/**
 * Traffic for the kernel tests, run inside a test namespace with `ip netns exec`:
 *   udp-send HOST PORT COUNT PAYLOAD   send COUNT datagrams of PAYLOAD bytes
 *   tcp-sink PORT                      accept one connection, read to EOF, print the byte count
 *   tcp-send HOST PORT BYTES           connect, write BYTES bytes, close
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
} else {
  console.error(`usage: traffic.ts udp-send|tcp-sink|tcp-send …`);
  Deno.exit(2);
}
