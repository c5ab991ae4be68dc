// End-to-end encrypted channels in the browser, on WebCrypto only: the
// twin of the Rust crate ws-crypto (its `channel` and `client` modules),
// byte for byte. `ws serve` serves it at /e2e.js.
//
//   import { E2eChannels, generateKeyPair } from "/e2e.js";
//   const socket = new WebSocket("ws://host/channels?user=ann");
//   const e2e = new E2eChannels(socket, await generateKeyPair(), (event) => ...);
//   await e2e.join("room");            // the owner's client hands over the key
//   await e2e.publish("room", "hello"); // sealed; the server sees ciphertext
//
// Keys: X25519 per member (announced in the join `info` as `e2e_key`). The
// owner's client makes each epoch's 32-byte channel key and wraps it for
// each member: HKDF-SHA256 over X25519(ephemeral, member) and X25519(owner,
// member), AES-256-GCM. Messages: AES-256-GCM under the epoch key, random
// 96-bit nonce, associated data binding channel, epoch, sender session and
// sequence number. Kick, ban or a key holder's leave start a new epoch.

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

const WRAP_LABEL = encoder.encode("ws-crypto e2e wrap v1");
const MESSAGE_LABEL = encoder.encode("ws-crypto e2e message v1");
/** Epochs whose keys a keyring keeps. */
export const KEPT_EPOCHS = 4;
/** Senders tracked per epoch for replay protection. */
export const MAX_SENDERS_PER_EPOCH = 100_000;
const PKCS8_X25519 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

/** A refusal, with `code` as in ws-crypto's E2eError (no_key, unknown_epoch,
 * replayed, tampered, bad_wrapped_key, key_conflict, weak_key,
 * too_many_senders, malformed). */
export class E2eError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = "E2eError";
    this.code = code;
    Object.assign(this, details);
  }
}

export const base64url = {
  encode(bytes) {
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
  decode(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  },
};

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/** Length-prefixed concatenation, as ws-crypto's `bind`. */
function bind(label, fields) {
  const parts = [label];
  for (const field of fields) {
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, field.length);
    parts.push(length, field);
  }
  return concat(...parts);
}

async function hkdf(salt, ikm, info) {
  const key = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, key, 256));
}

async function x25519(privateKey, publicBytes) {
  const publicKey = await subtle.importKey("raw", publicBytes, { name: "X25519" }, true, []);
  let shared;
  try {
    shared = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256));
  } catch {
    // WebCrypto refuses low-order points outright.
    throw new E2eError("weak_key", "the public key is a low-order point");
  }
  if (shared.every((b) => b === 0)) throw new E2eError("weak_key", "the public key is a low-order point");
  return shared;
}

async function aes(raw) {
  return subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function aesSeal(key, nonce, aad, plaintext) {
  return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, key, plaintext));
}

async function aesOpen(key, nonce, aad, ciphertext) {
  return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, key, ciphertext));
}

async function pairFrom(privateKey) {
  const jwk = await subtle.exportKey("jwk", privateKey);
  const publicKey = base64url.decode(jwk.x);
  return { privateKey, publicKey, publicText: jwk.x };
}

/** A fresh X25519 key pair: `{ privateKey (CryptoKey), publicKey (32 bytes), publicText (base64url) }`. */
export async function generateKeyPair() {
  const { privateKey } = await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  return pairFrom(privateKey);
}

/** The key pair whose secret half is `secret` (32 bytes). */
export async function importKeyPair(secret) {
  const privateKey = await subtle.importKey("pkcs8", concat(PKCS8_X25519, secret), { name: "X25519" }, true, ["deriveBits"]);
  return pairFrom(privateKey);
}

/** A short form to compare out of band: the first 16 bytes of SHA-256 of the key, hex in groups of 4. */
export async function fingerprint(publicKey) {
  const digest = new Uint8Array(await subtle.digest("SHA-256", publicKey)).slice(0, 16);
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("").match(/.{4}/g).join(" ");
}

async function wrappingKey(shared, publicKeys, channel, epoch, session) {
  const info = bind(WRAP_LABEL, [encoder.encode(channel), u64(epoch), encoder.encode(session)]);
  return hkdf(concat(...publicKeys), shared, info);
}

