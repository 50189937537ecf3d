/** The API token: read from its file (mode 0600), generated on first start. */
import { dirname } from "node:path";

export class TokenError extends Error {}

export function loadOrCreateToken(path: string): { token: string; created: boolean } {
  try {
    const st = Deno.statSync(path);
    if (st.mode !== null && (st.mode & 0o077) !== 0) {
      throw new TokenError(
        `token file ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}): ` +
          `chmod 600 ${path}`,
      );
    }
    const token = Deno.readTextFileSync(path).trim();
    if (token.length < 16) {
      throw new TokenError(`token file ${path} holds no usable token (< 16 characters)`);
    }
    return { token, created: false };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(tmp, `${token}\n`, { mode: 0o600 });
  Deno.chmodSync(tmp, 0o600);
  Deno.renameSync(tmp, path);
  return { token, created: true };
}
