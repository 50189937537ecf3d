/**
 * Plan: policies from the configuration map each symptom to an action, within guards: never
 * on an allow-listed address, never more than the cap of live actions, one decision per
 * subject while its action lives, nothing executed in observe mode. Every decision says why.
 *
 * Sources that never completed a conversation with this box may be spoofed (a lone SYN or
 * one-way UDP costs nothing to send from any address): actions on them have a budget, per
 * interval and live at once, so that a flood of spoofed sources cannot use up the cap and leave
 * a real attacker (one that completed handshakes) unanswered. Such sources are planned last.
 */
import type { AllowList } from "./allow.ts";
import type { Symptom, SymptomKind } from "./analyze.ts";

export const ACTION_KINDS = [
  "block",
  "rate_limit",
  "sample_events",
  "shrink_top_n",
  "mark_degraded",
] as const;
export type ActionKind = typeof ACTION_KINDS[number];
/** A policy: the action a symptom gets, or "none" (reported only). */
export type PolicyAction = ActionKind | "none";

export type ActionState = "active" | "observed" | "expired" | "revoked" | "failed";

export interface Action {
  id: string;
  kind: ActionKind;
  /** What it acts on: a source address, a peer name, "events", "metrics". */
  target: string;
  /** rate_limit: packets per second let through. sample_events: the shift. shrink_top_n: N. */
  value?: number;
  decisionId: string;
  createdAt: number;
  expiresAt: number;
  /** "observed": planned in observe mode, not executed (it still expires, to dedupe). */
  state: ActionState;
  endedAt?: number;
  endReason?: string;
  /** On a source: whether it had completed a conversation with this box (false: spoofable). */
  verified?: boolean;
  /** Kernel counters of a block or rate limit, as last read. */
  droppedPackets?: number;
  droppedBytes?: number;
  passedPackets?: number;
}

export type Outcome = "executed" | "observed" | "reported" | "skipped" | "failed";

export interface Decision {
  id: string;
  at: number;
  symptom: Symptom;
  policy: PolicyAction;
  outcome: Outcome;
  /** The explanation, in one or two sentences. */
  reason: string;
  actionId?: string;
  mode: "observe" | "enforce";
}

export interface PlannerOptions {
  mode: "observe" | "enforce";
  policies: Record<SymptomKind, PolicyAction>;
  ttlS: number;
  maxActions: number;
  ratePps: number;
  /** shrink_top_n: the number of flows /metrics keeps while under pressure. */
  shrinkTopN: number;
  /** sample_events: new-flow events at 1 / 2^shift of the configured rate. */
  sampleShift: number;
  /** Most live blocks and rate limits on sources that may be spoofed (unverified). */
  maxUnverified: number;
  /** Most new blocks and rate limits on such sources in one interval. */
  unverifiedPerStep: number;
}

/** Actions that need an address to act on (rules in the datapath). */
export const ON_SOURCE = new Set<ActionKind>(["block", "rate_limit"]);

let seq = 0;
export function newId(prefix: string, at: number): string {
  seq = (seq + 1) % 1e6;
  return `${prefix}-${at.toString(36)}-${seq.toString(36)}`;
}

export interface Plan {
  decision: Decision;
  action?: Action;
}

/** The plans of one interval, and how many symptoms of spoofable sources were left for a later
 * one because their budget was spent (they are decided again then). */
export type Plans = Plan[] & { deferred: number };

/**
 * Decides on each symptom. `live` are the actions in force or observed; `recent` maps
 * "kind/subject" to when a decision on it was last made (a reported-only symptom is decided
 * once per TTL).
 */
