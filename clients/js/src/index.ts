// A client for ws-channels servers (`ws serve`), for browsers and Node.
//
// It stays connected: it dials again with exponential backoff and full
// jitter (bounded; not after a close that says not to come back), joins
// its channels again from the last publication it handed out (`since`),
// and hands out each publication once and in order; when the server no
// longer holds what was missed it says so (`joined` with `recovered:
// false`) rather than leave a silent gap. The rules are those of the Rust
// client (`ws_channels::reconnect::Reconnector`); the protocol is
// `ws-channels/PROTOCOL.md`.
//
// No runtime dependency: it uses the global `WebSocket` (browsers, Node
// 22+), or the one given as `options.WebSocket` (the `ws` package on
// Node 20).

/** Where the connection is. */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

/** A place in a channel's history. */
export interface Position {
  offset: number;
  epoch: string;
}

/** A publication, a join or a leave as the server sends it. */
export interface Publication {
  offset?: number;
  epoch?: string;
  from?: { session: string; user?: string; info?: unknown };
  data?: unknown;
  reason?: string;
}

/** What the application hears (`onEvent`). */
export type ClientEvent =
  | { type: "state"; state: ConnectionState; reason?: string; retryIn?: number }
  | { type: "joined"; channel: string; recovered: boolean | null }
  | { type: "publication"; channel: string; kind: "message" | "join" | "leave"; publication: Publication }
  | { type: "join_failed"; channel: string; error: ChannelError }
  | { type: "removed"; channel: string; reason: string }
  | { type: "expiring"; expiresIn: number }
  | { type: "refresh_failed"; error: ChannelError }
  | { type: "event"; channel?: string; action: string; data: unknown };

/** Close codes after which the client does not connect again: 1008
 * (too many refused commands: a client to fix), 4001 (authentication
 * needed), 4009 (disconnected on purpose). After 4011 (the token expired)
 * it does, with the URL `url` gives then. */
export const NO_RECONNECT: readonly number[] = [1008, 4001, 4009];

/** A refused or failed command: `code` is the protocol's error code
 * (`forbidden`, `not_found`, `conflict`, ...), or `timeout` (no reply in
 * time: the command may still take effect) or `closed` (no connection, or
 * it ended before the reply). */
export class ChannelError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "ChannelError";
    this.code = code;
  }
}

/** The `WebSocket` the client needs: the browser's, Node 22's, or the
 * `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** The channels endpoint, or a function called for every attempt (to put
   * a fresh token in it: `() => \`wss://host/channels?token=${await
   * refresh()}\``). */
  url: string | (() => string | Promise<string>);
  /** Keeps the session past its token: when the server says the token
   * ends soon (an `expiring` event, which the application hears too), the
   * client calls this for a new one and sends it with `refresh`. Without
   * it, or when it returns null or the server refuses the token
   * (`refresh_failed`), the server closes the session at the token's end
   * (4011) and the client reconnects through `url`. */
  refreshToken?: () => string | null | Promise<string | null>;
  /** Default: the global `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** The first wait after a disconnect, at most (ms, default 250); it
   * doubles with each failed attempt. */
  minDelay?: number;
  /** The longest wait (ms, default 20,000). A connection that lasted this
   * long starts the doubling again; one that dropped sooner counts as a
   * failed attempt. */
  maxDelay?: number;
  /** Full jitter (default true): each wait drawn between zero and its
   * bound. */
  jitter?: boolean;
  /** Failed attempts in a row before giving up (default: never). */
  maxAttempts?: number;
  /** How long a command waits for its reply (ms, default 10,000). */
  commandTimeout?: number;
  /** How long one attempt to connect may take (ms, default 15,000). */
  connectTimeout?: number;
  /** Publications kept per channel while its join is answered (default
   * 10,000); past it they are read again from history. */
  maxBuffered?: number;
}

interface Wanted {
  last: Position | null;
  joining: number | null;
  buffer: Array<[ClientEventKind, Publication]>;
  overflowed: boolean;
  joinedBefore: boolean;
}

type ClientEventKind = "message" | "join" | "leave";

