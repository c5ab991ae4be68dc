// End-to-end encrypted channels on MLS (RFC 9420) for pages of a `ws serve`
// origin: `import { MlsDevice, MlsChannels } from "/mls.js"`. The group
// work is ts-mls's (bundled as /vendor/ts-mls.js); this module speaks the
// channels protocol around it the way ws-crypto's Rust member
// (`ws_crypto::mls::MlsClient`) does, so the two share groups:
//
// - a device is a user's basic credential and an Ed25519 signature key;
//   its key packages go to the server's directory (`key_packages`), and
//   members add its user from there (`claim`);
// - commits are MLS public messages the server orders (`commit`): the
//   first for the group's epoch wins, a later one is refused `conflict`
//   and made again on top of the winner;
// - messages are MLS private messages, published as
//   `{"e2e": "mls", "message": base64}`;
// - the server is the group's only external sender, and the only thing a
//   member takes from it is a Remove proposal (a kick or a ban); commits
//   that carry anything else from outside the group are refused.
//
// Nothing of MLS is written here. Ciphersuite 1
// (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519) only.

import {
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeExternalSender,
  decodeGroupState,
  decodeMlsMessage,
  defaultCapabilities,
  defaultClientConfig,
  emptyPskIndex,
  encode,
  encodeGroupState,
  encodeMlsMessage,
  externalSenderEncoder,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  makeKeyPackageRef,
  processPrivateMessage,
  processPublicMessage,
  unprotectPrivateMessage,
  varLenTypeEncoder,
} from "/vendor/ts-mls.js";

export const CIPHERSUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
/** The channel key packages are sent to. */
export const KEYS_CHANNEL = "$keys";
/** How long a key package made here is valid: the server drops it then. */
export const KEY_PACKAGE_LIFETIME_SECONDS = 30 * 24 * 3600;
/** Key packages a device keeps the private half of (the server keeps 100
 * one-time packages and a last-resort one per device). */
export const MAX_KEPT_PACKAGES = 101;
/** Own messages remembered until the server echoes them back. */
export const MAX_UNECHOED = 1000;
/** Commits made again after `conflict` before giving up. */
export const MAX_REBASES = 16;

const MESSAGE_KIND = "mls";
const COMMIT_KIND = "commit";
const PROPOSAL_KIND = "proposal";
/** A device's request to be added again after it missed commits, as
 * ws-crypto's `RESYNC_KIND`: `{"e2e": "resync", "device": fingerprint,
 * "epoch": E}` (the last epoch it has). */
export const RESYNC_KIND = "resync";

export class MlsError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "MlsError";
    this.code = code;
  }
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

export const base64 = {
  encode(bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  },
  decode(text) {
    if (typeof text !== "string") throw new MlsError("malformed", "not base64");
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  },
};

/** The length of a signing key's handle: what ts-mls holds (in key
 * packages and group states) in place of the private key of a device whose
 * key WebCrypto keeps non-extractable. Not 32 or 48 bytes, the lengths of
 * the raw and PKCS #8 keys ts-mls signs with itself. */
const HANDLE_LENGTH = 16;
// The non-extractable signing keys of the devices this page has opened, by
// their handle (base64).
const signingKeys = new Map();

let suite;
// ts-mls's ciphersuite 1, signing with the CryptoKey a handle names: the
// private key never exists as bytes here, so a script that reads the
// device's storage (or this page's memory) finds a handle, not a key.
function cipherSuite() {
  suite ??= getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE)).then((cs) => ({
    ...cs,
    signature: {
      ...cs.signature,
      async sign(signKey, message) {
        const key = signingKeys.get(base64.encode(signKey));
        if (key) return new Uint8Array(await crypto.subtle.sign("Ed25519", key, message));
        if (signKey.length === HANDLE_LENGTH) throw new MlsError("no_key", "this page does not hold the signing key this device's state names");
        return cs.signature.sign(signKey, message);
      },
    },
  }));
  return suite;
}

// A device's signature key pair: the private half a non-extractable
// WebCrypto key, named by a random handle, where the browser has WebCrypto
// Ed25519 (Chromium 137, Firefox 129, Safari 17); bytes from ts-mls where
// it has not.
async function newSignatureKeys() {
  try {
    const pair = await crypto.subtle.generateKey("Ed25519", false, ["sign", "verify"]);
    const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return { publicKey, signKey: crypto.getRandomValues(new Uint8Array(HANDLE_LENGTH)), privateKey: pair.privateKey };
  } catch {
    return (await cipherSuite()).signature.keygen();
  }
}

/** A signature key's fingerprint as people compare them (and as the Rust
 * member and the server show it): the first 16 bytes of its SHA-256, in hex
 * groups of four. */
export async function fingerprint(publicKey) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicKey)).subarray(0, 16);
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g).join(" ");
}

function decoded(bytes, wireformat) {
  const result = decodeMlsMessage(bytes, 0);
  if (!result || result[0].wireformat !== wireformat) throw new MlsError("malformed", `not an MLS ${wireformat}`);
  return result[0];
}

function member(leaf) {
  return leaf.credential.credentialType === "basic" ? fromUtf8.decode(leaf.credential.identity) : null;
}

