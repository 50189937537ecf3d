/**
 * A release tree signed with a test key and served over plain HTTP on loopback, for the
 * installer and upgrade tests. A path marked endless() answers with a stream of zeros that never
 * ends (the endless-data attack).
 */
import { generateKey, writeRelease } from "../../scripts/release.ts";

export const STANDIN = new TextEncoder().encode("#!/bin/sh\necho 'x0tta6bl4 0.1.0 (stand-in)'\n");

export interface Run {
  code: number;
  out: string;
}

const DAY = 86_400_000;

export class ReleaseServer implements AsyncDisposable {
  readonly root = Deno.makeTempDirSync({ prefix: "x0t-release-" });
  readonly key = `${this.root}/release.key`;
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  readonly #endless = new Set<string>();
  url = "";

  constructor() {
    generateKey(this.key);
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (this.#endless.has(path)) {
        const zeros = new Uint8Array(1 << 16);
        return new Response(new ReadableStream({ pull: (c) => c.enqueue(zeros) }));
      }
      try {
        return new Response(Deno.readFileSync(`${this.root}/www${path}`));
      } catch {
        return new Response("not found", { status: 404 });
      }
    });
    this.url = `http://127.0.0.1:${this.server.addr.port}`;
  }

  /**
   * Publishes `version` (and "latest", unless `latest` is false) with these x86_64/aarch64
   * bytes, its SHA256SUMS signed with `signingKey` and trusted until `expires`.
   */
  publish(
    version: string,
    binary: Uint8Array = STANDIN,
    { signingKey = this.key, expires = new Date(Date.now() + DAY), latest = true } = {},
  ) {
    for (const v of latest ? [version, "latest"] : [version]) {
      writeRelease({
        dir: `${this.root}/www/${v}`,
        version,
        channel: "stable",
        files: [
          { name: "x0tta6bl4-linux-x86_64", bytes: binary },
          { name: "x0tta6bl4-linux-aarch64", bytes: binary },
        ],
        signingKey,
        baseUrl: this.url,
        minKernel: "5.15",
        expires,
      });
    }
  }

  /** From now on `path` (e.g. "/latest/SHA256SUMS") answers with data that never ends. */
  endless(path: string) {
    this.#endless.add(path);
  }

  /** Runs the published install.sh with these arguments (async: this process serves it). */
  async sh(args: string[], env: Record<string, string> = {}): Promise<Run> {
    const out = await new Deno.Command("sh", {
      args: [`${this.root}/www/latest/install.sh`, ...args],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      out: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    };
  }

  /** install.sh into `prefix`, from this plain-HTTP server (so with --insecure-http). */
  install(prefix: string, args: string[] = [], env: Record<string, string> = {}): Promise<Run> {
    return this.sh(
      ["--prefix", prefix, "--non-interactive", "--insecure-http", ...args],
      env,
    );
  }

  async [Symbol.asyncDispose]() {
    await this.server.shutdown();
    Deno.removeSync(this.root, { recursive: true });
  }
}