/** Wraps channel key `key` (32 bytes) from `owner` for member `session` with public key `to`. */
export async function wrapKey(owner, key, channel, epoch, session, to, ephemeral = null) {
  ephemeral ??= await generateKeyPair();
  const shared = concat(await x25519(ephemeral.privateKey, to), await x25519(owner.privateKey, to));
  const wrapping = await wrappingKey(shared, [ephemeral.publicKey, owner.publicKey, to], channel, epoch, session);
  const sealed = await aesSeal(await aes(wrapping), new Uint8Array(12), new Uint8Array(0), key);
  return base64url.encode(concat(ephemeral.publicKey, sealed));
}

/** Opens a wrapped key for `member` (a key pair) from the owner whose public key is `owner`. */
export async function unwrapKey(member, owner, wrapped, channel, epoch, session) {
  const bytes = base64url.decode(wrapped);
  if (!bytes || bytes.length !== 80) throw new E2eError("malformed", "malformed end-to-end data: wrapped key");
  const ephemeral = bytes.slice(0, 32);
  const shared = concat(await x25519(member.privateKey, ephemeral), await x25519(member.privateKey, owner));
  const wrapping = await wrappingKey(shared, [ephemeral, owner, member.publicKey], channel, epoch, session);
  try {
    return await aesOpen(await aes(wrapping), new Uint8Array(12), new Uint8Array(0), bytes.slice(32));
  } catch {
    throw new E2eError("bad_wrapped_key", `the wrapped key for epoch ${epoch} does not open with this member's key`, { epoch });
  }
}

function messageAad(channel, epoch, sender, seq) {
  return bind(MESSAGE_LABEL, [encoder.encode(channel), u64(epoch), encoder.encode(sender), u64(seq)]);
}

/** One member's keys for one channel, as ws-crypto's `Keyring`. */
export class Keyring {
  constructor(channel) {
    this.channel = channel;
    this.epochs = new Map(); // epoch -> { raw, key, lastSeen: Map }
    this.nextSeq = 1;
  }

  currentEpoch() {
    return this.epochs.size ? Math.max(...this.epochs.keys()) : null;
  }

  async install(epoch, raw) {
    const newest = this.currentEpoch();
    this.epochs.set(epoch, { raw, key: await aes(raw), lastSeen: new Map() });
    if (newest === null || epoch > newest) this.nextSeq = 1;
    while (this.epochs.size > KEPT_EPOCHS) this.epochs.delete(Math.min(...this.epochs.keys()));
  }

  /** (Owner) Starts the next epoch with a fresh key; returns its number. */
  async rotate() {
    const epoch = (this.currentEpoch() ?? 0) + 1;
    await this.install(epoch, crypto.getRandomValues(new Uint8Array(32)));
    return epoch;
  }

  /** (Owner) The current key wrapped for `[session, publicKey]` pairs: the data to publish. */
  async wrapCurrent(owner, members) {
    const epoch = this.currentEpoch();
    if (epoch === null) throw new E2eError("no_key", "no channel key yet");
    const { raw } = this.epochs.get(epoch);
    const keys = {};
    for (const [session, publicKey] of members) keys[session] = await wrapKey(owner, raw, this.channel, epoch, session, publicKey);
    return { e2e: "keys", epoch, keys };
  }

  /** (Member) Takes this member's key out of a hand-over; returns the epoch, or null when none is for `session`. */
  async acceptKeys(member, owner, session, data) {
    if (data?.e2e !== "keys" || !Number.isSafeInteger(data.epoch) || typeof data.keys !== "object") {
      throw new E2eError("malformed", "malformed end-to-end data: not a key hand-over");
    }
    const wrapped = data.keys[session];
    if (typeof wrapped !== "string") return null;
    if (this.epochs.size === KEPT_EPOCHS && data.epoch < Math.min(...this.epochs.keys())) return null;
    const raw = await unwrapKey(member, owner, wrapped, this.channel, data.epoch, session);
    const existing = this.epochs.get(data.epoch);
    if (existing) {
      if (existing.raw.every((b, i) => b === raw[i])) return data.epoch;
      throw new E2eError("key_conflict", `a second, different key for epoch ${data.epoch}`, { epoch: data.epoch });
    }
    await this.install(data.epoch, raw);
    return data.epoch;
  }

