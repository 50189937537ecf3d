/**
 * The live event log: every event gets a monotonically increasing id, the last `capacity` are
 * kept for Server-Sent Events clients that resume with Last-Event-ID, and each subscriber has
 * a bounded queue: a client that falls behind loses the oldest events it has not taken, and
 * those losses are counted (lostConsumer), never silent.
 */

export interface LiveEvent {
  /** 0 for unnumbered events (summaries): they are neither kept nor resumed. */
  id: number;
  /** "flow" (a new flow), "health", "attach", "detach", "mode". */
  type: string;
  /** ms since the epoch. */
  time: number;
  data: unknown;
}

export class Subscription {
  readonly #queue: LiveEvent[] = [];
  #wake?: () => void;
  closed = false;

  constructor(
    readonly limit: number,
    private readonly log: EventLog,
    /** Whether this subscriber also wants the periodic summaries. */
    readonly summaries = false,
  ) {}

  push(e: LiveEvent): void {
    if (this.#queue.length >= this.limit) {
      this.#queue.shift();
      this.log.lostConsumer++;
    }
    this.#queue.push(e);
    this.#wake?.();
  }

  /** Waits for at least one event (or close, or `timeoutMs`), then takes all queued. */
  async take(timeoutMs: number): Promise<LiveEvent[]> {
    if (this.#queue.length === 0 && !this.closed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return this.#queue.splice(0);
  }

  close(): void {
    this.closed = true;
    this.log.unsubscribe(this);
    this.#wake?.();
  }
}

export class EventLog {
  readonly #ring: LiveEvent[] = [];
  readonly #subs = new Set<Subscription>();
  #next = 1;
  lostConsumer = 0;

  constructor(readonly capacity = 10_000) {}

  append(type: string, data: unknown, time = Date.now()): LiveEvent {
    const e = { id: this.#next++, type, time, data };
    this.#ring.push(e);
    if (this.#ring.length > this.capacity) this.#ring.shift();
    for (const s of this.#subs) s.push(e);
    return e;
  }

  /** Events after `id` still kept, oldest first; `gap` when some were already dropped. */
  since(id: number): { events: LiveEvent[]; gap: boolean } {
    const events = this.#ring.filter((e) => e.id > id);
    const oldest = this.#ring[0]?.id ?? this.#next;
    return { events, gap: id + 1 < oldest && id < this.#next - 1 };
  }

  get lastId(): number {
    return this.#next - 1;
  }

  /** Sends an unnumbered event to the subscribers that want summaries; nothing is kept. */
  broadcast(type: string, data: unknown, time = Date.now()): void {
    const e = { id: 0, type, time, data };
    for (const s of this.#subs) if (s.summaries) s.push(e);
  }

  /** Whether anyone listens for summaries (so nobody builds one for nobody). */
  get summaryListeners(): number {
    let n = 0;
    for (const s of this.#subs) if (s.summaries) n++;
    return n;
  }

  subscribe(queueLimit = 1000, summaries = false): Subscription {
    const s = new Subscription(queueLimit, this, summaries);
    this.#subs.add(s);
    return s;
  }

  unsubscribe(s: Subscription): void {
    this.#subs.delete(s);
  }

  /** Ends every subscription (on shutdown, so open event streams finish). */
  closeAll(): void {
    for (const s of [...this.#subs]) s.close();
  }
}
