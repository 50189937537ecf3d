/**
 * HMAC-SHA-256 (RFC 2104, FIPS 180-4) for the mesh's small datagrams, synchronous and in plain
 * TypeScript. The key's inner and outer states (the compression of key ⊕ ipad and key ⊕ opad)
 * are computed once per key and reused, so a datagram of up to 1200 bytes costs its own blocks
 * plus one outer block. node:crypto's createHmac costs about 8 µs per datagram under Deno (a
 * call into native code and back per step), this about 1.5 µs: the mesh simulator runs a
 * thousand nodes on it, and the appliance saves the same. Checked against node:crypto in
 * tests/unit/mesh_protocol_test.ts.
 */

const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);
const IV = [
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
];
const W = new Int32Array(64);

/** One compression of the 64-byte block at `b[at..]` into `h`. */
function compress(h: Int32Array, b: Uint8Array, at: number): void {
  for (let i = 0; i < 16; i++) {
    const j = at + 4 * i;
    W[i] = (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15], y = W[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (hh + s1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = bb;
    bb = a;
    a = (t1 + t2) | 0;
  }
  h[0] += a;
  h[1] += bb;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

/** The padded tail (last partial block, 0x80, zeros, bit length), at most two blocks. */
const TAIL = new Uint8Array(128);

/** Hashes `data` on from state `h`, as if `prefix` bytes had been hashed before (whole blocks). */
function finish(h: Int32Array, data: Uint8Array, prefix: number): void {
  const whole = data.length - (data.length % 64);
  for (let at = 0; at < whole; at += 64) compress(h, data, at);
  const rest = data.length - whole;
  TAIL.fill(0);
  TAIL.set(data.subarray(whole), 0);
  TAIL[rest] = 0x80;
  const blocks = rest + 9 > 64 ? 2 : 1;
  const bits = (prefix + data.length) * 8;
  const end = blocks * 64;
  // The length's upper 32 bits stay 0: inputs here are far below 2^29 bytes.
  TAIL[end - 4] = bits >>> 24;
  TAIL[end - 3] = bits >>> 16;
  TAIL[end - 2] = bits >>> 8;
  TAIL[end - 1] = bits;
  for (let at = 0; at < end; at += 64) compress(h, TAIL, at);
}

function digestBytes(h: Int32Array, out: Uint8Array, at = 0): void {
  for (let i = 0; i < 8; i++) {
    out[at + 4 * i] = h[i] >>> 24;
    out[at + 4 * i + 1] = h[i] >>> 16;
    out[at + 4 * i + 2] = h[i] >>> 8;
    out[at + 4 * i + 3] = h[i];
  }
}

/** SHA-256 of `data`. */
function sha256(data: Uint8Array): Uint8Array {
  const h = Int32Array.from(IV);
  finish(h, data, 0);
  const out = new Uint8Array(32);
  digestBytes(h, out);
  return out;
}

/** A key's states after its inner and outer pad blocks. */
interface KeyState {
  inner: Int32Array;
  outer: Int32Array;
}

const states = new WeakMap<Uint8Array, KeyState>();

function keyState(key: Uint8Array): KeyState {
  let s = states.get(key);
  if (s) return s;
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256(key) : key);
  const pad = (x: number) => {
    const h = Int32Array.from(IV);
    compress(h, block.map((b) => b ^ x), 0);
    return h;
  };
  s = { inner: pad(0x36), outer: pad(0x5c) };
  states.set(key, s);
  return s;
}

const INNER = new Uint8Array(32);
const H = new Int32Array(8);

/**
 * HMAC-SHA-256 of `data` under `key` (the key's pad states are cached per key object), written
 * to `out` at `at` (a datagram's own MAC field: no allocation).
 */
export function hmacSha256(
  key: Uint8Array,
  data: Uint8Array,
  out = new Uint8Array(32),
  at = 0,
): Uint8Array {
  const s = keyState(key);
  H.set(s.inner);
  finish(H, data, 64);
  digestBytes(H, INNER);
  H.set(s.outer);
  finish(H, INNER, 64);
  digestBytes(H, out, at);
  return out;
}

/** Whether two MACs are equal, in a time that does not depend on where they differ. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
