// Encrypted sessions in the browser, on WebCrypto only: the twin of the
// Rust crate ws-crypto's `session` and `sealed` modules, byte for byte.
// `ws serve` serves it at /e2e.js. (End-to-end encrypted channels are MLS
// groups: /mls.js.)
//
//   import { SealedSession, SESSION_SUBPROTOCOL } from "/e2e.js";
//   const session = await SealedSession.open(new WebSocket(url, [SESSION_SUBPROTOCOL]), pin, onMessage);
//   session.send("hello"); // sealed: only the pinned server reads it

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

const PKCS8_X25519 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

/** A refusal, with `code` saying why (as ws-crypto's session errors):
 * malformed, not_authenticated, key_mismatch, confirmation_failed,
 * replayed, skipped, tampered, not_negotiated, weak_key. */
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
 * side uses) and goes to `onError(error)`. With `{ credential }` (an
 * Authorization header's value, such as `Bearer <JWT>`), the session's
 * first sealed message is that credential, for a server that takes it
 * there (`Sealed::credential_inside`): keep it out of the URL then, where
 * a path that reads the upgrade would read it, and pin the server's key.
 */
export class SealedSession {
  static async open(socket, pin = null, onMessage = () => {}, onError = () => {}, { credential = null } = {}) {
    if (socket.protocol !== SESSION_SUBPROTOCOL) throw new E2eError("not_negotiated", `the server did not agree to ${SESSION_SUBPROTOCOL}`);
    socket.binaryType = "arraybuffer";
    const start = await sessionHello();
    // One listener from the start: the first message is the accept; what
    // comes while it is checked (a server that greets on open) waits in
    // `early`, then opens in order, none lost.
    const early = [];
    let session = null;
    let takeAccept;
    const accept = new Promise((resolve, reject) => {
      takeAccept = resolve;
      socket.addEventListener("close", () => reject(new Error("the connection closed during the handshake")), { once: true });
    });
    socket.addEventListener("message", (event) => {
      if (session) session.receive(event.data);
      else if (takeAccept) {
        takeAccept(event.data);
        takeAccept = null;
      } else early.push(event.data);
    });
    socket.send(start.hello);
    let keys;
    try {
      keys = await sessionFinish(start, await accept, pin);
    } catch (error) {
      socket.close(SESSION_REFUSED, "encrypted session handshake failed");
      throw error;
    }
    session = new SealedSession(socket, keys, onMessage, onError);
    if (credential !== null) session.send(credential);
    for (const data of early) session.receive(data);
    return session;
  }

  constructor(socket, keys, onMessage, onError) {
    this.socket = socket;
    this.keys = keys;
    this.serverKey = keys.serverKey && base64url.encode(keys.serverKey);
    this.sent = 0;
    this.received = 0;
    this.sending = Promise.resolve();
    this.receiving = Promise.resolve();
    this.onMessage = onMessage;
    this.onError = onError;
  }

  /** Opens a record from the socket: in arrival order, each after the one before. */
  receive(data) {
    this.receiving = this.receiving.then(async () => {
      if (this.failed) return;
      try {
        const message = await openRecord(this.keys.receive, this.received, data);
        this.received += 1;
        this.onMessage(message);
      } catch (error) {
        this.failed = true;
        this.socket.close(SESSION_REFUSED, `encrypted session: ${error.message}`.slice(0, 120));
        this.onError(error);
      }
    });
  }

  /** Seals and sends a string (a text message) or bytes (binary), in call order. */
  send(message) {
    const counter = this.sent++;
    this.sending = this.sending.then(async () => this.socket.send(await sealRecord(this.keys.send, counter, message)));
    return this.sending;
  }
}