/** A user's device: a basic credential naming the user and an Ed25519
 * signature key, the same for every key package and group it makes. Its
 * private key is a non-extractable WebCrypto key where the browser has
 * WebCrypto Ed25519 (`keyExtractable` is false then): nothing on the page,
 * in its storage or in ts-mls's states holds it as bytes. `open` keeps a
 * device across visits (the key as a CryptoKey in IndexedDB); a new device
 * is a new fingerprint to the other members. */
export class MlsDevice {
  constructor(user, keys, fingerprintText) {
    this.user = user;
    this.keys = keys;
    this.fingerprint = fingerprintText;
    /** Whether the private key exists as bytes (a browser without
     * WebCrypto Ed25519): a script of this origin could copy it then. */
    this.keyExtractable = !keys.privateKey;
    if (keys.privateKey) signingKeys.set(base64.encode(keys.signKey), keys.privateKey);
    this.credential = { credentialType: "basic", identity: utf8.encode(user) };
    // Key packages made and not yet used, each with its reference (what a
    // Welcome names it by) and private half.
    this.packages = [];
  }

  static async create(user) {
    if (!user) throw new MlsError("bad_request", "a device needs its user's name");
    const keys = await newSignatureKeys();
    return new MlsDevice(user, keys, await fingerprint(keys.publicKey));
  }

  /** This browser's device for `user`, kept in `store` across visits, and
   * whether it is that one (`persisted`). One tab at a time holds it (a
   * Web Lock, for the page's life): two tabs with one group state would
   * encrypt under the same keys and nonces, so a second tab gets a device
   * of its own, kept nowhere. */
  static async open(user, store) {
    const held =
      store &&
      globalThis.navigator?.locks &&
      (await new Promise((resolve) => {
        navigator.locks
          .request(`ws-mls-device:${user}`, { ifAvailable: true }, (lock) => {
            resolve(Boolean(lock));
            // Held until the page goes.
            return lock ? new Promise(() => {}) : undefined;
          })
          .catch(() => resolve(false));
      }));
    if (!held) return { device: await MlsDevice.create(user), persisted: false };
    const record = await store.load(user);
    if (record) {
      const device = new MlsDevice(user, record.keys, record.fingerprint);
      device.packages = record.packages;
      device.saved = record.groups;
      device.store = store;
      return { device, persisted: true };
    }
    const device = await MlsDevice.create(user);
    device.store = store;
    await device.save();
    return { device, persisted: true };
  }

  /** Writes the device, its key packages and `groups` (channel -> {state,
   * position}) to its store, if it has one. */
  async save(groups = this.saved ?? {}) {
    this.saved = groups;
    if (!this.store) return;
    await this.store.save({ user: this.user, keys: this.keys, fingerprint: this.fingerprint, packages: this.packages, groups });
  }

  /** A one-time key package: `{ bytes, publicPackage, privatePackage }`. */
  async keyPackage() {
    const now = BigInt(Math.floor(Date.now() / 1000));
    const lifetime = { notBefore: now - 3600n, notAfter: now + BigInt(KEY_PACKAGE_LIFETIME_SECONDS) };
    const cs = await cipherSuite();
    // Groups here hold the roles extension: every member must support it.
    const capabilities = defaultCapabilities();
    capabilities.extensions = [...capabilities.extensions, ROLES_EXTENSION];
    const keys = { publicKey: this.keys.publicKey, signKey: this.keys.signKey };
    const made = await generateKeyPackageWithKey(this.credential, capabilities, lifetime, [], keys, cs);
    made.ref = await makeKeyPackageRef(made.publicPackage, cs.hash);
    this.packages.push(made);
    // The oldest go first: the server keeps at most 100 per device.
    if (this.packages.length > MAX_KEPT_PACKAGES) this.packages.splice(0, this.packages.length - MAX_KEPT_PACKAGES);
    const bytes = encodeMlsMessage({ keyPackage: made.publicPackage, wireformat: "mls_key_package", version: "mls10" });
    return { bytes, ...made };
  }
}

/** Where devices are kept in this browser: an IndexedDB database of one
 * record per user (the public key, the private key as a non-extractable
 * CryptoKey and its handle, key packages, group states). */
export class MlsStore {
  constructor(db) {
    this.db = db;
  }

