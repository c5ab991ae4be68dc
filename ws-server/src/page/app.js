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
  1001: "The server is restarting or shutting down; reconnecting.",
  1006: "The connection was lost; reconnecting.",
  1008: "The server closed the connection: too many refused commands.",
  1009: "That message was too big for the server.",
  1011: "The server failed; reconnecting.",
  4001: "The server wants a valid token: fill in Token.",
  4008: "The connection was too slow to keep up; reconnecting.",
  4009: "An administrator disconnected you.",
};
const RECONNECT = new Set([1001, 1006, 1011, 4008]);

const state = {
  socket: null,
  user: "",
  channel: "",
  token: "",
  role: null,
  roster: new Map(), // session -> {user, role}
  nextId: 1,
  pending: new Map(), // id -> handler of the response
  last: null, // {offset, epoch} of the last publication seen
  wanted: false, // whether the person wants to be in the channel
  retry: null,
  encrypted: false, // end-to-end: messages sealed here, through /e2e.js
  e2e: null, // the E2eChannels of the current socket
  keyPair: null, // this tab's X25519 key pair, kept across reconnects
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

function showMessage(publication, sealed = false) {
  const item = document.createElement("li");
  item.className = sealed ? "message sealed" : "message";
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = publication.from ? publication.from.user || "anonymous" : "server";
  const text = document.createElement("span");
  text.className = "text";
  const data = publication.data;
  text.textContent = data && typeof data === "object" && "text" in data ? String(data.text) : JSON.stringify(data);
  item.append(from, text);
  append(item);
  if (publication.offset !== undefined) {
    state.last = { offset: publication.offset, epoch: publication.epoch };
  }
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
  $("owner-hint").hidden = !owner;
}

function moderate(action, user) {
  if (state.e2e) {
    // Through the module: it starts a new key epoch for those who remain.
    state.e2e[action](state.channel, user).then(
      (epoch) => {
        system(`${user} was ${action === "kick" ? "kicked" : "banned"}; new key (epoch ${epoch}) for the others.`);
        refreshRoster();
      },
      (error) => showError(ERRORS[error.code] || error.message),
    );
    return;
  }
  command(action, { user }, (data) => {
    if (data.ok) {
      system(`${user} was ${action === "kick" ? "kicked" : "banned"}.`);
      refreshRoster();
    } else {
      showError(ERRORS[data.code] || data.message);
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
  $("room").hidden = false;
  $("leave").disabled = false;
  showError("");
  if (data.recovered === false) system("Earlier messages are no longer available.");
  for (const publication of data.publications || []) showMessage(publication);
  if (data.offset !== undefined) {
    state.last = { offset: data.offset, epoch: data.epoch };
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

// Joins an existing channel: after a reconnect from the last message seen,
// after a reload from where this tab first joined.
function join() {
  const since = state.last || saved();
  command("join", since ? { since } : {}, (reply) => (reply.ok ? entered(reply) : refused(reply)));
}

// End-to-end: creates the channel encrypted, or joins it. An owner coming
// back (a reload, a reconnect) starts a new epoch, since its keys were in
// the page it left.
async function enterEncrypted() {
  const socket = state.socket;
  try {
    const { E2eChannels, generateKeyPair, fingerprint } = await import("/e2e.js");
    state.keyPair ??= await generateKeyPair();
    $("fingerprint").textContent = await fingerprint(state.keyPair.publicKey);
    if (state.socket !== socket) return;
    state.e2e = new E2eChannels(socket, state.keyPair, onE2eEvent);
    try {
      await state.e2e.create(state.channel, 100);
      entered({ role: "owner" });
      system("You created this end-to-end encrypted channel; you hand its keys to whoever joins.");
    } catch (error) {
      if (error.code !== "already_exists") return refused(error);
      await state.e2e.join(state.channel);
      if (state.e2e.isOwner(state.channel)) {
        await state.e2e.rotate(state.channel);
        entered({ role: "owner" });
      } else {
        entered({ role: "participant" });
        system("Waiting for the owner to hand over the key.");
      }
    }
  } catch (error) {
    if (error.code) refused(error);
    else showError(`End-to-end encryption failed: ${error.message}`);
  }
}

function onE2eEvent(event) {
  if (event.channel !== undefined && event.channel !== state.channel) return;
  switch (event.type) {
    case "message":
      showMessage({ from: { user: event.user }, data: { text: event.text ?? "(binary)" } }, true);
      break;
    case "refused":
      system(`A message could not be opened (${event.error.code}): ${event.error.message}`);
      break;
    case "keys":
      system(`Key received (epoch ${event.epoch}).`);
      break;
    case "joined":
      if (!event.granted) system(`${event.user || "someone"} was not given the key (removed earlier, or no key).`);
      break;
    case "left":
      system(`New key (epoch ${event.epoch}) for those who remain.`);
      break;
    case "error":
      showError(`End-to-end encryption failed: ${event.error.message}`);
      break;
  }
}

// Creates the channel (becoming its owner), or joins it if it exists.
function enter() {
  if (state.encrypted) {
    enterEncrypted();
    return;
  }
  command(
    "create",
    { history_size: 100, history_ttl: 3600, presence_events: true },
    (reply) => {
      if (reply.ok) entered(reply);
      else if (reply.code === "already_exists") join();
      else refused(reply);
    },
  );
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
      if (!state.e2e) showMessage(data);
      break;
    case "join":
      state.roster.set(data.from.session, { user: data.from.user, role: "participant" });
      system(`${data.from.user || "someone"} joined.`);
      refreshRoster();
      break;
    case "leave":
      state.roster.delete(data.from.session);
      system(`${data.from.user || "someone"} left.`);
      renderRoster();
      break;
    case "kicked":
      leaveRoom(`You were kicked from ${state.channel} by its owner.`);
      break;
    case "banned":
      leaveRoom(`You are banned from ${state.channel}.`);
      break;
    case "closed":
      leaveRoom(`The channel ${state.channel} was closed.`);
      break;
    case "role":
      if (data.user === state.user) state.role = data.role;
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
  state.role = null;
  state.roster.clear();
  renderRoster();
  $("leave").disabled = true;
  $("join").disabled = false;
  showError(message);
  system(message);
  if (state.socket) state.socket.close(1000);
}

function connect() {
  clearTimeout(state.retry);
  const params = new URLSearchParams({ user: state.user });
  if (state.token) params.set("token", state.token);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/channels?${params}`);
  state.socket = socket;
  state.e2e = null;
  state.pending.clear();
  setStatus("connecting");
  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
    setStatus("online");
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
      if (envelope.id?.startsWith("e2e-")) return;
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
    $("join").disabled = false;
    if (!opened) {
      showError("The server refused the connection: check the name (letters, digits, _ or -) and the token.");
      state.wanted = false;
      return;
    }
    if (!state.wanted) return;
    showError(CLOSES[event.code] || `Disconnected (${event.code} ${event.reason}).`);
    if (RECONNECT.has(event.code)) {
      state.retry = setTimeout(connect, 2000);
    } else {
      state.wanted = false;
      $("leave").disabled = true;
    }
  });
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.user = $("user").value.trim();
  state.channel = $("channel").value.trim();
  state.token = $("token").value.trim();
  state.encrypted = $("e2e").checked;
  $("e2e-hint").hidden = !state.encrypted;
  state.last = null;
  state.wanted = true;
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

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  if (state.e2e) {
    state.e2e.publish(state.channel, text).then(
      () => ($("text").value = ""),
      (error) => showError(error.code === "no_key" ? "No key yet: the channel's owner hands it over when their page is open." : ERRORS[error.code] || error.message),
    );
    return;
  }
  command("publish", { text }, (data) => {
    if (!data.ok) showError(data.code === "bad_request" ? `The server refused the message: ${data.message}` : ERRORS[data.code] || data.message);
  });
  $("text").value = "";
});