  /** Seals `plaintext` (string or bytes) from `sender` (this session). */
  async seal(sender, plaintext) {
    const epoch = this.currentEpoch();
    if (epoch === null) throw new E2eError("no_key", "no channel key yet: waiting for the owner to hand one over");
    const seq = this.nextSeq;
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const bytes = typeof plaintext === "string" ? encoder.encode(plaintext) : plaintext;
    const ct = await aesSeal(this.epochs.get(epoch).key, nonce, messageAad(this.channel, epoch, sender, seq), bytes);
    this.nextSeq += 1;
    return { e2e: "msg", epoch, seq, nonce: base64url.encode(nonce), ct: base64url.encode(ct) };
  }

  /** Opens a message the server says `sender` published; bytes. */
  async open(sender, data) {
    if (data?.e2e !== "msg" || !Number.isSafeInteger(data.epoch) || !Number.isSafeInteger(data.seq)) {
      throw new E2eError("malformed", "malformed end-to-end data: not a sealed message");
    }
    const nonce = base64url.decode(data.nonce);
    if (!nonce || nonce.length !== 12) throw new E2eError("malformed", "malformed end-to-end data: nonce");
    const ct = base64url.decode(data.ct);
    if (!ct || ct.length < 16) throw new E2eError("malformed", "malformed end-to-end data: ciphertext");
    const epoch = this.epochs.get(data.epoch);
    if (!epoch) throw new E2eError("unknown_epoch", `no key for epoch ${data.epoch}`, { epoch: data.epoch });
    const last = epoch.lastSeen.get(sender) ?? 0;
    if (data.seq <= last) {
      throw new E2eError("replayed", `message ${data.seq} from ${sender} replayed or reordered (last seen ${last})`, { sender, seq: data.seq, last });
    }
    if (last === 0 && epoch.lastSeen.size >= MAX_SENDERS_PER_EPOCH) {
      throw new E2eError("too_many_senders", `too many senders in epoch ${data.epoch}`);
    }
    let plaintext;
    try {
      plaintext = await aesOpen(epoch.key, nonce, messageAad(this.channel, data.epoch, sender, data.seq), ct);
    } catch {
      throw new E2eError("tampered", "message failed authentication: altered, or moved from another channel, epoch or sender");
    }
    epoch.lastSeen.set(sender, data.seq);
    return plaintext;
  }
}

/**
 * End-to-end encrypted channels over one channels WebSocket, as ws-crypto's
 * `E2eClient`. `onEvent` receives objects with `type`:
 *   "message"  {channel, session, user, text, bytes}
 *   "refused"  {channel, session, error}   (a message that did not open)
 *   "keys"     {channel, epoch}
 *   "joined"   {channel, session, user, granted}   (owner)
 *   "left"     {channel, session, epoch}           (owner)
 *   "removed"  {channel, reason}
 *   "other"    {envelope}
 * Events are handled one at a time, in order.
 */