  static open(name = "ws-mls") {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("devices", { keyPath: "user" });
      request.onsuccess = () => resolve(new MlsStore(request.result));
      request.onerror = () => reject(request.error);
    });
  }

  #run(mode, work) {
    return new Promise((resolve, reject) => {
      const request = work(this.db.transaction("devices", mode).objectStore("devices"));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  load(user) {
    return this.#run("readonly", (devices) => devices.get(user));
  }

  save(record) {
    return this.#run("readwrite", (devices) => devices.put(record));
  }

  forget(user) {
    return this.#run("readwrite", (devices) => devices.delete(user));
  }
}

/** The GroupContext extension that holds a group's roles, as ws-crypto's
 * `ROLES_EXTENSION`: JSON `{"<user>": "owner" | "committer"}`. Owners and
 * committers may commit, owners alone change roles; the server cannot
 * promote anyone. A group made here has its creator as owner. An owner
 * changes roles with `MlsChannels.setRole` here or `MlsClient::set_role`
 * in Rust (the page's bundle of ts-mls gives such commits the path RFC
 * 9420 §12.4 requires, which mls-rs checks). */
export const ROLES_EXTENSION = 0xf5a1;

function rolesExtension(roles) {
  const sorted = Object.fromEntries(Object.entries(roles).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { extensionType: ROLES_EXTENSION, extensionData: utf8.encode(JSON.stringify(sorted)) };
}

/** The roles a group holds: `null` for one made without them (any member
 * may commit), `{}` when they do not read (nobody may, as in ws-crypto). */
export function rolesOf(state) {
  const extension = state.groupContext.extensions.find((e) => e.extensionType === ROLES_EXTENSION);
  if (!extension) return null;
  try {
    return JSON.parse(fromUtf8.decode(extension.extensionData));
  } catch {
    return {};
  }
}

// Ours, as ws-crypto's ChannelRules: commits only from members the group's
// roles let commit (role changes from owners only), and from outside the
// group (the server, its external sender) only Remove proposals. A server
// that adds a device of its own is refused.
function rulesOf(state) {
  const roles = rolesOf(state);
  return (incoming) => {
    if (incoming.kind === "proposal") {
      const { proposal, senderLeafIndex } = incoming.proposal;
      return senderLeafIndex === undefined && proposal.proposalType !== "remove" ? "reject" : "accept";
    }
    if (incoming.senderLeafIndex === undefined) return "reject";
    const outside = incoming.proposals.some((p) => p.senderLeafIndex === undefined && p.proposal.proposalType !== "remove");
    if (outside) return "reject";
    if (roles) {
      const leaf = state.ratchetTree[2 * incoming.senderLeafIndex]?.leaf;
      const role = leaf ? roles[member(leaf)] : undefined;
      const changesRoles = incoming.proposals.some((p) => p.proposal.proposalType === "group_context_extensions");
      if (role !== "owner" && (role !== "committer" || changesRoles)) return "reject";
    }
    return "accept";
  };
}

/** End-to-end encrypted channels over a channels socket (the page's own:
 * this listens to it beside the page and sends commands with ids of its
 * own). `onEvent` gets, in order:
 *
 * - `{type: "message", channel, user, fingerprint, text, own}`: a member's
 *   message (`own`: this device's, back from the server, so delivered);
 * - `{type: "joined", channel, epoch}`: a member added this device;
 * - `{type: "epoch", channel, epoch, added, removed, own}`: the group
 *   changed (`own`: by this device's commit);
 * - `{type: "removed", channel}`: this device is out of the group;
 * - `{type: "admitted", channel, user}`: a user joined the channel who is
 *   not in the group (with `autoAdd`, added first; so is a member's device
 *   not in the group yet, a second browser say, without this event);
 * - `{type: "member_arrived", channel, user}` (without `autoAdd`): a
 *   session of a user in the group joined the channel, from a new device
 *   of theirs or one reconnecting (`claim` tells which: it leaves out the
 *   devices already in);
 * - `{type: "add_failed", channel, users, error}`;
 * - `{type: "removal_proposed", channel, user}`: the server asked for a
 *   removal, pending until a member commits (`commitPending`);
 * - `{type: "behind", channel, epoch}`: this device missed commits of the
 *   group (away longer than the channel keeps, or they were withheld) and
 *   reads nothing more there; it asked to be added again, and a member
 *   with `autoAdd` does so (`joined` follows);
 * - `{type: "unreadable", channel, error}`: something for the group that
 *   did not open or apply, said rather than dropped;
 * - `{type: "not_saved", error}`: the device's store refused a write (a
 *   reload would go back to what it last kept);
 * - `{type: "other", envelope}`: everything else. */
export class MlsChannels {
  constructor(socket, device, onEvent, { autoAdd = false, maxMessage = 1024 * 1024 } = {}) {
    this.socket = socket;
    this.device = device;
    this.onEvent = onEvent;
    this.autoAdd = autoAdd;
    this.maxMessage = maxMessage;
    this.nextId = 0;
    this.pending = new Map();
    this.groups = new Map(); // channel -> ClientState
    this.sent = new Map(); // base64 of own messages not back yet -> their text
    this.seen = new Map(); // channel -> {offset, epoch} of the last publication handled
    this.behind = new Map(); // channel -> the epoch this device has, where it missed commits
    this.queue = Promise.resolve();
    // Groups this device saved on an earlier visit.
    for (const [channel, saved] of Object.entries(device.saved ?? {})) {
      const decodedState = decodeGroupState(saved.state, 0);
      if (!decodedState) continue;
      this.groups.set(channel, { ...decodedState[0], clientConfig: defaultClientConfig });
      if (saved.position) this.seen.set(channel, saved.position);
    }
    socket.addEventListener("message", (event) => this.#receive(event.data));
  }

  /** The last publication of `channel` this device handled, `{offset,
   * epoch}`: join with it as `since` to read what came while away. */
  position(channel) {
    return this.seen.get(channel) ?? null;
  }

  /** Whether this device is in `channel`'s group. */
  inGroup(channel) {
    return this.groups.has(channel);
  }

  // Saves the groups with the device (when it has a store): after every
  // change, so a reload goes on from where the page was.
  async #persist() {
    if (!this.device.store) return;
    const groups = {};
    for (const [channel, state] of this.groups) groups[channel] = { state: encodeGroupState(state), position: this.seen.get(channel) ?? null };
    try {
      await this.device.save(groups);
    } catch (error) {
      // Said, not thrown: what was done stands; a reload would not have it.
      this.onEvent({ type: "not_saved", error: String(error?.message ?? error) });
    }
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
      else reject(new MlsError(envelope.data?.code ?? "refused", `${action} refused: ${envelope.data?.code}: ${envelope.data?.message}`));
      return;
    }
    // Events run in order, each after the previous one's work and after
    // any commit being made (a commit's fate decides what comes next).
    this.#serial(() => this.#handle(envelope)).catch((error) => this.onEvent({ type: "unreadable", channel: envelope.channel, error: String(error?.message ?? error) }));
  }

  #serial(work) {
    const run = this.queue.then(work).finally(() => this.#persist());
    this.queue = run.catch(() => {});
    return run;
  }

  command(channel, action, data = {}) {
    const id = `mls-${++this.nextId}`;
    const message = JSON.stringify({ type: "command", id, channel, action, data });
    if (message.length > this.maxMessage) return Promise.reject(new MlsError("too_large", `${action} would be ${message.length} bytes, more than the server takes (${this.maxMessage})`));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, action });
      this.socket.send(message);
    });
  }

  /** The group's members: `[{user, fingerprint}]`. */
  async roster(channel) {
    const state = this.groups.get(channel);
    if (!state) return [];
    return Promise.all(leaves(state).map(async ({ leaf }) => ({ user: member(leaf), fingerprint: await fingerprint(leaf.signaturePublicKey) })));
  }

  epoch(channel) {
    const state = this.groups.get(channel);
    return state ? Number(state.groupContext.epoch) : null;
  }

  /** Leaves `count` one-time key packages and a last-resort one in the
   * server's directory; what the user's devices have there after it. */
  publishKeyPackages(count = 10) {
    return this.#serial(() => this.#publishKeyPackages(count));
  }

  async #publishKeyPackages(count) {
    const packages = [];
    for (let i = 0; i < count; i++) packages.push(base64.encode((await this.device.keyPackage()).bytes));
    const lastResort = base64.encode((await this.device.keyPackage()).bytes);
    return this.command(KEYS_CHANNEL, "key_packages", { key_packages: packages, last_resort: lastResort });
  }

  /** Creates `channel` encrypted with `historySize` publications kept (at
   * least 1: commits travel through history) and its group with this
   * device alone, naming the server as its external sender. */
  create(channel, historySize = 100) {
    return this.#serial(async () => {
      const reply = await this.command(channel, "create", { encrypted: true, history_size: Math.max(1, historySize), presence_events: true });
      if (!reply.external_sender) throw new MlsError("no_delivery_service", "the server named no external sender: it does not order MLS commits");
      const server = decodeExternalSender(base64.decode(reply.external_sender), 0);
      if (!server) throw new MlsError("malformed", "the server's external sender does not decode");
      const { publicPackage, privatePackage } = await this.device.keyPackage();
      this.device.packages.pop();
      // RFC 9420 §12.1.8.1: the extension holds a list of senders. The
      // roles extension makes this device's user the group's owner.
      const extensions = [
        { extensionType: "external_senders", extensionData: encode(varLenTypeEncoder(externalSenderEncoder))([server[0]]) },
        rolesExtension({ [this.device.user]: "owner" }),
      ];
      const state = await createGroup(utf8.encode(channel), publicPackage, privatePackage, extensions, await cipherSuite());
      this.groups.set(channel, state);
      return reply;
    });
  }

  /** Joins `channel`; this device enters its group when a member adds it
   * (a `joined` event), from a key package it published. With `{since:
   * this.position(channel)}`, what was published while away is handled
   * first, in order; a device whose group is then still older than the
   * server says it is missed commits (`behind`, and it asks to be added
   * again). */
  join(channel, data = {}) {
    return this.#serial(async () => {
      const reply = await this.command(channel, "join", data);
      // What came while away (`since`), in order, before anything live.
      for (const publication of reply.publications ?? []) {
        try {
          await this.#handle({ type: "event", channel, action: "message", data: publication });
        } catch (error) {
          this.onEvent({ type: "unreadable", channel, error: String(error?.message ?? error) });
        }
      }
      // Where the server says the group is (read before the history): a
      // device still older after what came while away missed commits.
      const state = this.groups.get(channel);
      if (state && Number.isSafeInteger(reply.group_epoch) && BigInt(reply.group_epoch) > state.groupContext.epoch) this.#fellBehind(channel);
      else if (reply.recovered === false) this.onEvent({ type: "unreadable", channel, error: "the channel no longer keeps all that was sent while this device was away: commits may be missing" });
      return reply;
    });
  }

  /** Adds every device of each of `users` not in the group yet in one
   * commit, from key packages claimed from the directory. The epoch the
   * commit starts. */
  add(channel, users) {
    return this.#serial(() => this.#add(channel, users));
  }

  async #add(channel, users) {
    const claimed = await this.#claim(channel, users);
    if (claimed.length === 0) throw new MlsError("no_key_packages", `no key packages for ${users.join(", ")}: their devices must publish some first`);
    return this.#addClaimed(channel, claimed);
  }

  /** Takes one key package per device of each of `users` that is not in
   * the group yet (the others' packages stay in the server's directory),
   * to add after checking: `[{user, fingerprint,
   * keyPackage}]`, each fingerprint computed here from the package, not
   * taken from the server. A basic credential is a name its device signs,
   * so a server could hand out a device of its own under a user's name:
   * compare fingerprints with the user before `addClaimed` (the page's
   * owner can). A package naming another user than the one asked for is
   * refused. */
  claim(channel, users) {
    return this.#serial(() => this.#claim(channel, users));
  }

  /** Adds devices `claim` returned, in one commit. The epoch it starts. */
  addClaimed(channel, claimed) {
    return this.#serial(() => this.#addClaimed(channel, claimed));
  }

  // `keep`: a device of the user in the group to claim for all the same
  // (one to add again).
  async #claim(channel, users, keep = null) {
    this.#group(channel);
    const members = await this.roster(channel);
    const claimed = [];
    for (const user of users) {
      const except = members.filter((m) => m.user === user && m.fingerprint !== keep).map((m) => m.fingerprint);
      const reply = await this.command(channel, "claim", except.length ? { user, except } : { user });
      for (const entry of reply.key_packages ?? []) {
        const keyPackage = decoded(base64.decode(entry.key_package), "mls_key_package").keyPackage;
        const named = member(keyPackage.leafNode);
        if (named !== user) throw new MlsError("forged", `the server handed out a key package of ${JSON.stringify(named)} for ${JSON.stringify(user)}`);
        claimed.push({ user, fingerprint: await fingerprint(keyPackage.leafNode.signaturePublicKey), keyPackage });
      }
    }
    return claimed;
  }

  #addClaimed(channel, claimed) {
    if (claimed.length === 0) throw new MlsError("no_key_packages", "no devices to add");
    // After a conflict the winner may have added some of them (another tab
    // of the owner's, auto-adding too): those are left out, and nothing is
    // committed when none is left.
    return this.#commit(channel, (state) => {
      const inGroup = leaves(state).map(({ leaf }) => leaf.signaturePublicKey);
      const missing = claimed.filter(({ keyPackage }) => !inGroup.some((key) => sameBytes(key, keyPackage.leafNode.signaturePublicKey)));
      return missing.length ? missing.map(({ keyPackage }) => ({ proposalType: "add", add: { keyPackage } })) : null;
    });
  }

  /** Removes every device of `user`. The epoch the commit starts. */
  remove(channel, user) {
    return this.#serial(() =>
      this.#commit(channel, (state) => {
        const removed = leavesOf(state, user);
        if (!removed.length) throw new MlsError("not_member", `${user} is not in the group`);
        return removed.map((index) => ({ proposalType: "remove", remove: { removed: index } }));
      }),
    );
  }

  /** The group's roles: `{user: "owner" | "committer"}`. */
  roles(channel) {
    const state = this.groups.get(channel);
    return state ? (rolesOf(state) ?? {}) : {};
  }

  /** Commits `user`'s role in the group: `"owner"`, `"committer"` (may
   * commit adds and removals) or `null` (none: may not commit). Owners
   * alone change roles (`forbidden` otherwise, as the others would refuse
   * it); give the user the channel's `commit` right too, or the server
   * refuses their commits. The epoch the commit starts. */
  setRole(channel, user, role) {
    if (role !== null && role !== "owner" && role !== "committer") return Promise.reject(new MlsError("bad_request", `no such role: ${JSON.stringify(role)}`));
    return this.#serial(() =>
      this.#commit(channel, (state) => {
        const roles = rolesOf(state);
        if (!roles || roles[this.device.user] !== "owner") throw new MlsError("forbidden", "only the group's owners change its roles");
        const next = { ...roles };
        if (role === null) delete next[user];
        else next[user] = role;
        // The proposal replaces the whole list: every other extension
        // (the server as external sender, above all) stays as it is.
        const extensions = state.groupContext.extensions.map((e) => (e.extensionType === ROLES_EXTENSION ? rolesExtension(next) : e));
        return [{ proposalType: "group_context_extensions", groupContextExtensions: { extensions } }];
      }),
    );
  }

  /** Commits the proposals received since the last commit (the server's
   * removals) with a fresh key for this member. */
  commitPending(channel) {
    return this.#serial(() => this.#commit(channel, () => []));
  }

  /** Encrypts `text` for the channel's members and publishes it. */
  send(channel, text) {
    return this.#serial(async () => {
      const result = await createApplicationMessage(this.#group(channel), utf8.encode(text), await cipherSuite());
      this.groups.set(channel, result.newState);
      const message = base64.encode(encodeMlsMessage({ privateMessage: result.privateMessage, wireformat: "mls_private_message", version: "mls10" }));
      this.sent.set(message, text);
      // Bounded: on a server that does not echo publications nothing comes
      // back; the oldest are forgotten (an echo of one, late, is then
      // reported unreadable: a device cannot open its own message).
      if (this.sent.size > MAX_UNECHOED) this.sent.delete(this.sent.keys().next().value);
      try {
        return await this.command(channel, "publish", { e2e: MESSAGE_KIND, message });
      } catch (error) {
        this.sent.delete(message);
        throw error;
      }
    });
  }

  #group(channel) {
    const state = this.groups.get(channel);
    if (!state) throw new MlsError("no_group", `this device is not in the group of ${channel}`);
    return state;
  }

  // Makes a commit of `proposals(state)` and has the server order it;
  // when another commit came first, waits for it, applies it and makes
  // this one again. `proposals` gives null when nothing is left to
  // commit: the group's epoch then.
  async #commit(channel, proposals) {
    for (let attempt = 0; attempt < MAX_REBASES; attempt++) {
      const state = this.#group(channel);
      // The others would refuse it: say so before sending.
      const roles = rolesOf(state);
      if (roles && roles[this.device.user] !== "owner" && roles[this.device.user] !== "committer") {
        throw new MlsError("forbidden", "the group's roles do not let this device's user commit");
      }
      const epoch = state.groupContext.epoch;
      const extraProposals = proposals(state);
      if (extraProposals === null) return Number(epoch);
      // The commit that beats this one can arrive before the `conflict`
      // reply, while this one is made and sent: its publications are kept
      // from here on (the queue holds them too, behind this).
      const recorder = this.#record(channel);
      let made;
      try {
        const cs = await cipherSuite();
        made = await createCommit({ state, cipherSuite: cs }, { extraProposals, wireAsPublicMessage: true, ratchetTreeExtension: true });
        const groupInfo = await createGroupInfoWithExternalPubAndRatchetTree(made.newState, [], cs);
        const data = {
          commit: base64.encode(encodeMlsMessage(made.commit)),
          group_info: base64.encode(encodeMlsMessage({ groupInfo, wireformat: "mls_group_info", version: "mls10" })),
        };
        if (made.welcome) {
          data.welcome = base64.encode(encodeMlsMessage({ welcome: made.welcome, wireformat: "mls_welcome", version: "mls10" }));
          // Only the newcomers' sessions need it (it carries the ratchet
          // tree); without names, everyone gets it.
          const users = [...new Set(extraProposals.filter((p) => p.proposalType === "add").map((p) => member(p.add.keyPackage.leafNode)))];
          if (users.length && users.every((user) => user !== null)) data.welcome_to = users;
        }
        try {
          await this.command(channel, "commit", data);
        } catch (error) {
          if (error.code !== "conflict") throw error;
          await this.#caughtUp(channel, epoch, recorder);
          continue;
        }
      } finally {
        recorder.stop();
      }
      // Published: the group is at the commit's epoch. Its own echo
      // arrives for the epoch before and is passed over.
      const before = await this.roster(channel);
      this.groups.set(channel, made.newState);
      await this.#epochEvent(channel, before, true);
      return Number(made.newState.groupContext.epoch);
    }
    throw new MlsError("too_many_conflicts", `${MAX_REBASES} commits in a row lost to others'`);
  }

  // Keeps the publications of `channel` that arrive from now on, until
  // `stop()`, and wakes whoever waits for them.
  #record(channel) {
    const recorder = { arrived: [], wake: null };
    const listener = (event) => {
      let envelope;
      try {
        envelope = JSON.parse(event.data);
      } catch {
        return;
      }
      // Publications only (they carry offsets, so the queue passes over
      // them later); presence events wait for the queue, or a join could
      // start an add inside this commit.
      if (envelope.type !== "event" || envelope.channel !== channel || envelope.action !== "message" || typeof envelope.data?.offset !== "number") return;
      recorder.arrived.push(envelope);
      recorder.wake?.();
    };
    this.socket.addEventListener("message", listener);
    recorder.stop = () => this.socket.removeEventListener("message", listener);
    return recorder;
  }

  // Waits until the commit that beat ours moved the group past `epoch`,
  // handling in order the publications `recorder` kept since our commit
  // was begun and those that come; the queue passes over them later by
  // their offsets.
  async #caughtUp(channel, epoch, recorder) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      while (recorder.arrived.length) {
        await this.#handle(recorder.arrived.shift());
        const state = this.groups.get(channel);
        if (!state) throw new MlsError("no_group", `out of the group of ${channel}`);
        if (state.groupContext.epoch !== epoch) return;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new MlsError("timeout", `the commit that won epoch ${epoch} of ${channel} did not arrive`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        recorder.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      recorder.wake = null;
    }
  }

  async #handle(envelope) {
    const channel = envelope.channel;
    if (envelope.type !== "event") return;
    // Once each: an event handled while catching up comes again through
    // the queue.
    const { offset, epoch } = envelope.data ?? {};
    if (typeof offset === "number") {
      const last = this.seen.get(channel);
      if (last && last.epoch === epoch && offset <= last.offset) return;
      this.seen.set(channel, { offset, epoch });
    }
    if (envelope.action === "join") return this.#joinEvent(channel, envelope);
    if (envelope.action === "kicked" || envelope.action === "banned" || envelope.action === "closed") {
      this.groups.delete(channel);
      return this.onEvent({ type: "other", envelope });
    }
    const data = envelope.action === "message" ? envelope.data?.data : undefined;
    switch (data?.e2e) {
      case MESSAGE_KIND:
        return this.#message(channel, data);
      case COMMIT_KIND:
        return this.#commitEvent(channel, data);
      case PROPOSAL_KIND:
        return this.#proposal(channel, data);
      case RESYNC_KIND:
        return this.#resyncRequest(channel, envelope.data?.from?.user, data);
      default:
        return this.onEvent({ type: "other", envelope });
    }
  }

  async #joinEvent(channel, envelope) {
    const user = envelope.data?.from?.user;
    const state = this.groups.get(channel);
    if (!user || !state) return this.onEvent({ type: "other", envelope });
    if (user === this.device.user || leavesOf(state, user).length) {
      this.onEvent({ type: "other", envelope });
      // A member's join may be a device of theirs not in the group yet (a
      // second browser) or one reconnecting: the claim leaves out the
      // devices already in, so it tells which and costs the other nothing.
      if (!this.autoAdd) return this.onEvent({ type: "member_arrived", channel, user });
      try {
        const claimed = await this.#claim(channel, [user]);
        if (claimed.length) await this.#addClaimed(channel, claimed);
      } catch (error) {
        this.onEvent({ type: "add_failed", channel, users: [user], error: error.message });
      }
      return;
    }
    this.onEvent({ type: "admitted", channel, user });
    if (!this.autoAdd) return;
    try {
      await this.#add(channel, [user]);
    } catch (error) {
      this.onEvent({ type: "add_failed", channel, users: [user], error: error.message });
    }
  }

  async #message(channel, data) {
    // Its own, back from the server (its keys for it are gone): delivered.
    if (this.sent.has(data.message)) {
      const text = this.sent.get(data.message);
      this.sent.delete(data.message);
      return this.onEvent({ type: "message", channel, user: this.device.user, fingerprint: this.device.fingerprint, text, own: true });
    }
    const state = this.groups.get(channel);
    if (!state) return;
    const message = decoded(base64.decode(data.message), "mls_private_message");
    if (message.privateMessage.epoch > state.groupContext.epoch) return this.#fellBehind(channel);
    const cs = await cipherSuite();
    const result = await processPrivateMessage(state, message.privateMessage, emptyPskIndex, cs, rulesOf(state));
    if (result.kind !== "applicationMessage") throw new MlsError("malformed", "a message that is not an application message");
    const leaf = await senderOf(state, message.privateMessage, cs);
    this.groups.set(channel, result.newState);
    return this.onEvent({ type: "message", channel, user: member(leaf), fingerprint: await fingerprint(leaf.signaturePublicKey), text: fromUtf8.decode(result.message) });
  }

  async #commitEvent(channel, data) {
    const state = this.groups.get(channel);
    // Not in the group yet: the commit may carry this device's Welcome.
    if (!state) return this.#joinFrom(channel, data);
    // Commits this device never saw came first: its Welcome, if a member
    // added it again, or a request to be.
    if (BigInt(data.epoch) > state.groupContext.epoch) return (await this.#joinFrom(channel, data)) || this.#fellBehind(channel);
    // Made in another epoch: our own (applied when it was published), or
    // one this device has.
    if (BigInt(data.epoch) !== state.groupContext.epoch) return;
    const commit = decoded(base64.decode(data.commit), "mls_public_message");
    const before = await this.roster(channel);
    const result = await processPublicMessage(state, commit.publicMessage, emptyPskIndex, await cipherSuite(), rulesOf(state));
    if (result.actionTaken === "reject") throw new MlsError("refused", "a commit that takes from outside the group more than a removal");
    if (result.newState.groupActiveState?.kind === "removedFromGroup") {
      this.groups.delete(channel);
      // Removed and added again in one commit (it had fallen behind).
      if (await this.#joinFrom(channel, data)) return;
      return this.onEvent({ type: "removed", channel });
    }
    this.groups.set(channel, result.newState);
    return this.#epochEvent(channel, before, false);
  }

  // Joins from the Welcome the commit `data` carries, if one is for this
  // device: whether it did.
  async #joinFrom(channel, data) {
    if (!data.welcome) return false;
    const welcome = decoded(base64.decode(data.welcome), "mls_welcome").welcome;
    const made = this.device.packages.find((p) => welcome.secrets.some((s) => sameBytes(s.newMember, p.ref)));
    // A Welcome for other devices only.
    if (!made) return false;
    const joined = await joinGroup(welcome, made.publicPackage, made.privatePackage, emptyPskIndex, await cipherSuite());
    this.device.packages.splice(this.device.packages.indexOf(made), 1);
    this.groups.set(channel, joined);
    this.behind.delete(channel);
    this.onEvent({ type: "joined", channel, epoch: Number(joined.groupContext.epoch) });
    return true;
  }

  // This device missed commits of the group: it leaves a fresh key package
  // and asks, once for the epoch it has, to be added again. The asking
  // waits its turn in the queue: this may run while a commit of ours
  // catches up.
  #fellBehind(channel) {
    const epoch = this.epoch(channel);
    if (this.behind.get(channel) === epoch) return this.onEvent({ type: "unreadable", channel, error: `from an epoch after ${epoch}, the last this device has: it asked to be added again` });
    this.behind.set(channel, epoch);
    this.onEvent({ type: "behind", channel, epoch });
    this.#serial(async () => {
      await this.#publishKeyPackages(1);
      await this.command(channel, "publish", { e2e: RESYNC_KIND, device: this.device.fingerprint, epoch });
    }).catch((error) => this.onEvent({ type: "unreadable", channel, error: `could not ask to be added again: ${error.message}` }));
  }

  // A device's request to be added again; `user` is whom the server says
  // sent it. With autoAdd, when the device is `user`'s and in the group,
  // and the group has moved past the epoch it has: its old leaf removed
  // and a fresh package of its own added, in one commit. A key package is
  // signed by its device, so a request the server forges can at most have
  // a real device added again.
  async #resyncRequest(channel, user, data) {
    const state = this.groups.get(channel);
    if (!this.autoAdd || !state || !user || typeof data.device !== "string" || !Number.isSafeInteger(data.epoch)) return;
    if (BigInt(data.epoch) >= state.groupContext.epoch) return;
    if (!(await this.roster(channel)).some((m) => m.user === user && m.fingerprint === data.device)) return;
    // Its turn in the queue: this may run while a commit of ours catches
    // up, and a commit must not start inside another.
    this.#serial(() => this.#addAgain(channel, user, data.device));
  }

  async #addAgain(channel, user, device) {
    try {
      const claimed = (await this.#claim(channel, [user], device)).find((c) => c.fingerprint === device);
      if (!claimed) return;
      const key = claimed.keyPackage.leafNode.signaturePublicKey;
      await this.#commit(channel, (now) => {
        const old = leaves(now).find(({ leaf }) => member(leaf) === user && sameBytes(leaf.signaturePublicKey, key));
        // Removed meanwhile: nothing to add it again to.
        if (!old) return null;
        return [
          { proposalType: "remove", remove: { removed: old.index } },
          { proposalType: "add", add: { keyPackage: claimed.keyPackage } },
        ];
      });
    } catch (error) {
      this.onEvent({ type: "add_failed", channel, users: [user], error: error.message });
    }
  }

  // Says what the group's new epoch changed, from its roster `before`.
  async #epochEvent(channel, before, own) {
    const after = await this.roster(channel);
    const key = (m) => `${m.user}\n${m.fingerprint}`;
    const had = new Set(before.map(key));
    const has = new Set(after.map(key));
    const added = [...new Set(after.filter((m) => !had.has(key(m))).map((m) => m.user))];
    const removed = [...new Set(before.filter((m) => !has.has(key(m))).map((m) => m.user))];
    this.onEvent({ type: "epoch", channel, epoch: this.epoch(channel), added, removed, own });
  }

  async #proposal(channel, data) {
    const state = this.groups.get(channel);
    // For an epoch gone: the server proposes again if it must.
    if (!state || BigInt(data.epoch) !== state.groupContext.epoch) return;
    let next = state;
    for (const proposal of data.proposals ?? []) {
      const message = decoded(base64.decode(proposal), "mls_public_message");
      const result = await processPublicMessage(next, message.publicMessage, emptyPskIndex, await cipherSuite(), rulesOf(next));
      if (result.actionTaken === "reject") throw new MlsError("refused", "a proposal from outside the group that is not a removal");
      next = result.newState;
    }
    this.groups.set(channel, next);
    return this.onEvent({ type: "removal_proposed", channel, user: data.user });
  }
}

