/**
 * `x0tta6bl4 bundle`: one tarball with what support needs, and nothing secret: build facts,
 * the doctor's report, the configuration (key and token files named, never read), health,
 * interfaces, flows summary and metrics from the running appliance, the last log lines, and
 * kernel and interface facts. Says where the file is and what is in it.
 */
import { hostname } from "node:os";
import { type Config, tokenFilePath } from "../config/schema.ts";
import type { ApiClient } from "./client.ts";
import { doctorReport } from "./doctor.ts";

function cmd(name: string, args: string[]): string {
  try {
    const o = new Deno.Command(name, { args, stdout: "piped", stderr: "piped" }).outputSync();
    return new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  } catch (e) {
    return `(${name} not available: ${(e as Error).message})\n`;
  }
}

function read(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    return `(${path}: ${(e as Error).message})\n`;
  }
}

async function api(client: ApiClient, path: string): Promise<string> {
  try {
    const r = await fetch(`${client.base}${path}`, {
      signal: AbortSignal.timeout(5000),
      headers: client.token ? { authorization: `Bearer ${client.token}` } : {},
    });
    return await r.text();
  } catch (e) {
    return `(no appliance answered at ${client.base}${path}: ${(e as Error).message})\n`;
  }
}

/** Removes anything that looks like a secret from text: long hex and base64 runs, bearer tokens. */
function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 8) out = out.replaceAll(s, "[redacted]");
  return out.replace(/Bearer\s+\S+/gi, "Bearer [redacted]");
}

export async function bundle(
  config: Config,
  client: ApiClient,
  versionText: string,
  output?: string,
): Promise<number> {
  const dir = Deno.makeTempDirSync({ prefix: "x0tta6bl4-bundle-" });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const name = `x0tta6bl4-bundle-${hostname()}-${stamp}`;
  const root = `${dir}/${name}`;
  Deno.mkdirSync(root);
  // Secrets this box holds: never copied, and scrubbed from everything that is.
  const secrets: string[] = [];
  for (
    const f of [
      tokenFilePath(config),
      config.api.read_token_file,
      config.mesh.key_file,
      config.export.remote_write.bearer_token_file,
      config.export.remote_write.basic_auth_password_file,
    ]
  ) {
    try {
      if (f) secrets.push(Deno.readTextFileSync(f).trim());
    } catch { /* absent or unreadable: nothing to scrub */ }
  }
  const files: Record<string, string> = {
    "version.txt": versionText + "\n",
    "doctor.txt": doctorReport().text + "\n",
    "config.json": JSON.stringify(config, null, 2) + "\n",
    "health.json": await api(client, "/api/v1/health"),
    "interfaces.json": await api(client, "/api/v1/interfaces"),
    "flows-top.json": await api(client, "/api/v1/flows?limit=50"),
    "mesh.json": await api(client, "/api/v1/mesh/status"),
    "metrics.txt": await api(client, "/metrics"),
    "log.txt": cmd("journalctl", ["-u", "x0tta6bl4", "-n", "500", "--no-pager"]),
    "kernel.txt": [
      cmd("uname", ["-a"]),
      read("/proc/version"),
      `kernel.bpf_stats_enabled = ${read("/proc/sys/kernel/bpf_stats_enabled")}`,
      `kernel.unprivileged_bpf_disabled = ${read("/proc/sys/kernel/unprivileged_bpf_disabled")}`,
      `BTF: ${cmd("ls", ["-l", "/sys/kernel/btf/vmlinux"])}`,
      cmd("bpftool", ["prog", "show"]),
    ].join("\n"),
    "network.txt": [
      cmd("ip", ["-d", "link", "show"]),
      cmd("ip", ["addr", "show"]),
      cmd("ip", ["route", "show"]),
      cmd("tc", ["qdisc", "show"]),
    ].join("\n"),
  };
  for (const [f, text] of Object.entries(files)) {
    Deno.writeTextFileSync(`${root}/${f}`, redact(text, secrets));
  }
  const target = output ?? `${Deno.cwd()}/${name}.tar.gz`;
  const tar = new Deno.Command("tar", { args: ["-czf", target, "-C", dir, name], stderr: "piped" })
    .outputSync();
  Deno.removeSync(dir, { recursive: true });
  if (!tar.success) {
    console.error(`x0tta6bl4: tar failed: ${new TextDecoder().decode(tar.stderr)}`);
    return 1;
  }
  console.log(`support bundle: ${target}`);
  console.log(`contains: ${Object.keys(files).join(", ")}`);
  console.log("no API token or mesh key is included; they are also scrubbed from every file");
  return 0;
}