export class E2eChannels {
  constructor(socket, keyPair, onEvent) {
    this.socket = socket;
    this.key = keyPair;
    this.onEvent = onEvent;
    this.nextId = 0;
    this.pending = new Map();
    this.joined = new Map(); // channel -> { me, owner: {session, key}, holders: Set, withheld: Set }
    this.rings = new Map();
    this.queue = Promise.resolve();
    socket.addEventListener("message", (event) => this.#receive(event.data));
  }

  #receive(text) {
    let envelope;
    try {
      envelope = JSON.parse(text);
    } catch {
      return;
    }
    if (envelope.type === "response" && this.pending.has(envelope.id)) {
      const { resolve, reject, action } = this.pending.get(envelope.id);
      this.pending.delete(envelope.id);
      if (envelope.data?.ok) resolve(envelope.data);
      else reject(Object.assign(new Error(`${action} refused: ${envelope.data?.code}: ${envelope.data?.message}`), { code: envelope.data?.code }));
      return;
    }
    // Events run in order, each after the previous one's async work.
    this.queue = this.queue.then(() => this.#handle(envelope)).catch((error) => this.onEvent({ type: "error", error }));
  }

  // Runs `work` in line with event handling, so events that arrive while a
  // join or a rotation waits for the server are handled after it (a key
  // hand-over must not be read before the client knows its own session).
  #serial(work) {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }

  command(channel, action, data = {}) {
    const id = `e2e-${++this.nextId}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, action });
      this.socket.send(JSON.stringify({ type: "command", id, channel, action, data }));
    });
  }

  async #presence(channel) {
    const data = await this.command(channel, "presence", {});
    return (data.members ?? []).map((m) => ({ session: m.session, user: m.user, role: m.role, key: base64url.decode(m.info?.e2e_key ?? "") }));
  }

  async #findSelf(channel) {
    const members = await this.#presence(channel);
    const me = members.find((m) => m.key && m.key.length === 32 && base64url.encode(m.key) === this.key.publicText);
    if (!me) throw new Error("this session is not in the presence list");
    const owner = members.find((m) => m.role === "owner" && m.key?.length === 32);
    const withheld = this.joined.get(channel)?.withheld ?? new Set();
    this.joined.set(channel, { me: me.session, owner: owner ? { session: owner.session, key: owner.key } : null, holders: new Set(), withheld });
    if (!this.rings.has(channel)) this.rings.set(channel, new Keyring(channel));
    return members;
  }

  #info() {
    return { e2e_key: this.key.publicText };
  }

  isOwner(channel) {
    const joined = this.joined.get(channel);
    return !!joined && joined.owner?.session === joined.me;
  }

  epoch(channel) {
    return this.rings.get(channel)?.currentEpoch() ?? null;
  }

  /** Creates `channel` encrypted, owned by this client, with epoch 1. */
  create(channel, historySize = 0) {
    return this.#serial(async () => {
      const data = { encrypted: true, presence_events: true, info: this.#info() };
      if (historySize > 0) data.history_size = historySize;
      await this.command(channel, "create", data);
      await this.#findSelf(channel);
      await this.rings.get(channel).rotate();
    });
  }

  /** Joins `channel`; the key arrives as a "keys" event. */
  join(channel) {
    return this.#serial(async () => {
      await this.command(channel, "join", { info: this.#info() });
      await this.#findSelf(channel);
    });
  }

  async leave(channel) {
    await this.command(channel, "leave", {});
    this.joined.delete(channel);
  }

  /** Seals and publishes `plaintext` (string or bytes). */
  async publish(channel, plaintext) {
    const joined = this.joined.get(channel);
    if (!joined) throw new Error(`not in channel ${channel}`);
    const sealed = await this.rings.get(channel).seal(joined.me, plaintext);
    await this.command(channel, "publish", sealed);
  }

  /** (Owner) Kicks `user` and starts a new epoch for those who remain. */
  kick(channel, user) {
    return this.#serial(async () => {
      await this.command(channel, "kick", { user });
      this.joined.get(channel)?.withheld.add(user);
      return this.#rotate(channel);
    });
  }

  /** (Owner) Bans `user` and starts a new epoch for those who remain. */
  ban(channel, user, duration) {
    return this.#serial(async () => {
      await this.command(channel, "ban", duration ? { user, duration } : { user });
      this.joined.get(channel)?.withheld.add(user);
      return this.#rotate(channel);
    });
  }

  /** (Owner) Lets `user` have keys again and hands its sessions the current key. */
  admit(channel, user) {
    return this.#serial(async () => {
      this.joined.get(channel)?.withheld.delete(user);
      const members = await this.#presence(channel);
      await this.#grant(channel, members.filter((m) => m.user === user && m.key?.length === 32).map((m) => [m.session, m.key]));
    });
  }

  /** (Owner) A new epoch for everyone present but withheld users. */
  rotate(channel) {
    return this.#serial(() => this.#rotate(channel));
  }

  async #rotate(channel) {
    const members = await this.#presence(channel);
    const joined = this.joined.get(channel);
    const keep = members.filter((m) => m.session !== joined.me && !joined.withheld.has(m.user) && m.key?.length === 32);
    const epoch = await this.rings.get(channel).rotate();
    joined.holders.clear();
    await this.#grant(channel, keep.map((m) => [m.session, m.key]));
    return epoch;
  }

  async #grant(channel, members) {
    if (!members.length) return;
    const keys = await this.rings.get(channel).wrapCurrent(this.key, members);
    await this.command(channel, "publish", keys);
    for (const [session] of members) this.joined.get(channel)?.holders.add(session);
  }

  async #handle(envelope) {
    const channel = envelope.channel;
    if (envelope.type !== "event" || !this.rings.has(channel)) return this.onEvent({ type: "other", envelope });
    const from = envelope.data?.from ?? {};
    const joined = this.joined.get(channel);
    switch (envelope.action) {
      case "message":
        return this.#publication(channel, from, envelope.data?.data);
      case "join": {
        if (!this.isOwner(channel)) return this.onEvent({ type: "other", envelope });
        const key = base64url.decode(from.info?.e2e_key ?? "");
        const granted = key?.length === 32 && !joined.withheld.has(from.user);
        if (granted) await this.#grant(channel, [[from.session, key]]);
        return this.onEvent({ type: "joined", channel, session: from.session, user: from.user, granted });
      }
      case "leave": {
        if (!this.isOwner(channel)) return this.onEvent({ type: "other", envelope });
        if (!joined.holders.delete(from.session)) return;
        const epoch = await this.#rotate(channel);
        return this.onEvent({ type: "left", channel, session: from.session, epoch });
      }
      case "kicked":
      case "banned":
      case "closed":
        this.joined.delete(channel);
        return this.onEvent({ type: "removed", channel, reason: envelope.action });
      default:
        return this.onEvent({ type: "other", envelope });
    }
  }

  async #publication(channel, from, data) {
    const joined = this.joined.get(channel);
    const refused = (error) => this.onEvent({ type: "refused", channel, session: from.session, error });
    const ring = this.rings.get(channel);
    try {
      if (data?.e2e === "keys") {
        if (!joined?.owner) return;
        if (from.session !== joined.owner.session) return refused(new E2eError("malformed", "keys from a session that is not the owner"));
        if (joined.me === joined.owner.session) return;
        const epoch = await ring.acceptKeys(this.key, joined.owner.key, joined.me, data);
        if (epoch !== null) this.onEvent({ type: "keys", channel, epoch });
        return;
      }
      const bytes = await ring.open(from.session, data);
      let text = null;
      try {
        text = decoder.decode(bytes);
      } catch {
        // Binary plaintext: `bytes` only.
      }
      return this.onEvent({ type: "message", channel, session: from.session, user: from.user, text, bytes });
    } catch (error) {
      if (error instanceof E2eError) return refused(error);
      throw error;
    }
  }
}

// ---------------------------------------------------------------------------
// Encrypted sessions (ws-crypto's `session`, AES-256-GCM): a client for
// servers that serve the `ws-crypto.session.v1` subprotocol.

/** The subprotocol to pass to `new WebSocket(url, [SESSION_SUBPROTOCOL])`. */
export const SESSION_SUBPROTOCOL = "ws-crypto.session.v1";
const SESSION_LABEL = encoder.encode("ws-crypto session v1");
/** The close code of a browser session that refused the server's message or handshake. */
export const SESSION_REFUSED = 4010;

function sessionNonce(counter) {
  return concat(new Uint8Array(4), u64(counter));
}

async function sha256(bytes) {
  return new Uint8Array(await subtle.digest("SHA-256", bytes));
}

/** The client's half of the key agreement; `ephemeral` only for tests. */
export async function sessionHello(ephemeral = null) {
  ephemeral ??= await generateKeyPair();
  return { ephemeral, hello: concat(Uint8Array.of(1, 1), ephemeral.publicKey, Uint8Array.of(1, 1)) };
}

/** Checks the server's accept and derives the keys: `{ send, receive, serverKey }`. */
export async function sessionFinish({ ephemeral, hello }, accept, pin = null) {
  accept = new Uint8Array(accept);
  if (accept.length !== 100 || accept[0] !== 2) throw new E2eError("malformed", "malformed accept");
  if (accept[1] !== 1) throw new E2eError("malformed", `unsupported handshake version ${accept[1]}`);
  if (accept[34] !== 1) throw new E2eError("malformed", "the server chose an AEAD this client did not offer");
  const serverKey = accept[35] === 1 ? accept.slice(36, 68) : null;
  if (pin) {
    if (!serverKey) throw new E2eError("not_authenticated", "the server has no long-term key, but one is pinned");
    if (base64url.encode(serverKey) !== (typeof pin === "string" ? pin : base64url.encode(pin))) {
      throw new E2eError("key_mismatch", `the server's key ${await fingerprint(serverKey)} is not the pinned key`);
    }
  }
  let ikm = await x25519(ephemeral.privateKey, accept.slice(2, 34));
  if (serverKey) ikm = concat(ikm, await x25519(ephemeral.privateKey, serverKey));
  const transcript = await sha256(concat(SESSION_LABEL, hello, accept.slice(0, 68)));
  const confirm = await hkdf(transcript, ikm, encoder.encode("server confirmation"));
  let differ = 0;
  for (let i = 0; i < 32; i++) differ |= confirm[i] ^ accept[68 + i];
  if (differ) throw new E2eError("confirmation_failed", "the server's key confirmation does not match: the handshake was altered");
  return {
    send: await aes(await hkdf(transcript, ikm, encoder.encode("client to server"))),
    receive: await aes(await hkdf(transcript, ikm, encoder.encode("server to client"))),
    serverKey,
  };
}

