/** `HOST:PORT` with an IPv6 host in brackets (`[::1]:9090`): split, checked and joined. Pure. */
import { isAddress } from "./address.ts";

export const HOST_PORT_EXPECTED = "HOST:PORT or [IPv6]:PORT with a port 0..65535";

export interface HostPort {
  hostname: string;
  port: number;
}

/** Splits and checks `HOST:PORT` (`[IPv6]:PORT`); a string result says what is wrong. */
export function checkHostPort(s: string): HostPort | string {
  let host: string, port: string;
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(s);
  if (v6) {
    [, host, port] = v6;
    if (!host.includes(":") || !isAddress(host)) return "bad IPv6 address";
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) return "missing port";
    host = s.slice(0, colon);
    port = s.slice(colon + 1);
    if (host.includes(":")) return "IPv6 address not in brackets";
    if (host === "") return "missing host; 0.0.0.0 or [::] means all addresses";
    if (/^[\d.]+$/.test(host)) {
      if (!isAddress(host)) return "bad IPv4 address";
    } else if (
      host.length > 253 ||
      !host.split(".").every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l))
    ) {
      return "bad host name";
    }
  }
  if (!/^\d{1,5}$/.test(port)) return port === "" ? "missing port" : "bad port";
  if (Number(port) > 65535) return "port out of range";
  return { hostname: host, port: Number(port) };
}

/** Host and port of a valid `HOST:PORT`, in the form Deno.serve takes them; throws a TypeError
 * naming the text and the problem. */
export function parseHostPort(s: string): HostPort {
  const r = checkHostPort(s);
  if (typeof r === "string") throw new TypeError(`${JSON.stringify(s)}: ${r}`);
  return r;
}

/** HOST:PORT, with an IPv6 host in brackets: the inverse of parseHostPort. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
