// End-to-end encrypted channels on MLS between the Rust client (ws-crypto's
// mls_member example, on mls-rs) and headless Chromium running the page's
// module (/mls.js of `ws serve`, on ts-mls), through a real `ws serve`:
// the browser joins a group a Rust member made and talks with it, then
// makes one a Rust member joins, bans it, and commits the server's removal
// proposal. A plain WebSocket in the same browser reads what the server
// stored and finds only ciphertext.
//
// Then the browser's encrypted-session client checks ws-crypto's known
// answer and talks to a Rust sealed server (the sealed_echo example).
//
// Usage: node e2e.mjs PATH/TO/ws PATH/TO/mls_member PATH/TO/sealed_echo
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};

const [binary, member, sealedEcho] = process.argv.slice(2);
const ADMIN_TOKEN = "e2e-admin-token-long-enough-to-pass";
const server = spawn(binary, ["serve", "--listen", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, WS_LOG: "warn", WS_ADMIN_TOKEN: ADMIN_TOKEN },
});
const [first] = await once(createInterface({ input: server.stdout }), "line");
const base = first.match(/page (http:\/\/\S+)/)[1];
const channels = first.match(/channels (ws:\/\/\S+)/)[1];

/** The Rust member: its stdout lines, one promise per awaited line. */
function rust(user, channel, mode) {
  const child = spawn(member, [`${channels}?user=${user}`, channel, mode], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    console.log(`  rust ${user}: ${line}`);
    lines.push(line);
    for (const waiter of waiters.splice(0)) waiter();
  });
  const exited = once(child, "exit");
  return {
    child,
    exited,
    async line(pattern) {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const found = lines.find((line) => pattern.test(line));
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`rust ${user} never printed ${pattern}`);
        await new Promise((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 500);
        });
      }
    },
  };
}

const executablePath = process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const consoleErrors = [];
const children = [];