/** Seals record number `counter`: text (string) or binary (bytes). */
export async function sealRecord(key, counter, message) {
  const text = typeof message === "string";
  const header = concat(Uint8Array.of(text ? 3 : 4), u64(counter));
  const body = await aesSeal(key, sessionNonce(counter), header, text ? encoder.encode(message) : message);
  return concat(header, body);
}

/** Opens record number `expected`: a string or bytes, or an E2eError saying why not. */
export async function openRecord(key, expected, record) {
  record = new Uint8Array(record);
  if (record.length < 25 || (record[0] !== 3 && record[0] !== 4)) throw new E2eError("malformed", "not a sealed message");
  const counter = Number(new DataView(record.buffer, record.byteOffset + 1, 8).getBigUint64(0));
  if (counter < expected) throw new E2eError("replayed", `message ${counter} replayed or late (expected ${expected})`);
  if (counter > expected) throw new E2eError("skipped", `message ${counter} arrived before ${expected}: messages were dropped or reordered`);
  let plain;
  try {
    plain = await aesOpen(key, sessionNonce(counter), record.slice(0, 9), record.slice(9));
  } catch {
    throw new E2eError("tampered", `message ${counter} failed authentication: altered, or sealed with another key`);
  }
  return record[0] === 3 ? decoder.decode(plain) : plain;
}

