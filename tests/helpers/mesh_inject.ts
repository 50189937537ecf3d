/**
 * Sends bad mesh datagrams to one node, as a hostile or broken peer would, from inside a lab
 * namespace: `deno run -A mesh_inject.ts KEYFILE HOST PORT`. It says hello first (so that its
 * replay is recognised as one) and goodbye last. Prints what it sent.
 */
import dgram from "node:dgram";
import { encode, encodeHello, MAX_DATAGRAM } from "../../src/mesh/protocol.ts";

const [keyFile, host, port] = Deno.args;
const key = Deno.readFileSync(keyFile);
const sock = dgram.createSocket("udp4");
const send = (b: Uint8Array) =>
  new Promise<void>((r) => sock.send(b, Number(port), host, () => r()));

const header = {
  type: "hello" as const,
  sender: "00112233445566778899aabbccddeeff",
  seq: BigInt(Date.now()) * 1000n,
  timestampNs: BigInt(Date.now()) * 1_000_000n,
};
const good = encode(
  key,
  header,
  encodeHello({ name: "intruder", metrics: `${host}:1`, incarnation: 1 }),
);
const badMac = good.slice();
badMac[good.length - 1] ^= 1;
const wrongKey = encode(new Uint8Array(32), { ...header, seq: header.seq + 1n }, new Uint8Array(0));
const version = encode(key, { ...header, seq: header.seq + 2n }, new Uint8Array(0));
version[2] = 9;
const random = crypto.getRandomValues(new Uint8Array(300));

await send(good); // accepted: a valid hello
await send(good); // the same again: a replay
await send(badMac);
await send(wrongKey);
await send(good.subarray(0, 50)); // truncated
await send(new Uint8Array(MAX_DATAGRAM + 100)); // oversized
await send(version); // unknown version (its MAC no longer matters: refused first)
await send(random);
// A valid goodbye, so the stranger that said hello leaves the mesh again.
await send(
  encode(
    key,
    { ...header, type: "leave", seq: header.seq + 5n },
    encodeHello({ name: "intruder", metrics: `${host}:1`, incarnation: 1 }),
  ),
);
sock.close();
console.log("sent 9");
