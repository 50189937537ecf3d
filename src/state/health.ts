/** Per-component health, each state kept with the moment it began. */
import type { ComponentHealth, HealthState } from "./snapshot.ts";

const RANK: Record<HealthState, number> = { healthy: 0, degraded: 1, unhealthy: 2 };

export class HealthBoard {
  readonly #components = new Map<string, ComponentHealth>();
  /** Called with the new record when a component's state (not only its reason) changes. */
  onChange?: (c: ComponentHealth, previous?: ComponentHealth) => void;

  set(component: string, state: HealthState, reason: string, now = Date.now()): void {
    const prev = this.#components.get(component);
    const since = prev && prev.state === state ? prev.since : now;
    const next = { component, state, reason, since };
    this.#components.set(component, next);
    if (!prev || prev.state !== state) this.onChange?.(next, prev);
  }

  remove(component: string): void {
    this.#components.delete(component);
  }

  list(): ComponentHealth[] {
    return [...this.#components.values()].sort((a, b) => a.component.localeCompare(b.component));
  }

  /** The worst state of all components; healthy when there are none. */
  overall(): HealthState {
    let worst: HealthState = "healthy";
    for (const c of this.#components.values()) if (RANK[c.state] > RANK[worst]) worst = c.state;
    return worst;
  }
}
