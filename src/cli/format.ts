/** Human formatting for the terminal commands. */

const UNITS = ["", "k", "M", "G", "T"];

/** 1234567 → "1.23 M". */
export function si(n: number): string {
  let i = 0;
  while (Math.abs(n) >= 1000 && i < UNITS.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${UNITS[i]}`;
}

export function endpoint(addr: string, port: number, family: 4 | 6, proto: number): string {
  if (proto !== 6 && proto !== 17) return addr;
  return family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

export function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd())
    .join("\n");
}