export function plan(
  symptoms: Symptom[],
  live: Action[],
  recent: Map<string, number>,
  allow: AllowList,
  o: PlannerOptions,
  now: number,
): Plans {
  const out: Plan[] = [];
  let count = live.filter((a) => a.state === "active").length;
  let unverifiedLive = live.filter((a) => ON_SOURCE.has(a.kind) && a.verified === false).length;
  let unverifiedNew = 0, deferred = 0;
  // Sources that proved their address first; the others in the order the analyzer found them.
  const ordered = [...symptoms].sort((a, b) =>
    Number(a.verified === false) - Number(b.verified === false)
  );
  for (const s of ordered) {
    const policy = o.policies[s.kind];
    const key = `${s.kind}/${s.subject}`;
    const target = targetOf(s, policy);
    // One live action per target; for a source, one block or rate limit, whatever the symptom
    // (the datapath holds one rule per address).
    const same = (a: Action) =>
      a.target === target &&
      (a.kind === policy || (ON_SOURCE.has(a.kind) && ON_SOURCE.has(policy as ActionKind)));
    if (target !== undefined && live.some(same)) continue;
    const last = recent.get(key);
    if (last !== undefined && now - last < o.ttlS * 1000) continue;
    const spoofable = ON_SOURCE.has(policy as ActionKind) && s.verified === false;
    // Over the budget: not decided now (no decision recorded for every spoofed address of a
    // flood), so a real source that keeps going is decided in a later interval.
    if (
      spoofable && target !== undefined && !allow.match(target) &&
      (unverifiedNew >= o.unverifiedPerStep || unverifiedLive >= o.maxUnverified)
    ) {
      deferred++;
      continue;
    }
    recent.set(key, now);
    const id = newId("d", now);
    const decide = (outcome: Outcome, reason: string, action?: Action) =>
      out.push({
        decision: {
          id,
          at: now,
          symptom: s,
          policy,
          outcome,
          reason,
          actionId: action?.id,
          mode: o.mode,
        },
        action,
      });
    if (policy === "none") {
      decide("reported", `policy for ${s.kind} is "none": reported, no action.`);
      continue;
    }
    if (target === undefined) {
      decide(
        "reported",
        `policy ${policy} needs one source to act on; ${s.kind} on ${s.subject} has none that ` +
          `sent most of it, so no action is safe.`,
      );
      continue;
    }
    if (ON_SOURCE.has(policy)) {
      const why = allow.match(target);
      if (why) {
        decide("skipped", `${target} is allow-listed (${why}): the loop never acts on it.`);
        continue;
      }
    }
    const enforce = o.mode === "enforce";
    if (enforce && count >= o.maxActions) {
      decide(
        "skipped",
        `the cap of ${o.maxActions} active actions is reached (mapek.max_actions).`,
      );
      continue;
    }
    const action: Action = {
      id: newId("a", now),
      kind: policy,
      target,
      value: policy === "rate_limit"
        ? o.ratePps
        : policy === "shrink_top_n"
        ? o.shrinkTopN
        : policy === "sample_events"
        ? o.sampleShift
        : undefined,
      decisionId: id,
      createdAt: now,
      expiresAt: now + o.ttlS * 1000,
      state: enforce ? "active" : "observed",
      ...(ON_SOURCE.has(policy) ? { verified: s.verified !== false } : {}),
    };
    if (spoofable) {
      unverifiedNew++;
      unverifiedLive++;
    }
    const what = describe(action);
    if (enforce) {
      count++;
      decide("executed", `${what} for ${o.ttlS} s (policy ${s.kind} → ${policy}).`, action);
    } else {
      decide(
        "observed",
        `would ${what} for ${o.ttlS} s (policy ${s.kind} → ${policy}); observe mode: not executed.`,
        action,
      );
    }
  }
  // Not enumerable: the plans stay a plain list to whoever compares or copies them.
  return Object.defineProperty(out, "deferred", { value: deferred }) as Plans;
}

function targetOf(s: Symptom, policy: PolicyAction): string | undefined {
  if (policy === "block" || policy === "rate_limit") return s.source;
  if (policy === "sample_events") return "events";
  if (policy === "shrink_top_n") return "metrics";
  if (policy === "mark_degraded") return s.subject;
  return undefined;
}

export function describe(a: Pick<Action, "kind" | "target" | "value">): string {
  switch (a.kind) {
    case "block":
      return `block ${a.target} in the datapath`;
    case "rate_limit":
      return `rate-limit ${a.target} to ${a.value} packets/s in the datapath`;
    case "sample_events":
      return `sample new-flow events at 1/${2 ** (a.value ?? 0)} of the configured rate`;
    case "shrink_top_n":
      return `export only the top ${a.value} flows in /metrics`;
    case "mark_degraded":
      return `mark the mesh link to ${a.target} degraded`;
  }
}
