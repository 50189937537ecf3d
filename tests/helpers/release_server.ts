/**
 * A release tree signed with a test key and served over HTTP on loopback, for the installer
 * and upgrade tests.
 */
import { generateKey, writeRelease } from "../../scripts/release.ts";

export const STANDIN = new TextEncoder().encode("#!/bin/sh\necho 'x0tta6bl4 0.1.0 (stand-in)'\n");

export interface Run {
  code: number;
  out: string;
}

export class ReleaseServer implements AsyncDisposable {
  readonly root = Deno.makeTempDirSync({ prefix: "x0t-release-" });
  readonly key = `${this.root}/release.key`;
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  url = "";

  constructor() {
    generateKey(this.key);
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      try {
        return new Response(Deno.readFileSync(`${this.root}/www${path}`));
      } catch {
        return new Response("not found", { status: 404 });
      }
    });
    this.url = `http://127.0.0.1:${this.server.addr.port}`;
  }

  /** Publishes `version` (and "latest") with these x86_64/aarch64 bytes. */
  publish(version: string, binary: Uint8Array = STANDIN, signingKey = this.key) {
    for (const v of [version, "latest"]) {
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
      });
    }
  }

  /** Runs the published install.sh (async: the server answers from this same process). */
  async install(
    prefix: string,
    args: string[] = [],
    env: Record<string, string> = {},
  ): Promise<Run> {
    const out = await new Deno.Command("sh", {
      args: [
        `${this.root}/www/latest/install.sh`,
        "--prefix",
        prefix,
        "--non-interactive",
        ...args,
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      out: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    };
  }

  async [Symbol.asyncDispose]() {
    await this.server.shutdown();
    Deno.removeSync(this.root, { recursive: true });
  }
}