// The group's members: `[{index, leaf}]` (leaves sit at the even nodes of
// the ratchet tree).
function leaves(state) {
  const found = [];
  state.ratchetTree.forEach((node, at) => {
    if (at % 2 === 0 && node?.nodeType === "leaf") found.push({ index: at / 2, leaf: node.leaf });
  });
  return found;
}

function leavesOf(state, user) {
  return leaves(state)
    .filter(({ leaf }) => member(leaf) === user)
    .map(({ index }) => index);
}

// The leaf that sent an application message. ts-mls 1.6.4 does not
// return it, so the message is opened again with its own function on the
// state from before (which it does not change) to read who signed it.
async function senderOf(state, privateMessage, cs) {
  const receiver = privateMessage.epoch < state.groupContext.epoch ? state.historicalReceiverData.get(privateMessage.epoch) : { senderDataSecret: state.keySchedule.senderDataSecret, ...state };
  const opened = await unprotectPrivateMessage(receiver.senderDataSecret, privateMessage, receiver.secretTree, receiver.ratchetTree, receiver.groupContext, state.clientConfig.keyRetentionConfig, cs);
  const sender = opened.content.content.sender;
  return receiver.ratchetTree[2 * sender.leafIndex].leaf;
}

function sameBytes(a, b) {
  return a && b && a.length === b.length && a.every((x, i) => x === b[i]);
}
