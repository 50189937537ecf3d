/** The appliance's log: one line per record on stderr, `TIME LEVEL message key=value…`. */

export type LogLevel = "info" | "warn" | "error";
export type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const stderrLog: Log = (level, msg, fields = {}) => {
  const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join("");
  console.error(`${new Date().toISOString()} ${level} ${msg}${extra}`);
};
