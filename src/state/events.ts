/**
 * The live event log: every event gets a monotonically increasing id, the last `capacity` are
 * kept for Server-Sent Events clients that resume with Last-Event-ID, and each subscriber has
 * a bounded queue: a client that falls behind loses the oldest events it has not taken (only
 * its own), is told how many, and is let go once it lost a whole queue's worth. Those losses
 * are counted per client and in total, never silent, and never count against the ring buffer.
 *
 * Ids start at a base of this run (the start time in microseconds by default), so an id that a
 * client remembers from an earlier run is recognisably not one of this run's.
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
  /** Events this client lost (its queue was full), and those not yet told to it. */
  lost = 0;
  #untold = 0;
  /** Called when it is let go for being too slow (its stream is then cut). */
  onLetGo?: () => void;

  constructor(
    readonly limit: number,
    private readonly log: EventLog,
    /** Whether this subscriber also wants the periodic summaries. */
    readonly summaries = false,
  ) {}

  push(e: LiveEvent): void {
    if (this.#queue.length >= this.limit) {
      this.#queue.shift();
      this.lost++;
      this.#untold++;
      this.log.clientLost++;
      if (this.lost >= this.limit) { // a whole queue's worth behind: let it reconnect
        this.log.clientsLetGo++;
        this.close();
        this.onLetGo?.();
        return;
      }
    }
    this.#queue.push(e);
    this.#wake?.();
  }

  /** How many events it lost since this was last asked (for a `gap` event), then 0. */
  takeLost(): number {
    const n = this.#untold;
    this.#untold = 0;
    return n;
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
  #next: number;
  /** Events slow clients lost (each only its own), and clients let go for being too slow. */
  clientLost = 0;
  clientsLetGo = 0;

  /** `firstId`: the id of this run's first event. */
  constructor(readonly capacity = 10_000, readonly firstId = 1) {
    this.#next = firstId;
  }

  /** Whether `id` is one this log issued (or 0, which asks for everything kept). */
  issued(id: number): boolean {
    return id === 0 || (id >= this.firstId - 1 && id < this.#next);
  }

  /** Subscribers now. */
  get subscribers(): number {
    return this.#subs.size;
  }

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