try {
  console.log(`${browser.version()} against ${base}`);
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15_000);
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  await page.goto(base);

  // In the page: MLS members (the /mls.js module on ts-mls), each on its
  // own socket, whose events wait in a list that `next(type, test)` takes
  // from; a member is named by its user, or by `as` for a user's second
  // device.
  await page.evaluate(async (url) => {
    const { MlsChannels, MlsDevice } = await import("/mls.js");
    window.members = {};
    // A member's device back on a new socket with the group state it
    // had: as a reload does with what it kept.
    window.reconnect = async (as, again) => {
      const { mls, device } = window.members[as];
      const socket = new WebSocket(`${url}?user=${device.user}`);
      await new Promise((resolve) => (socket.onopen = resolve));
      const events = [];
      const back = new MlsChannels(socket, device, (event) => events.push(event));
      for (const [channel, state] of mls.groups) back.groups.set(channel, state);
      for (const [channel, position] of mls.seen) back.seen.set(channel, position);
      window.members[again] = { mls: back, events, socket, device };
    };
    window.start = async (user, options = {}, as = user) => {
      const socket = new WebSocket(`${url}?user=${user}`);
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = reject;
      });
      const events = [];
      const device = await MlsDevice.create(user);
      const mls = new MlsChannels(socket, device, (event) => events.push(event), options);
      window.members[as] = { mls, events, socket, device };
      await mls.publishKeyPackages(3);
      return device.fingerprint;
    };
    // A plain session of `user` in `channel` (not in its group): what the
    // server sends it, as it arrives.
    window.watch = async (user, channel) => {
      const socket = new WebSocket(`${url}?user=${user}`);
      await new Promise((resolve) => (socket.onopen = resolve));
      const seen = [];
      socket.onmessage = (event) => seen.push(JSON.parse(event.data));
      socket.send(JSON.stringify({ type: "command", id: "w1", channel, action: "join" }));
      while (!seen.some((m) => m.id === "w1")) await new Promise((resolve) => setTimeout(resolve, 20));
      return seen;
    };
    window.next = async (user, type, test = () => true) => {
      const { events } = window.members[user];
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        const at = events.findIndex((e) => e.type === type && test(e));
        if (at >= 0) return events.splice(at, 1)[0];
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`${user} never got a ${type} event; got ${JSON.stringify(events.map((e) => e.error ?? e.type))}`);
    };
  }, channels);

  // 1. A Rust member creates the channel and adds whoever joins; the
  // browser joins and talks with it.
  const owner = rust("rusty", "rust-room", "create");
  children.push(owner.child);
  const ownerKey = (await owner.line(/^key /)).slice(4);
  await owner.line(/^ready$/);
  const annKey = await page.evaluate(async () => {
    const key = await window.start("ann");
    await window.members.ann.mls.join("rust-room");
    return key;
  });
  const annJoined = await page.evaluate(() => window.next("ann", "joined"));
  check(annJoined.epoch >= 1, `the Rust member adds the browser to its MLS group (epoch ${annJoined.epoch})`);
  const roster = await page.evaluate(() => window.members.ann.mls.roster("rust-room"));
  check(
    JSON.stringify(roster.map((m) => [m.user, m.fingerprint]).sort()) === JSON.stringify([["ann", annKey], ["rusty", ownerKey]].sort()),
    "both see one roster with the same fingerprints",
  );
  await page.evaluate(() => window.members.ann.mls.send("rust-room", "hello from chromium"));
  await owner.line(new RegExp(`^message ann ${annKey}: hello from chromium$`));
  check(true, "the Rust member opens what the browser sent, and knows it is ann's device");
  const answer = await page.evaluate(() => window.next("ann", "message", (e) => e.text?.startsWith("rust got")));
  check(answer.text === "rust got: hello from chromium" && answer.user === "rusty" && answer.fingerprint === ownerKey, `the browser opens the Rust answer: ${answer.text}`);
  // An operator bans a third member (`ws ctl`); the server proposes its
  // removal as the group's external sender, the browser takes the
  // proposal (of a group mls-rs made), the Rust member commits it, and
  // the browser applies that commit.
  await page.evaluate(async () => {
    await window.start("cat");
    await window.members.cat.mls.join("rust-room");
  });
  await page.evaluate(() => window.next("cat", "joined"));
  await page.evaluate(() => window.next("ann", "epoch", (e) => e.added.includes("cat")));
  // The group's roles (made by the Rust owner) give ann none: her own
  // module will not commit, as the others would refuse it.
  const refusedCommit = await page.evaluate(() => window.members.ann.mls.remove("rust-room", "cat").then(() => "committed", (e) => e.code));
  check(refusedCommit === "forbidden", `a member without a role in the group does not commit (${refusedCommit})`);
  const refusedPromotion = await page.evaluate(() => window.members.ann.mls.setRole("rust-room", "ann", "owner").then(() => "committed", (e) => e.code));
  check(refusedPromotion === "forbidden", `nor makes herself owner (${refusedPromotion})`);
  execFileSync(binary, ["ctl", "--server", base.replace(/\/$/, ""), "--token", ADMIN_TOKEN, "ban", "rust-room", "cat"]);
  const proposal = await page.evaluate(() => window.next("ann", "removal_proposed"));
  check(proposal.user === "cat", "the browser takes the server's removal proposal in a group mls-rs made");
  await owner.line(/^removal cat$/);
  const removal = await page.evaluate(() => window.next("ann", "epoch", (e) => e.removed.includes("cat")));
  check(removal.removed.length === 1, `the browser applies the Rust member's commit of it (epoch ${removal.epoch})`);
  // The browser misses a commit of the Rust member's group (its socket
  // closed while kim was added, back without `since`): kim's next message
  // is of an epoch after its own, it asks to be added again, and the Rust
  // owner (mls-rs) removes its old leaf and adds it from a fresh package.
  const rustResync = await page.evaluate(async () => {
    window.members.ann.socket.close();
    await window.start("kim");
    await window.members.kim.mls.join("rust-room");
    await window.next("kim", "joined");
    await window.reconnect("ann", "ann2");
    await window.members.ann2.mls.join("rust-room");
    // Its join reply says where the group is: it knows before anything
    // is sent.
    const atJoin = window.members.ann2.events.some((e) => e.type === "behind");
    await window.members.kim.mls.send("rust-room", "ann, are you there?");
    const behind = await window.next("ann2", "behind");
    const joined = await window.next("ann2", "joined");
    await window.next("kim", "epoch", (e) => e.epoch === joined.epoch);
    await window.members.kim.mls.send("rust-room", "welcome back, ann");
    const read = await window.next("ann2", "message", (e) => e.text === "welcome back, ann");
    return { atJoin, behind: behind.epoch, joined: joined.epoch, read: read.user };
  });
  check(rustResync.atJoin && rustResync.joined > rustResync.behind && rustResync.read === "kim", `a Rust owner adds a browser device that missed commits again, which knew it was behind from its join reply (${JSON.stringify(rustResync)})`);
  await page.evaluate(() => window.members.ann2.mls.send("rust-room", "bye"));
  await owner.line(/^message ann .*: bye$/);


  // 2. The browser creates a channel and adds whoever joins; a Rust member
  // joins and talks; then the browser bans it, the server proposes its
  // removal, the browser commits it, and the Rust member is out.
  await page.evaluate(async () => {
    await window.start("bea", { autoAdd: true });
    await window.members.bea.mls.create("browser-room", 50);
  });
  const joiner = rust("rustle", "browser-room", "join");
  children.push(joiner.child);
  const added = await page.evaluate(() => window.next("bea", "epoch"));
  check(added.added.includes("rustle"), `the browser adds the Rust member (epoch ${added.epoch})`);
  await joiner.line(/^joined /);
  const hello = await page.evaluate(() => window.next("bea", "message", (e) => e.user === "rustle"));
  check(hello.text === "hello from rust", `the browser opens what the Rust member sent: ${hello.text}`);
  await page.evaluate(() => window.members.bea.mls.send("browser-room", "how are you"));
  const reply = await page.evaluate(() => window.next("bea", "message", (e) => e.text === "rust got: how are you"));
  check(reply.user === "rustle", "the Rust member opens the browser's message and answers");
  // The browser owner gives the Rust member a role in the group: a
  // GroupContextExtensions commit with the path RFC 9420 requires, which
  // mls-rs applies (it refused ts-mls 1.6.4's, made without one).
  await page.evaluate(() => window.members.bea.mls.setRole("browser-room", "rustle", "committer"));
  const roles = await page.evaluate(() => window.members.bea.mls.roles("browser-room"));
  check(roles.rustle === "committer" && roles.bea === "owner", `the browser owner commits a role change (${JSON.stringify(roles)})`);
  await page.evaluate(() => window.members.bea.mls.send("browser-room", "you may commit"));
  const promoted = await page.evaluate(() => window.next("bea", "message", (e) => e.text === "rust got: you may commit"));
  check(promoted.user === "rustle", "the Rust member applies the browser's role change and reads on");
  // A user opens the channel in a second browser: the owner's module adds
  // that device too (its claim leaves out the device already in), and the
  // Rust member (mls-rs) takes a group where one user has two leaves.
  const dotKeys = await page.evaluate(async () => {
    const keys = [];
    for (const as of ["dot1", "dot2"]) {
      keys.push(await window.start("dot", {}, as));
      await window.members[as].mls.join("browser-room");
      await window.next(as, "joined");
      await window.next("bea", "epoch", (e) => e.added.includes("dot"));
    }
    return keys;
  });
  const dots = await page.evaluate(() => window.members.bea.mls.roster("browser-room"));
  check(
    JSON.stringify(dots.filter((m) => m.user === "dot").map((m) => m.fingerprint).sort()) === JSON.stringify([...dotKeys].sort()),
    "a member's second browser is added to the group as a second device of the same user",
  );
  await page.evaluate(() => window.members.bea.mls.send("browser-room", "to both of dot's"));
  const both = await page.evaluate(() => Promise.all(["dot1", "dot2"].map((as) => window.next(as, "message", (e) => e.text === "to both of dot's"))));
  check(both.every((e) => e.user === "bea"), "both of dot's devices read the group's messages");
  const rustDots = await page.evaluate(() => window.next("bea", "message", (e) => e.text === "rust got: to both of dot's"));
  check(rustDots.user === "rustle", "the Rust member applied the commit that added dot's second device and still reads the group");
  // A plain session of another user watches the channel: the browser
  // owner's commit adding ivy reaches it without ivy's Welcome.
  // A device away longer than the channel keeps (history of 1): back with
  // `since`, the channel lost what it missed, and its join reply says the
  // group is past its epoch: it says it is behind and asks to be added
  // again (it cannot read the next message, of an epoch after its own);
  // the owner's module removes its old leaf and adds it from a fresh
  // package in one commit, and it reads on.
  const resync = await page.evaluate(async () => {
    await window.start("gil", { autoAdd: true });
    await window.members.gil.mls.create("resync-room", 1);
    await window.start("hank");
    await window.members.hank.mls.join("resync-room");
    await window.next("hank", "joined");
    const away = window.members.hank.mls.epoch("resync-room");
    window.members.hank.socket.close();
    const watched = await window.watch("wes", "resync-room");
    await window.start("ivy");
    await window.members.ivy.mls.join("resync-room");
    await window.next("gil", "epoch", (e) => e.added.includes("ivy"));
    await window.next("ivy", "joined");
    const commits = watched.filter((m) => m.action === "message" && m.data?.data?.e2e === "commit");
    const welcomeSeen = commits.length === 0 || commits.some((m) => "welcome" in m.data.data);
    await window.members.gil.mls.send("resync-room", "while hank was away");
    await window.reconnect("hank", "hank2");
    const { mls } = window.members.hank2;
    const reply = await mls.join("resync-room", { since: mls.position("resync-room") });
    const atJoin = window.members.hank2.events.some((e) => e.type === "behind");
    // The channel's next message is of an epoch after hank's.
    await window.members.gil.mls.send("resync-room", "are you there");
    const behind = await window.next("hank2", "behind");
    const joined = await window.next("hank2", "joined");
    await window.members.gil.mls.send("resync-room", "welcome back");
    const read = await window.next("hank2", "message", (e) => e.text === "welcome back");
    const missed = window.members.hank2.events.some((e) => e.type === "message" && (e.text === "while hank was away" || e.text === "are you there"));
    const hanks = (await window.members.gil.mls.roster("resync-room")).filter((m) => m.user === "hank").length;
    return { recovered: reply.recovered, welcomeSeen, atJoin, away, behind: behind.epoch, joined: joined.epoch, now: window.members.gil.mls.epoch("resync-room"), read: read.user, missed, hanks };
  });
  check(
    resync.recovered === false && !resync.welcomeSeen && resync.atJoin && resync.behind === resync.away && resync.joined === resync.now && resync.read === "gil" && !resync.missed && resync.hanks === 1,
    `a device that missed commits asks to be added again, is, and reads on; another user's session got the add's commit without its Welcome (${JSON.stringify(resync)})`,
  );
  // Two devices of one owner (two tabs) add the same newcomer at once:
  // the second loses the race, finds the newcomer in on top of the
  // winner's commit and commits nothing, rather than failing.
  const race = await page.evaluate(async () => {
    await window.start("eli", {}, "eli1");
    await window.members.eli1.mls.create("race-room", 20);
    await window.start("eli", {}, "eli2");
    await window.members.eli2.mls.join("race-room");
    await window.members.eli1.mls.add("race-room", ["eli"]);
    await window.next("eli2", "joined");
    await window.start("fay");
    await window.members.fay.mls.join("race-room");
    const byFirst = await window.members.eli1.mls.claim("race-room", ["fay"]);
    const bySecond = await window.members.eli2.mls.claim("race-room", ["fay"]);
    // At once: the winner's commit reaches the loser before its
    // `conflict` reply does.
    const [won, rebased] = await Promise.all([
      window.members.eli1.mls.addClaimed("race-room", byFirst),
      window.members.eli2.mls.addClaimed("race-room", bySecond).catch((e) => `failed: ${e.message}`),
    ]);
    const fays = (await window.members.eli2.mls.roster("race-room")).filter((m) => m.user === "fay").length;
    return { won, rebased, fays };
  });
  check(race.rebased === race.won && race.fays === 1, `two owner tabs adding one newcomer end in one add (${JSON.stringify(race)})`);
  await page.evaluate(() => window.members.bea.mls.command("browser-room", "ban", { user: "rustle" }));
  const proposed = await page.evaluate(() => window.next("bea", "removal_proposed"));
  check(proposed.user === "rustle", "the server proposes the banned user's removal to the browser's group");
  const removedAt = await page.evaluate(() => window.members.bea.mls.commitPending("browser-room"));
  const after = await page.evaluate(() => window.members.bea.mls.roster("browser-room"));
  check(after.some((m) => m.user === "bea") && !after.some((m) => m.user === "rustle"), `the browser's commit takes the removal in (epoch ${removedAt})`);
  await page.evaluate(() => window.members.bea.mls.send("browser-room", "after the ban"));

  // Own messages wait for their echo in a bounded map: against a server
  // that never echoes (a socket that answers every command), 1,005 sends
  // leave 1,000 remembered.
  const unechoed = await page.evaluate(async () => {
    const { MlsChannels, MlsDevice, MAX_UNECHOED } = await import("/mls.js");
    const sender = (await window.members.bea.mls.command("probe-room", "create", { encrypted: true, history_size: 1 })).external_sender;
    const socket = new EventTarget();
    socket.send = (text) => {
      const { id, action } = JSON.parse(text);
      const data = action === "create" ? { ok: true, role: "owner", external_sender: sender } : { ok: true };
      queueMicrotask(() => socket.dispatchEvent(new MessageEvent("message", { data: JSON.stringify({ type: "response", id, data }) })));
    };
    const mls = new MlsChannels(socket, await MlsDevice.create("quiet"), () => {});
    await mls.create("quiet-room", 10);
    for (let i = 0; i < MAX_UNECHOED + 5; i++) await mls.send("quiet-room", `n${i}`);
    return [mls.sent.size, MAX_UNECHOED];
  });
  check(unechoed[0] === unechoed[1], `own messages awaiting their echo are bounded (${unechoed[0]} kept of ${unechoed[1] + 5})`);

  // 3. What the server relayed and stored, read by a plain socket that
  // joins and recovers the whole history.
  const stored = await page.evaluate(async (url) => {
    const socket = new WebSocket(`${url}?user=eve`);
    await new Promise((resolve) => (socket.onopen = resolve));
    const seen = [];
    const replies = new Map();
    socket.onmessage = (event) => {
      seen.push(event.data);
      const message = JSON.parse(event.data);
      if (message.type === "response") replies.get(message.id)?.(message.data);
    };
    const command = (id, channel, action, data) =>
      new Promise((resolve) => {
        replies.set(id, resolve);
        socket.send(JSON.stringify({ type: "command", id, channel, action, data }));
      });
    const first = await command("1", "browser-room", "join", {});
    const again = new WebSocket(`${url}?user=eve`);
    await new Promise((resolve) => (again.onopen = resolve));
    const history = await new Promise((resolve) => {
      again.onmessage = (event) => {
        seen.push(event.data);
        const message = JSON.parse(event.data);
        if (message.id === "h") resolve(message.data);
      };
      again.send(JSON.stringify({ type: "command", id: "h", channel: "browser-room", action: "join", data: { since: { offset: 0, epoch: first.epoch } } }));
    });
    const plain = await command("2", "browser-room", "publish", { text: "plain" });
    return { seen: seen.join("\n"), publications: history.publications?.length ?? 0, plain: plain.code };
  }, channels);
  check(stored.publications >= 5, `the history holds the conversation (${stored.publications} publications)`);
  check(!/hello from rust|rust got|how are you|after the ban/.test(stored.seen) && stored.seen.includes('"e2e":"mls"'), "what the server stored and relayed is ciphertext only");
  check(stored.plain === "bad_request", "the encrypted channel refuses a plaintext publication");
  await joiner.line(/^out banned$/);
  check(true, "the banned Rust member is told it is out");
  const [code] = await joiner.exited;
  check(code === 0, `the Rust member exits cleanly (${code})`);

  // 4. Encrypted sessions: the browser's client against ws-crypto's
  // known answer, then against a Rust server (the sealed_echo example).
  const known = await page.evaluate(async () => {
    const { importKeyPair, sessionHello, sessionFinish, sealRecord, openRecord } = await import("/e2e.js");
    const fill = (b) => new Uint8Array(32).fill(b);
    const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    const unhex = (text) => Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));
    const start = await sessionHello(await importKeyPair(fill(1)));
    const accept = unhex("0201ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d5901015dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22d704e47aa06b7f551ddaa0f6c4b831eda628efb211a8bf4c75b688fe2b52d14b");
    const keys = await sessionFinish(start, accept, (await importKeyPair(fill(3))).publicKey);
    const reply = await openRecord(keys.receive, 0, unhex("0400000000000000005a8b5b7c3b4e53b8b5d3ca929fb715988075"));
    let forged = "accepted";
    try {
      const altered = accept.slice();
      altered[5] ^= 1;
      await sessionFinish(start, altered, null);
    } catch (error) {
      forged = error.code;
    }
    return { hello: hex(start.hello), record: hex(await sealRecord(keys.send, 0, "hello")), reply: Array.from(reply), forged };
  });
  check(
    known.hello === "0101a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2090101" &&
      known.record === "030000000000000000fce349e9389e3998bf64ffca1fa0b8fc6e5880f7a8" &&
      known.reply.join() === "0,1",
    "WebCrypto's session client matches ws-crypto's key-schedule known answer",
  );
  check(known.forged === "confirmation_failed", `an altered accept fails confirmation in the browser (${known.forged})`);

  const echo = spawn(sealedEcho, ["127.0.0.1:0", base.replace(/\/$/, "")], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(echo);
  const [listening] = await once(createInterface({ input: echo.stdout }), "line");
  const [, sealedUrl, serverKey] = listening.match(/listening (\S+) key (\S+)/);
  // ws serve's page may only connect to its own origin (CSP); this page
  // ignores that to reach the echo server on another port.
  const other = await (await browser.newContext({ bypassCSP: true })).newPage();
  other.on("pageerror", (error) => consoleErrors.push(error.message));
  await other.goto(base);
  const session = await other.evaluate(
    async ([url, key]) => {
      const { SealedSession, SESSION_SUBPROTOCOL, generateKeyPair } = await import("/e2e.js");
      const connect = async () => {
        const socket = new WebSocket(url, [SESSION_SUBPROTOCOL]);
        await new Promise((resolve, reject) => {
          socket.onopen = resolve;
          socket.onerror = reject;
        });
        return socket;
      };
      const received = [];
      // A slow device: the accept takes 300 ms to check, so the server's
      // greeting arrives while it is being checked.
      const deriveBits = crypto.subtle.deriveBits.bind(crypto.subtle);
      crypto.subtle.deriveBits = async (...args) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return deriveBits(...args);
      };
      const session = await SealedSession.open(await connect(), key, (message) => received.push(message));
      crypto.subtle.deriveBits = deriveBits;
      session.send("hello from chromium");
      session.send(Uint8Array.of(0, 1, 2, 255));
      session.send("é ✓");
      const deadline = Date.now() + 10_000;
      while (received.length < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      let wrongPin = "accepted";
      try {
        await SealedSession.open(await connect(), (await generateKeyPair()).publicText);
      } catch (error) {
        wrongPin = error.code;
      }
      // The credential inside the session, not in the URL: the greeting
      // names its user; a wrong one is closed with 4001.
      const authUrl = url.replace(/\/sealed$/, "/sealed-auth");
      const withCredential = async (credential) => {
        const socket = new WebSocket(authUrl, [SESSION_SUBPROTOCOL]);
        await new Promise((resolve, reject) => {
          socket.onopen = resolve;
          socket.onerror = reject;
        });
        const closed = new Promise((resolve) => socket.addEventListener("close", (event) => resolve(event.code)));
        const got = [];
        await SealedSession.open(socket, key, (message) => got.push(message), () => {}, { credential });
        const until = Date.now() + 10_000;
        while (got.length < 1 && Date.now() < until) {
          const code = await Promise.race([closed, new Promise((resolve) => setTimeout(() => resolve(null), 20))]);
          if (code !== null) return { closed: code };
        }
        socket.close();
        return { greeting: got[0] };
      };
      const inside = await withCredential("Key key-chromium");
      const wrong = await withCredential("Key key-mallory");
      return {
        received: received.map((m) => (typeof m === "string" ? m : Array.from(m).join())),
        serverKey: session.serverKey,
        wrongPin,
        inside,
        wrong,
      };
    },
    [sealedUrl, serverKey],
  );
  check(
    session.received.join("|") === "hello, sealed|hello from chromium|0,1,2,255|é ✓" && session.serverKey === serverKey,
    `a Rust sealed server's greeting on open is not lost, and it echoes the browser's text and binary messages (${session.received.join("|")})`,
  );
  check(session.wrongPin === "key_mismatch", `a wrong pin fails the handshake in the browser (${session.wrongPin})`);
  check(session.inside.greeting === "hello, chromium", `the credential sent inside the session names its user (${JSON.stringify(session.inside)})`);
  check(session.wrong.closed === 4001, `a wrong credential inside the session is closed with 4001 (${JSON.stringify(session.wrong)})`);

  check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? `: ${consoleErrors.join("; ")}` : ""}`);
} catch (error) {
  failures.push(String(error));
  console.log(`FAIL ${error}`);
} finally {
  for (const child of children) child.kill();
  await browser.close();
  server.kill();
}
if (failures.length) {
  console.log(`${failures.length} end-to-end check(s) failed`);
  process.exit(1);
}
console.log("end-to-end channels and encrypted sessions, Rust and Chromium: all checks passed");
process.exit(0);
