// The page of `ws serve`: one channel at a time over the channels protocol
// (ws-channels/PROTOCOL.md). No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

// What each error code and close code means to the person at the page.
const ERRORS = {
  not_found: "There is no such channel.",
  forbidden: "You may not do that in this channel.",
  full: "The channel is full.",
  banned: "You are banned from this channel.",
  limit: "Too much at once: a limit was reached. Wait a moment and try again.",
  bad_request: "The server did not understand that (a bad channel name?). Channel names are letters, digits and _ - . : @ / =.",
  already_exists: "The channel exists already.",
  not_member: "You are not in this channel.",
  unavailable: "The server cannot reach its channel backend; try again shortly.",
  internal: "The server failed; try again.",
  unknown_command: "The server does not know that command.",
};

const CLOSES = {
  1000: "Disconnected.",
  1008: "The server closed the connection: too many refused commands.",
  1009: "That message was too big for the server.",
  4001: "The server wants a valid token: fill in Token.",
  4009: "An administrator disconnected you.",
  4011: "Your token expired: fill in a new one and join again.",
};
// Closes after which the page comes back by itself: the server going away
// or restarting, the connection lost, a server failure, being too slow.
const RECONNECT = new Set([1001, 1006, 1011, 1012, 1013, 4008]);

// How many recent messages a page joining a channel for the first time
// shows.
const RECENT = 50;

const state = {
  socket: null,
  mode: null, // "names", "jwt" or "keys": how this server tells who people are
  user: "",
  channel: "",
  token: "",
  role: null,
  roster: new Map(), // session -> {user, role}
  nextId: 1,
  pending: new Map(), // id -> handler of the response
  last: null, // {offset, epoch} of the last publication seen
  inRoom: false, // joined at least once since the person asked to join
  wanted: false, // whether the person wants to be in the channel
  retry: null,
  attempts: 0, // connections that failed in a row
  encrypted: false, // end-to-end: an MLS member here, through /mls.js
  sealedChannel: false, // the channel is end-to-end encrypted
  mls: null, // the MlsChannels of the current socket
  device: null, // this browser's MLS device for the user, kept across reconnects
};

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

function setStatus(text) {
  const status = $("status");
  status.dataset.state = text;
  status.textContent = text;
}

function system(text) {
  const item = document.createElement("li");
  item.className = "system";
  item.textContent = text;
  append(item);
}