interface Pending {
  resolve: (data: Record<string, unknown>) => void;
  reject: (error: ChannelError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const OPEN = 1;

/** A channels client that stays connected. Listen with `onEvent`, then
 * `connect()`; `join` keeps a channel joined across reconnects. */
export class ChannelsClient {
  readonly #options: Required<Omit<ClientOptions, "WebSocket" | "maxAttempts" | "refreshToken">> & { maxAttempts: number };
  readonly #refreshToken: ClientOptions["refreshToken"];
  readonly #WebSocket: WebSocketConstructor;
  #state: ConnectionState = "disconnected";
  #started = false;
  #socket: WebSocketLike | null = null;
  #connection = 0;
  #connectedAt = 0;
  #failed = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  readonly #channels = new Map<string, Wanted>();
  readonly #pending = new Map<string, Pending>();
  readonly #joins = new Map<string, { connection: number; channel: string }>();
  readonly #listeners = new Set<(event: ClientEvent) => void>();
  #nextId = 0;

  constructor(options: ClientOptions) {
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) throw new ChannelError("bad_request", "no WebSocket: pass options.WebSocket (the `ws` package on Node 20)");
    this.#WebSocket = WebSocketImpl;
    this.#refreshToken = options.refreshToken;
    this.#options = {
      url: options.url,
      minDelay: options.minDelay ?? 250,
      maxDelay: options.maxDelay ?? 20_000,
      jitter: options.jitter ?? true,
      maxAttempts: options.maxAttempts ?? Infinity,
      commandTimeout: options.commandTimeout ?? 10_000,
      connectTimeout: options.connectTimeout ?? 15_000,
      maxBuffered: options.maxBuffered ?? 10_000,
    };
  }