/**
 * An encrypted session over an open WebSocket made with
 * `new WebSocket(url, [SESSION_SUBPROTOCOL])`. `onMessage(message)` gets
 * strings and Uint8Arrays; a message that does not open closes the socket
 * with SESSION_REFUSED (4010: browsers may not send 1008, which the Rust
 * side uses) and goes to `onError(error)`.
 */
export class SealedSession {
  static async open(socket, pin = null, onMessage = () => {}, onError = () => {}) {
    if (socket.protocol !== SESSION_SUBPROTOCOL) throw new E2eError("not_negotiated", `the server did not agree to ${SESSION_SUBPROTOCOL}`);
    socket.binaryType = "arraybuffer";
    const start = await sessionHello();
    const accept = new Promise((resolve, reject) => {
      socket.addEventListener("message", (event) => resolve(event.data), { once: true });
      socket.addEventListener("close", () => reject(new Error("the connection closed during the handshake")), { once: true });
    });
    socket.send(start.hello);
    let keys;
    try {
      keys = await sessionFinish(start, await accept, pin);
    } catch (error) {
      socket.close(SESSION_REFUSED, "encrypted session handshake failed");
      throw error;
    }
    return new SealedSession(socket, keys, onMessage, onError);
  }

  constructor(socket, keys, onMessage, onError) {
    this.socket = socket;
    this.keys = keys;
    this.serverKey = keys.serverKey && base64url.encode(keys.serverKey);
    this.sent = 0;
    this.received = 0;
    this.sending = Promise.resolve();
    this.receiving = Promise.resolve();
    socket.addEventListener("message", (event) => {
      // Records open in arrival order, each after the one before.
      this.receiving = this.receiving.then(async () => {
        if (this.failed) return;
        try {
          const message = await openRecord(this.keys.receive, this.received, event.data);
          this.received += 1;
          onMessage(message);
        } catch (error) {
          this.failed = true;
          socket.close(SESSION_REFUSED, `encrypted session: ${error.message}`.slice(0, 120));
          onError(error);
        }
      });
    });
  }

  /** Seals and sends a string (a text message) or bytes (binary), in call order. */
  send(message) {
    const counter = this.sent++;
    this.sending = this.sending.then(async () => this.socket.send(await sealRecord(this.keys.send, counter, message)));
    return this.sending;
  }
}