function append(item) {
  const list = $("messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

// MLS traffic: messages ("mls"), the group's commits and the server's
// removal proposals.
function isSealed(data) {
  return data !== null && typeof data === "object" && (data.e2e === "mls" || data.e2e === "commit" || data.e2e === "proposal");
}

// Shows a publication, once: one at or before the last seen (a recovery
// overlapping what arrived live) is not shown again. `earlier` ones (what
// was said before this page came) are shown as they are.
function showMessage(publication, sealed = false, earlier = false) {
  if (publication.offset !== undefined && !earlier) {
    if (state.last && state.last.epoch === publication.epoch && publication.offset <= state.last.offset) return;
    state.last = { offset: publication.offset, epoch: publication.epoch };
  }
  const data = publication.data;
  // A page that does not encrypt shows no ciphertext: it says what it is.
  if (!sealed && isSealed(data)) {
    if (data.e2e !== "mls") return;
    const item = document.createElement("li");
    item.className = "message sealed-unread";
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = publication.from ? publication.from.user || "anonymous" : "server";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = "an end-to-end encrypted message (tick End-to-end encrypted and join again to read)";
    item.append(from, text);
    append(item);
    return;
  }
  const item = document.createElement("li");
  item.className = sealed ? "message sealed" : "message";
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = publication.from ? publication.from.user || "anonymous" : "server";
  // The sending device's key, as the group knows it.
  if (publication.from?.fingerprint) from.title = `device ${publication.from.fingerprint}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = data && typeof data === "object" && "text" in data ? String(data.text) : JSON.stringify(data);
  item.append(from, text);
  append(item);
}

// Where this tab first joined a channel, kept across reloads so a reload
// shows what was said since.
function storageKey() {
  return `ws-channels:${state.user}:${state.channel}`;
}

function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(storageKey()) || "null");
  } catch {
    return null;
  }
}

function rememberStart(position) {
  const start = saved();
  if (!start || start.epoch !== position.epoch) {
    sessionStorage.setItem(storageKey(), JSON.stringify(position));
  }
}

function command(action, data, onResponse) {
  const id = String(state.nextId++);
  const envelope = { type: "command", id, channel: state.channel, action };
  if (data !== undefined) envelope.data = data;
  if (onResponse) state.pending.set(id, onResponse);
  state.socket.send(JSON.stringify(envelope));
}

function renderRoster() {
  const list = $("roster");
  list.replaceChildren();
  const owner = state.role === "owner";
  const users = new Map();
  for (const member of state.roster.values()) {
    const name = member.user || "anonymous";
    if (!users.has(name) || member.role === "owner") users.set(name, member.role);
  }
  for (const [name, role] of [...users.entries()].sort()) {
    const item = document.createElement("li");
    item.dataset.user = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    item.append(label);
    if (name === state.user) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "(you)";
      item.append(you);
    }
    if (role && role !== "participant") {
      const tag = document.createElement("span");
      tag.className = "role";
      tag.textContent = role;
      item.append(tag);
    }
    if (owner && name !== state.user) {
      for (const action of ["kick", "ban"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = action;
        button.textContent = action === "kick" ? "Kick" : "Ban";
        button.addEventListener("click", () => moderate(action, name));
        item.append(button);
      }
    }
    list.append(item);
  }
  $("count").textContent = String(users.size);
  $("owner-tools").hidden = !owner;
}

function moderate(action, user) {
  const forSeconds = $("ban-for").value;
  const how = action === "kick" ? "Kick" : `Ban ${forSeconds ? `for ${$("ban-for").selectedOptions[0].textContent}` : "until the ban is lifted"}:`;
  if (!confirm(`${how} ${user}?`)) return;
  const done = action === "kick" ? "kicked" : "banned";
  // In an encrypted channel the server then proposes the user's removal
  // from the group, which this page commits (onMlsEvent).
  const data = { user };
  if (action === "ban" && forSeconds) data.duration = Number(forSeconds);
  command(action, data, (reply) => {
    if (reply.ok) {
      system(`${user} was ${done}.`);
      refreshRoster();
    } else {
      showError(ERRORS[reply.code] || reply.message);
    }
  });
}

function refreshRoster() {
  command("presence", { limit: 1000 }, (data) => {
    if (!data.ok) return;
    state.roster.clear();
    for (const member of data.members) {
      state.roster.set(member.session, { user: member.user, role: member.role });
    }
    renderRoster();
  });
}

function entered(data) {
  state.role = data.role;
  state.inRoom = true;
  state.sealedChannel = Boolean(data.encrypted);
  $("room").hidden = false;
  $("leave").disabled = false;
  showError("");
  if (state.sealedChannel && !state.encrypted) {
    system("This channel is end-to-end encrypted: its messages are sealed. Tick “End-to-end encrypted” and join again to read them.");
  }
  if (data.recovered === false) system("Some earlier messages are no longer available: the channel does not keep them any more.");
  for (const publication of data.publications || []) showMessage(publication);
  if (data.offset !== undefined) {
    if (!state.last || state.last.epoch !== data.epoch) state.last = { offset: data.offset, epoch: data.epoch };
    rememberStart(state.last);
  }
  refreshRoster();
}

function refused(data) {
  showError(ERRORS[data.code] || data.message || "Refused.");
  state.wanted = false;
  $("room").hidden = true;
  $("leave").disabled = true;
  state.socket.close(1000);
}

// A page joining a channel for the first time sees what was said before:
// the newest messages the channel keeps up to where it joined (`from`);
// later ones reach it live.
function showRecent(from) {
  command("history", { limit: RECENT }, (reply) => {
    if (!reply.ok) return;
    const before = (p) => !from || p.epoch !== from.epoch || p.offset <= from.offset;
    const earlier = (reply.publications || []).filter(before);
    if (earlier.length) system(reply.complete ? "Earlier messages:" : `The last ${earlier.length} messages:`);
    for (const publication of earlier) showMessage(publication, false, true);
  });
}

// Joins an existing channel: after a reconnect from the last message seen,
// after a reload from where this tab first joined; a first visit then
// shows the recent messages.
function join() {
  const since = state.last || saved();
  command("join", since ? { since } : {}, (reply) => {
    if (!reply.ok) return refused(reply);
    entered(reply);
    if (!since) showRecent(reply.offset === undefined ? null : { offset: reply.offset, epoch: reply.epoch });
  });
}

// Back after the connection was lost: join from the last message seen. A
// channel that is gone (the server restarted with its channels in memory)
// is made anew, and the page says what was lost.
function rejoin() {
  command("join", state.last ? { since: state.last } : {}, (reply) => {
    if (reply.ok) return entered(reply);
    if (reply.code !== "not_found") return refused(reply);
    if (state.sealedChannel) {
      // Started again by this page it would not be encrypted.
      leaveRoom("The channel was gone when we came back (the server restarted?). It was end-to-end encrypted: a page with encryption ticked can start it again.");
      return;
    }
    system("The channel was gone when we came back (the server restarted?): earlier messages are lost. Starting it again.");
    state.last = null;
    create();
  });
}

function create() {
  command("create", { history_size: 100, history_ttl: 3600, presence_events: true }, (reply) => {
    if (reply.ok) entered(reply);
    else if (reply.code === "already_exists") join();
    else refused(reply);
  });
}

// End-to-end: creates the channel encrypted, with an MLS group of this
// device alone, or joins it; a member adds this device to the group from
// the key packages it leaves with the server. The device and its groups
// are kept in this browser (IndexedDB), so a reload or a reconnect goes on
// in the group from the last message handled.
async function enterEncrypted() {
  const socket = state.socket;
  try {
    const { MlsChannels, MlsDevice, MlsStore } = await import("/mls.js");
    if (!state.device || state.device.user !== state.user) {
      const store = await MlsStore.open().catch(() => null);
      const { device, persisted } = await MlsDevice.open(state.user, store);
      state.device = device;
      if (!persisted) system("Another tab has this browser's device for you: this tab is a device of its own, forgotten when it closes.");
      if (device.keyExtractable) system("This browser cannot keep the device's signing key out of reach of scripts (it has no WebCrypto Ed25519): a script of this site could copy it.");
    }
    $("fingerprint").textContent = state.device.fingerprint;
    if (state.socket !== socket) return;
    const mls = new MlsChannels(socket, state.device, onMlsEvent);
    state.mls = mls;
    await topUpKeyPackages(mls);
    let reply;
    try {
      reply = await mls.create(state.channel, 100);
      reply.role ??= "owner";
      system("You created this end-to-end encrypted channel: its group (MLS) holds this device, and you add whoever joins.");
    } catch (error) {
      if (error.code !== "already_exists") return refused(error);
      const since = mls.position(state.channel);
      reply = await mls.join(state.channel, since ? { since } : {});
      if (!mls.inGroup(state.channel)) system("Waiting for a member to add this device to the channel's group.");
    }
    if (state.socket !== socket) return;
    // The owner adds those who join: at once, or after checking each
    // device's fingerprint (approveDevices).
    mls.autoAdd = reply.role === "owner" && !$("approve-devices").checked;
    entered({ ...reply, publications: [], encrypted: true });
    renderGroup();
  } catch (error) {
    if (error.code) refused(error);
    else showError(`End-to-end encryption failed: ${error.message}`);
  }
}

// The owner checks a newcomer's devices before they join the group: each
// with the fingerprint of the key it signs with, computed here from the
// key package (the server could hand out a device of its own under the
// newcomer's name; the newcomer's page shows its own fingerprint).
async function offerDevices(user, { quiet = false } = {}) {
  const mls = state.mls;
  let claimed;
  try {
    claimed = await mls.claim(state.channel, [user]);
  } catch (error) {
    system(`Could not get ${user}'s devices: ${error.message}`);
    return;
  }
  if (!claimed.length) {
    if (!quiet) system(`${user} has no device ready for the encrypted group (their page must tick End-to-end encrypted).`);
    return;
  }
  for (const device of claimed) {
    const item = document.createElement("li");
    item.className = "system approval";
    item.dataset.user = user;
    const text = document.createElement("span");
    text.textContent = `${user} asks to join the encrypted group with device `;
    const key = document.createElement("code");
    key.textContent = device.fingerprint;
    const add = document.createElement("button");
    add.type = "button";
    add.className = "add-device";
    add.textContent = "Add";
    const refuse = document.createElement("button");
    refuse.type = "button";
    refuse.className = "refuse-device";
    refuse.textContent = "Refuse";
    const settle = (said) => {
      add.disabled = refuse.disabled = true;
      text.textContent = `${said} ${user}'s device `;
    };
    add.addEventListener("click", () => {
      settle("Adding");
      mls.addClaimed(state.channel, [device]).catch((error) => showError(`Adding ${user} failed: ${error.message}`));
    });
    refuse.addEventListener("click", () => settle("Refused"));
    item.append(text, key, " ", add, " ", refuse);
    append(item);
  }
}

// Leaves key packages with the server while this device has few there, so
// members can add it while it is away too.
async function topUpKeyPackages(mls) {
  const reply = await mls.command("$keys", "key_packages", {});
  const mine = (reply.devices || []).find((d) => d.device === state.device.fingerprint);
  if (!mine || mine.one_time < 3 || !mine.last_resort) await mls.publishKeyPackages(10);
}

// The group's own roster (MLS), not the server's presence list: the
// devices that can read what is sent now, with their fingerprints.
async function renderGroup() {
  const mls = state.mls;
  const box = $("group");
  if (!mls || !mls.inGroup(state.channel)) {
    box.hidden = true;
    return;
  }
  const members = await mls.roster(state.channel);
  // The group's own roles (signed into the group, so the server cannot
  // promote anyone): its owners add and remove devices and change roles.
  const roles = mls.roles(state.channel);
  const groupOwner = roles[state.user] === "owner";
  const list = $("group-roster");
  list.replaceChildren();
  const offered = new Set();
  for (const member of members.sort((a, b) => a.user.localeCompare(b.user) || a.fingerprint.localeCompare(b.fingerprint))) {
    const item = document.createElement("li");
    item.dataset.user = member.user;
    item.textContent = member.user;
    if (member.fingerprint === state.device.fingerprint) item.textContent += " (this device)";
    const role = roles[member.user];
    if (role) {
      const tag = document.createElement("span");
      tag.className = "role";
      tag.textContent = role;
      item.append(tag);
    }
    const key = document.createElement("code");
    key.textContent = member.fingerprint;
    item.append(key);
    // Once per user (a user's devices share the role).
    if (groupOwner && member.user !== state.user && !offered.has(member.user)) {
      offered.add(member.user);
      const share = document.createElement("button");
      share.type = "button";
      share.className = "co-owner";
      share.textContent = role === "owner" ? "No longer co-owner" : "Make co-owner";
      share.addEventListener("click", () => shareOwnership(member.user, role !== "owner"));
      item.append(share);
    }
    list.append(item);
  }
  $("group-epoch").textContent = `(epoch ${mls.epoch(state.channel)})`;
  box.hidden = false;
}

// Makes `user` a co-owner of the encrypted channel, or no longer one: the
// channel's role on the server (to moderate and to have commits taken)
// and the group's own role (so members accept their commits). Granted on
// the server first, taken away in the group first, so that half-done
// leaves the user unable to change the group.
async function shareOwnership(user, grant) {
  const mls = state.mls;
  const serverRole = (role) =>
    new Promise((resolve, reject) =>
      command("role", { user, role }, (reply) => (reply.ok ? resolve() : reject(new Error(reply.message || reply.code)))),
    );
  try {
    if (grant) {
      await serverRole("owner");
      await mls.setRole(state.channel, user, "owner");
      system(`${user} is a co-owner now: they add and remove devices of the encrypted group, and moderate the channel.`);
    } else {
      await mls.setRole(state.channel, user, null);
      await serverRole("participant");
      system(`${user} is no longer a co-owner.`);
    }
  } catch (error) {
    showError(`Changing ${user}'s role failed: ${error.message}`);
  }
  renderGroup();
}

function onMlsEvent(event) {
  if (event.channel !== undefined && event.channel !== state.channel) return;
  if (["joined", "epoch", "removed"].includes(event.type)) renderGroup();
  switch (event.type) {
    case "message":
      showMessage({ from: { user: event.user, fingerprint: event.fingerprint }, data: { text: event.text } }, true);
      break;
    case "joined":
      system(`This device is in the channel's group now (epoch ${event.epoch}): you read what is sent from here on.`);
      break;
    case "epoch":
      if (event.added.length) system(`Added to the group: ${event.added.join(", ")}.`);
      for (const user of event.removed) system(`${user} is out of the group: they read nothing sent from here on.`);
      break;
    case "removed":
      system("This device was removed from the channel's group: it reads nothing sent from here on.");
      break;
    case "behind":
      system("This device missed changes to the group while it was away, so it cannot read what is sent now: it asked to be added again.");
      break;
    case "admitted":
      if (state.role === "owner" && $("approve-devices").checked) offerDevices(event.user);
      break;
    case "member_arrived":
      // A new device of a member's, or one reconnecting: the claim tells,
      // and only a new one is offered.
      if (state.role === "owner" && $("approve-devices").checked) offerDevices(event.user, { quiet: true });
      break;
    case "add_failed":
      system(`Could not add ${event.users.join(", ")} to the group: ${event.error}`);
      break;
    case "removal_proposed":
      if (state.role !== "owner") {
        system(`The server asked for ${event.user}'s removal from the group; it takes effect with a member's next commit.`);
        break;
      }
      // The epoch event that follows says who is out.
      state.mls.commitPending(state.channel).catch((error) => showError(`Removing ${event.user} from the group failed: ${error.message}`));
      break;
    case "unreadable":
      system(`Something in the channel could not be opened or applied: ${event.error}`);
      break;
    case "not_saved":
      showError(`This browser did not keep the channel's keys (${event.error}): after a reload this device may need to be added again.`);
      break;
  }
}

// Creates the channel (becoming its owner) or joins it; after a lost
// connection, joins again where it left off.
function enter() {
  if (state.encrypted) {
    enterEncrypted();
  } else if (state.inRoom) {
    rejoin();
  } else {
    create();
  }
}

function onEvent(envelope) {
  const data = envelope.data || {};
  if (envelope.action === "notice") {
    system(`Notice: ${typeof data === "string" ? data : JSON.stringify(data)}`);
    return;
  }
  if (envelope.channel !== state.channel) return;
  switch (envelope.action) {
    case "message":
      // End-to-end messages are opened and shown by the module.
      if (!state.mls) showMessage(data);
      break;
    case "join":
      state.roster.set(data.from.session, { user: data.from.user, role: "participant" });
      system(`${data.from.user || "someone"} joined.`);
      refreshRoster();
      break;
    case "leave": {
      state.roster.delete(data.from.session);
      const why = { kicked: " (kicked)", banned: " (banned)", expired: " (connection lost)" }[data.reason] || "";
      system(`${data.from.user || "someone"} left${why}.`);
      renderRoster();
      break;
    }
    case "kicked":
      leaveRoom(`You were kicked from ${state.channel}.`);
      break;
    case "banned":
      leaveRoom(`You are banned from ${state.channel}.`);
      break;
    case "closed":
      leaveRoom(`The channel ${state.channel} was closed.`);
      break;
    case "role":
      if (data.user === state.user) {
        state.role = data.role;
        // A co-owner of an encrypted channel adds whoever joins from now
        // on, as its creator does.
        if (state.mls) state.mls.autoAdd = state.role === "owner" && !$("approve-devices").checked;
      }
      refreshRoster();
      break;
    case "lost":
      system("Some messages may have been missed; catching up.");
      join();
      break;
  }
}

function leaveRoom(message) {
  state.wanted = false;
  state.inRoom = false;
  state.role = null;
  state.roster.clear();
  renderRoster();
  $("leave").disabled = true;
  $("join").disabled = false;
  showError(message);
  system(message);
  if (state.socket) state.socket.close(1000);
}

function credentials() {
  const params = new URLSearchParams();
  if (state.mode === "names" || !state.token) params.set("user", state.user);
  if (state.token) params.set("token", state.token);
  return params;
}

// Tries again after a delay that doubles with each failure, up to 30 s,
// drawn at random below it (full jitter) so pages do not all come back at
// once after a restart.
function scheduleRetry(why) {
  const ceiling = Math.min(30_000, 1000 * 2 ** state.attempts);
  const delay = Math.max(250, Math.random() * ceiling);
  state.attempts += 1;
  setStatus("reconnecting");
  showError(`${why} Trying again in ${Math.ceil(delay / 1000)} s.`);
  clearTimeout(state.retry);
  state.retry = setTimeout(connect, delay);
}

// A connection that never opened: unreachable, or refused (and why). The
// browser does not say, so the page asks the server who the credentials
// name.
async function diagnose() {
  let answer;
  try {
    answer = await fetch(`/whoami?${credentials()}`, { cache: "no-store" });
  } catch {
    return scheduleRetry("The server is unreachable.");
  }
  if (answer.status === 401 || answer.status === 403) {
    const body = await answer.json().catch(() => ({}));
    state.wanted = false;
    $("join").disabled = false;
    showError(`The server refused you: ${body.message || "check the name and the token."}`);
    return;
  }
  scheduleRetry("The server did not take the connection (it may be busy or restarting).");
}

function connect() {
  clearTimeout(state.retry);
  if (!state.wanted) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/channels?${credentials()}`);
  state.socket = socket;
  state.mls = null;
  $("group").hidden = true;
  state.pending.clear();
  setStatus("connecting");
  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
    state.attempts = 0;
    setStatus("online");
    showError("");
    enter();
  });
  socket.addEventListener("message", (event) => {
    let envelope;
    try {
      envelope = JSON.parse(event.data);
    } catch {
      return;
    }
    if (envelope.type === "response") {
      // The module's commands are its own.
      if (envelope.id?.startsWith("mls-")) return;
      const handler = state.pending.get(envelope.id);
      state.pending.delete(envelope.id);
      if (handler) handler(envelope.data || {});
      else if (envelope.data && envelope.data.ok === false) showError(ERRORS[envelope.data.code] || envelope.data.message);
    } else if (envelope.type === "event") {
      onEvent(envelope);
    }
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    setStatus("offline");
    // Who is here is unknown until the page is back.
    state.roster.clear();
    renderRoster();
    $("join").disabled = false;
    if (!state.wanted) return;
    if (!opened) {
      diagnose();
      return;
    }
    if (RECONNECT.has(event.code)) {
      scheduleRetry(event.code === 1001 || event.code === 1012 ? "The server is restarting or shutting down." : "The connection was lost.");
    } else {
      showError(CLOSES[event.code] || `Disconnected (${event.code} ${event.reason}).`);
      state.wanted = false;
      state.inRoom = false;
      $("leave").disabled = true;
    }
  });
}

// How this server tells who people are: names anyone may claim (warned
// about), or a token.
async function learnMode() {
  try {
    const answer = await fetch("/whoami", { cache: "no-store" });
    const body = await answer.json();
    state.mode = body.auth;
  } catch {
    return;
  }
  $("insecure").hidden = state.mode !== "names";
  document.querySelector("label.token").hidden = state.mode === "names";
  document.querySelector("label.name").hidden = state.mode !== "names";
}

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.user = $("user").value.trim();
  state.channel = $("channel").value.trim();
  state.token = $("token").value.trim();
  if (state.mode !== "names" && state.token) {
    // The user is whoever the token names.
    const answer = await fetch(`/whoami?${new URLSearchParams({ token: state.token })}`, { cache: "no-store" }).catch(() => null);
    const body = answer ? await answer.json().catch(() => ({})) : {};
    if (answer && answer.ok) state.user = body.user;
  } else if (!state.user) {
    showError("Give a name: letters, digits, _ or -.");
    return;
  }
  state.encrypted = $("e2e").checked;
  $("e2e-hint").hidden = !state.encrypted;
  state.last = null;
  state.inRoom = false;
  state.wanted = true;
  state.attempts = 0;
  $("messages").replaceChildren();
  $("join").disabled = true;
  showError("");
  if (state.socket) {
    const old = state.socket;
    state.socket = null;
    old.close(1000);
  }
  connect();
});

$("leave").addEventListener("click", () => {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) command("leave");
  leaveRoom("");
  showError("");
  $("room").hidden = true;
});

$("approve-devices").addEventListener("change", () => {
  if (state.mls && state.role === "owner") state.mls.autoAdd = !$("approve-devices").checked;
});

$("unban-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const user = $("unban-user").value.trim();
  if (!user || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  command("unban", { user }, (reply) => {
    if (reply.ok) {
      system(`The ban on ${user} was lifted.`);
      $("unban-user").value = "";
    } else {
      showError(reply.code === "not_found" ? `${user} is not banned here.` : ERRORS[reply.code] || reply.message);
    }
  });
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  if (state.mls) {
    state.mls.send(state.channel, text).then(
      () => ($("text").value = ""),
      (error) => showError(error.code === "no_group" ? "This device is not in the channel's group yet: a member adds it when their page is open." : ERRORS[error.code] || error.message),
    );
    return;
  }
  if (state.sealedChannel) {
    showError("This channel is end-to-end encrypted: tick “End-to-end encrypted” and join again to write in it.");
    return;
  }
  command("publish", { text }, (data) => {
    if (!data.ok) showError(data.code === "bad_request" ? `The server refused the message: ${data.message}` : ERRORS[data.code] || data.message);
  });
  $("text").value = "";
});

learnMode();