  /** Where the connection is. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Calls `listener` with every event, in order; returns what removes it. */
  onEvent(listener: (event: ClientEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Dials for the first time; later attempts come by themselves. */
  connect(): void {
    if (this.#started || this.#state === "closed") return;
    this.#started = true;
    void this.#dial();
  }

  /** Keeps `channel` joined from now on (from `since`, a position kept
   * from an earlier visit, when given). */
  join(channel: string, since: Position | null = null): void {
    if (this.#state === "closed" || this.#channels.has(channel)) return;
    this.#channels.set(channel, { last: since, joining: null, buffer: [], overflowed: false, joinedBefore: since !== null });
    if (this.#state === "connected") this.#sendJoin(channel);
  }

  /** Stops keeping `channel` joined, and leaves it. */
  leave(channel: string): void {
    if (this.#channels.delete(channel) && this.#state === "connected") {
      this.#send(channel, "leave", undefined, false);
    }
  }

  /** The last publication handed out in `channel`: keep it to join from
   * there on the next visit. */
  position(channel: string): Position | null {
    return this.#channels.get(channel)?.last ?? null;
  }

  /** Closes the connection; nothing more happens. */
  close(): void {
    clearTimeout(this.#retry);
    const socket = this.#socket;
    this.#socket = null;
    this.#failAll("closed", "the client was closed");
    this.#setState("closed", "closed by the application");
    socket?.close(1000, "");
  }

  /** Sends `action` for `channel` and resolves with the reply's data, or
   * rejects with a `ChannelError`. */
  command(channel: string, action: string, data?: unknown): Promise<Record<string, unknown>> {
    if (this.#state !== "connected") return Promise.reject(new ChannelError("closed", `not connected (${this.#state})`));
    return this.#send(channel, action, data, true);
  }

  /** Publishes `data` on `channel`: its position once the server has it.
   * With `idempotencyKey`, sending it again (after a timeout, say) makes
   * no second publication. */
  publish(channel: string, data: unknown, { idempotencyKey }: { idempotencyKey?: string } = {}): Promise<{ offset?: number; epoch?: string; duplicate?: boolean }> {
    if (this.#state !== "connected") return Promise.reject(new ChannelError("closed", `not connected (${this.#state})`));
    const params = idempotencyKey === undefined ? undefined : { idempotency_key: idempotencyKey };
    return this.#send(channel, "publish", data, true, params);
  }

  presence(channel: string, limit?: number) {
    return this.command(channel, "presence", limit === undefined ? {} : { limit });
  }

  history(channel: string, limit?: number) {
    return this.command(channel, "history", limit === undefined ? {} : { limit });
  }

  kick(channel: string, user: string) {
    return this.command(channel, "kick", { user });
  }

  ban(channel: string, user: string, duration?: number) {
    return this.command(channel, "ban", duration === undefined ? { user } : { user, duration });
  }

  setRole(channel: string, user: string, role: string) {
    return this.command(channel, "role", { user, role });
  }

  // The connection.

  async #dial(): Promise<void> {
    this.#setState("connecting");
    let url: string;
    try {
      url = typeof this.#options.url === "function" ? await this.#options.url() : this.#options.url;
    } catch (error) {
      return this.#connectFailed(`no URL: ${String(error)}`);
    }
    if (this.#state !== "connecting") return;
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(url);
    } catch (error) {
      return this.#connectFailed(String(error));
    }
    this.#socket = socket;
    const giveUp = setTimeout(() => {
      if (this.#socket === socket && this.#state === "connecting") {
        this.#socket = null;
        socket.close();
        this.#connectFailed("timed out");
      }
    }, this.#options.connectTimeout);
    socket.onopen = () => {
      clearTimeout(giveUp);
      if (this.#socket === socket) this.#connected();
    };
    socket.onerror = () => {};
    socket.onclose = (event) => {
      clearTimeout(giveUp);
      if (this.#socket !== socket) return;
      this.#socket = null;
      if (this.#state === "connecting") this.#connectFailed(`closed with ${event.code} ${event.reason}`.trim(), event.code);
      else this.#disconnected(event.code, event.reason);
    };
    socket.onmessage = (event) => {
      if (this.#socket === socket && typeof event.data === "string") this.#receive(event.data);
    };
  }

  #connected(): void {
    this.#connection++;
    this.#connectedAt = Date.now();
    this.#joins.clear();
    this.#setState("connected");
    for (const channel of [...this.#channels.keys()]) this.#sendJoin(channel);
  }

  #connectFailed(reason: string, code?: number): void {
    if (code !== undefined && NO_RECONNECT.includes(code)) return this.#end(reason);
    this.#failed++;
    this.#schedule(reason);
  }

  #disconnected(code: number, reason: string): void {
    const why = `closed with ${code}${reason ? `: ${reason}` : ""}`;
    this.#failAll("closed", why);
    for (const wanted of this.#channels.values()) {
      wanted.joining = null;
      wanted.buffer = [];
      wanted.overflowed = false;
    }
    if (NO_RECONNECT.includes(code)) return this.#end(why);
    if (Date.now() - this.#connectedAt >= this.#options.maxDelay) this.#failed = 0;
    else this.#failed++;
    this.#schedule(why);
  }

  #end(reason: string): void {
    clearTimeout(this.#retry);
    this.#failAll("closed", reason);
    this.#setState("closed", reason);
  }

  #schedule(reason: string): void {
    if (this.#failed >= this.#options.maxAttempts) return this.#end(`${reason}; gave up after ${this.#failed} attempts`);
    const doublings = Math.min(Math.max(this.#failed - 1, 0), 30);
    const bound = Math.min(this.#options.minDelay * 2 ** doublings, this.#options.maxDelay);
    const wait = this.#options.jitter ? Math.random() * bound : bound;
    this.#setState("disconnected", reason, wait);
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      if (this.#state === "disconnected") void this.#dial();
    }, wait);
  }

  #setState(state: ConnectionState, reason?: string, retryIn?: number): void {
    if (this.#state === state || this.#state === "closed") return;
    this.#state = state;
    const event: ClientEvent = { type: "state", state };
    if (reason !== undefined) event.reason = reason;
    if (retryIn !== undefined) event.retryIn = retryIn;
    this.#emit(event);
  }

  #emit(event: ClientEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  // Commands and replies.

  #send(channel: string, action: string, data: unknown, awaitReply: boolean, params?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = `c${++this.#nextId}`;
    const envelope: Record<string, unknown> = { type: "command", id, channel, action };
    if (data !== undefined) envelope.data = data;
    if (params !== undefined) envelope.params = params;
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) return Promise.reject(new ChannelError("closed", "not connected"));
    socket.send(JSON.stringify(envelope));
    if (!awaitReply) return Promise.resolve({});
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ChannelError("timeout", `no reply to ${action} within ${this.#options.commandTimeout} ms`));
      }, this.#options.commandTimeout);
      this.#pending.set(id, { resolve, reject, timer });
    });
  }

  #failAll(code: string, why: string): void {
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new ChannelError(code, why));
      this.#pending.delete(id);
    }
  }

  #receive(text: string): void {
    let envelope: { type?: string; id?: string; channel?: string; action?: string; data?: Record<string, unknown> };
    try {
      envelope = JSON.parse(text);
    } catch {
      return;
    }
    const data = envelope.data ?? {};
    if (envelope.type === "response") {
      const join = envelope.id === undefined ? undefined : this.#joins.get(envelope.id);
      if (join && envelope.id !== undefined) {
        this.#joins.delete(envelope.id);
        return this.#joinReply(join.connection, join.channel, data);
      }
      const pending = envelope.id === undefined ? undefined : this.#pending.get(envelope.id);
      if (!pending || envelope.id === undefined) return;
      this.#pending.delete(envelope.id);
      clearTimeout(pending.timer);
      const { ok, code, message, ...rest } = data as { ok?: boolean; code?: string; message?: string };
      if (ok) pending.resolve(rest);
      else pending.reject(new ChannelError(code ?? "internal", message ?? "refused"));
      return;
    }
    if (envelope.type !== "event") return;
    const channel = envelope.channel;
    if (channel === undefined && envelope.action === "expiring") {
      this.#emit({ type: "expiring", expiresIn: Number(data.expires_in ?? 0) });
      void this.#refresh();
      return;
    }
    switch (envelope.action) {
      case "message":
      case "join":
      case "leave":
        if (channel !== undefined) this.#accept(channel, envelope.action, data as Publication);
        return;
      case "lost":
        if (channel !== undefined && this.#channels.has(channel)) this.#rejoin(channel, this.#channels.get(channel)!.last);
        return;
      case "kicked":
      case "banned":
      case "closed":
        if (channel !== undefined && this.#channels.delete(channel)) {
          this.#emit({ type: "removed", channel, reason: envelope.action });
          return;
        }
        break;
    }
    const other: ClientEvent = { type: "event", action: envelope.action ?? "", data };
    if (channel !== undefined) other.channel = channel;
    this.#emit(other);
  }

  // Sends a new token before the session's ends.
  async #refresh(): Promise<void> {
    if (!this.#refreshToken) return;
    const connection = this.#connection;
    let token: string | null;
    try {
      token = await this.#refreshToken();
    } catch (error) {
      return this.#emit({ type: "refresh_failed", error: new ChannelError("refresh", `refreshToken failed: ${String(error)}`) });
    }
    if (token === null || connection !== this.#connection || this.#state !== "connected") return;
    try {
      await this.#send("$session", "refresh", { token }, true);
    } catch (error) {
      if (connection === this.#connection) this.#emit({ type: "refresh_failed", error: error as ChannelError });
    }
  }

  // Channels: joins, recovery and the order of publications.

  #sendJoin(channel: string): void {
    const wanted = this.#channels.get(channel);
    if (!wanted) return;
    this.#startJoin(channel, wanted, wanted.joinedBefore ? wanted.last : null);
  }

  #rejoin(channel: string, since: Position | null): void {
    const wanted = this.#channels.get(channel);
    if (!wanted || wanted.joining !== null || this.#state !== "connected") return;
    wanted.joinedBefore = true;
    this.#startJoin(channel, wanted, since);
  }

  #startJoin(channel: string, wanted: Wanted, since: Position | null): void {
    wanted.joining = this.#connection;
    const id = `c${++this.#nextId}`;
    this.#joins.set(id, { connection: this.#connection, channel });
    const envelope = { type: "command", id, channel, action: "join", data: since ? { since } : {} };
    this.#socket?.send(JSON.stringify(envelope));
  }

  #joinReply(connection: number, channel: string, data: Record<string, unknown>): void {
    const wanted = this.#channels.get(channel);
    if (!wanted || connection !== this.#connection || wanted.joining !== connection) return;
    wanted.joining = null;
    if (!data.ok) {
      this.#channels.delete(channel);
      const error = new ChannelError(String(data.code ?? "internal"), String(data.message ?? "refused"));
      return this.#emit({ type: "join_failed", channel, error });
    }
    const askedSince = wanted.joinedBefore && wanted.last !== null;
    wanted.joinedBefore = true;
    const recovered = askedSince && typeof data.recovered === "boolean" ? data.recovered : null;
    const top = typeof data.offset === "number" && typeof data.epoch === "string" ? { offset: data.offset, epoch: data.epoch } : null;
    if (recovered === false || !askedSince) wanted.last = top;
    const buffered = wanted.buffer;
    const overflowed = wanted.overflowed;
    wanted.buffer = [];
    wanted.overflowed = false;
    this.#emit({ type: "joined", channel, recovered });
    for (const publication of (Array.isArray(data.publications) ? data.publications : []) as Publication[]) this.#accept(channel, "message", publication);
    for (const [kind, publication] of buffered) this.#accept(channel, kind, publication);
    if (overflowed) this.#rejoin(channel, this.#channels.get(channel)?.last ?? null);
  }

  // Hands out `publication` if it is the next one; drops one handed out
  // already; keeps it behind a join in flight; joins from the last one
  // handed out when it skips some.
  #accept(channel: string, kind: ClientEventKind, publication: Publication): void {
    const wanted = this.#channels.get(channel);
    if (!wanted) return;
    if (wanted.joining !== null) {
      if (wanted.buffer.length < this.#options.maxBuffered) wanted.buffer.push([kind, publication]);
      else wanted.overflowed = true;
      return;
    }
    const { offset, epoch } = publication;
    if (typeof offset === "number" && typeof epoch === "string") {
      const last = wanted.last;
      if (last && last.epoch === epoch && offset <= last.offset) return;
      if (last && (last.epoch !== epoch || offset > last.offset + 1)) {
        this.#rejoin(channel, last);
        if (wanted.joining !== null) wanted.buffer.push([kind, publication]);
        return;
      }
      wanted.last = { offset, epoch };
    }
    this.#emit({ type: "publication", channel, kind, publication });
  }
}
