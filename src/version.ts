/** Build facts. scripts/build stamps VERSION, COMMIT and BUILD_DATE through the environment
 * of `deno compile` (X0TTA6BL4_VERSION…); a development run shows "dev". */
export const VERSION = "0.1.0";
export const PROTO_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };
