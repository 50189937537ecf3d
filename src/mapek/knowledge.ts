/**
 * Knowledge: what the loop learned and did, in an embedded SQLite file (node:sqlite, no
 * server): baselines, decisions and actions. A restart reads it back, so baselines keep their
 * history and actions are re-applied or expired as their TTL says.
 */
import { DatabaseSync } from "node:sqlite";
import type { Action, Decision } from "./plan.ts";

/** Decisions kept; older ones are pruned. */
const KEEP_DECISIONS = 5000;
const KEEP_ENDED_ACTIONS = 1000;

export class Knowledge {
  readonly #db: DatabaseSync;

  /** Opens (or creates) the store at `path` (":memory:" for none on disk). */
  constructor(readonly path: string) {
    try {
      this.#db = new DatabaseSync(path);
      this.#db.exec(`
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = NORMAL;
        CREATE TABLE IF NOT EXISTS baselines (key TEXT PRIMARY KEY, vals TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS decisions (id TEXT PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
        CREATE TABLE IF NOT EXISTS actions (
          id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL
        );
      `);
    } catch (e) {
      throw new Error(
        `cannot open the knowledge store ${path}: ${(e as Error).message} ` +
          `(state_dir must be a writable directory)`,
      );
    }
  }

  baselines(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    for (const r of this.#db.prepare("SELECT key, vals FROM baselines").all()) {
      try {
        const v = JSON.parse(String(r.vals));
        if (Array.isArray(v) && v.every((x) => typeof x === "number")) out[String(r.key)] = v;
      } catch { /* a damaged row is relearned */ }
    }
    return out;
  }

  saveBaselines(b: Record<string, number[]>): void {
    const put = this.#db.prepare("INSERT OR REPLACE INTO baselines (key, vals) VALUES (?, ?)");
    this.#tx(() => {
      this.#db.exec("DELETE FROM baselines");
      for (const [k, v] of Object.entries(b)) put.run(k, JSON.stringify(v));
    });
  }

  addDecision(d: Decision): void {
    this.#db.prepare("INSERT OR REPLACE INTO decisions (id, at, body) VALUES (?, ?, ?)").run(
      d.id,
      d.at,
      JSON.stringify(d),
    );
  }

  /** The latest decisions, newest first. */
  decisions(limit: number): Decision[] {
    return this.#db.prepare("SELECT body FROM decisions ORDER BY at DESC, rowid DESC LIMIT ?")
      .all(limit).map((r) => JSON.parse(String(r.body)) as Decision);
  }

  putAction(a: Action): void {
    this.#db.prepare(
      "INSERT OR REPLACE INTO actions (id, state, created_at, body) VALUES (?, ?, ?, ?)",
    ).run(a.id, a.state, a.createdAt, JSON.stringify(a));
  }

  /** Live actions (active or observed) or, with `ended`, the latest that ended too. */
  actions(ended = false, limit = 200): Action[] {
    const sql = ended
      ? "SELECT body FROM actions ORDER BY created_at DESC, rowid DESC LIMIT ?"
      : "SELECT body FROM actions WHERE state IN ('active', 'observed') ORDER BY created_at DESC LIMIT ?";
    return this.#db.prepare(sql).all(limit).map((r) => JSON.parse(String(r.body)) as Action);
  }

  /** Keeps the store bounded. */
  prune(): void {
    this.#db.prepare(
      "DELETE FROM decisions WHERE id NOT IN (SELECT id FROM decisions ORDER BY at DESC LIMIT ?)",
    ).run(KEEP_DECISIONS);
    this.#db.prepare(
      `DELETE FROM actions WHERE state NOT IN ('active', 'observed') AND id NOT IN
        (SELECT id FROM actions ORDER BY created_at DESC LIMIT ?)`,
    ).run(KEEP_ENDED_ACTIONS);
  }

  #tx(fn: () => void): void {
    this.#db.exec("BEGIN");
    try {
      fn();
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  close(): void {
    this.#db.close();
  }
}
