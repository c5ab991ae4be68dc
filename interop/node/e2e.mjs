// End-to-end encrypted channels between the Rust client (ws-crypto's
// e2e_member example) and headless Chromium running the page's WebCrypto
// module (/e2e.js of `ws serve`): the browser checks the Rust key-wrapping
// vector, joins a channel a Rust owner created and talks with it, then owns
// a channel a Rust member joins. A plain WebSocket in the same browser
// reads what the server stored and finds only ciphertext.
//
// Then the browser's encrypted-session client checks ws-crypto's known
// answer and talks to a Rust sealed server (the sealed_echo example).
//
// Usage: node e2e.mjs PATH/TO/ws PATH/TO/e2e_member PATH/TO/sealed_echo
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
const server = spawn(binary, ["serve", "--listen", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, WS_LOG: "warn" },
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

  // The same bytes as ws-crypto's wrapping known answer.
  const wrapped = await page.evaluate(async () => {
    const { importKeyPair, wrapKey } = await import("/e2e.js");
    const fill = (b) => new Uint8Array(32).fill(b);
    const [owner, member, ephemeral] = await Promise.all([4, 5, 6].map((b) => importKeyPair(fill(b))));
    return wrapKey(owner, fill(9), "room", 3, "000000000000000b", member.publicKey, ephemeral);
  });
  check(
    wrapped === "9bLW5g-Ud-MQwpgtqqbJE2wQihd3xZR-RI-jfWgXRVeZpmebw8haZKdG2NNgvR5x1NAQ9nuwRjKxpfOwZo1JsY63XbB41MTK_RSwsI48srU",
    "WebCrypto wraps a channel key to the same bytes as ws-crypto",
  );

  // In the page: a member (or owner) on its own socket, whose events wait
  // in a list that `next(type, test)` takes from.
  await page.evaluate(async (url) => {
    const { E2eChannels, generateKeyPair } = await import("/e2e.js");
    window.members = {};
    window.start = async (user) => {
      const socket = new WebSocket(`${url}?user=${user}`);
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = reject;
      });
      const events = [];
      const e2e = new E2eChannels(socket, await generateKeyPair(), (event) => events.push(event));
      window.members[user] = { e2e, events, socket };
    };
    window.next = async (user, type, test = () => true) => {
      const { events } = window.members[user];
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        const at = events.findIndex((e) => e.type === type && test(e));
        if (at >= 0) {
          const [event] = events.splice(at, 1);
          return { ...event, bytes: undefined, error: event.error && { code: event.error.code, message: event.error.message } };
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`${user} never got a ${type} event; got ${JSON.stringify(events.map((e) => e.type))}`);
    };
  }, channels);

  // 1. A Rust owner, the browser a member.
  const owner = rust("rusty", "rust-room", "create");
  children.push(owner.child);
  await owner.line(/^ready$/);
  await page.evaluate(async () => {
    await window.start("ann");
    await window.members.ann.e2e.join("rust-room");
  });
  const keys = await page.evaluate(() => window.next("ann", "keys"));
  check(keys.epoch === 1, "the Rust owner hands the browser the channel key");
  await owner.line(/^joined ann granted=true$/);
  await page.evaluate(() => window.members.ann.e2e.publish("rust-room", "hello from chromium"));
  await owner.line(/^message ann: hello from chromium$/);
  check(true, "the Rust owner opens what the browser sealed");
  const answer = await page.evaluate(() => window.next("ann", "message", (e) => e.text?.startsWith("rust got")));
  check(answer.text === "rust got: hello from chromium" && answer.user === "rusty", `the browser opens the Rust answer: ${answer.text}`);
  await page.evaluate(() => window.members.ann.e2e.publish("rust-room", "bye"));
  await owner.line(/^message ann: bye$/);

  // 2. The browser owns a channel, a Rust member joins and talks.
  await page.evaluate(async () => {
    await window.start("bea");
    await window.members.bea.e2e.create("browser-room", 50);
  });
  const joiner = rust("rustle", "browser-room", "join");
  children.push(joiner.child);
  const joined = await page.evaluate(() => window.next("bea", "joined"));
  check(joined.granted && joined.user === "rustle", "the browser owner hands the Rust member the key");
  await joiner.line(/^keys 1$/);
  const hello = await page.evaluate(() => window.next("bea", "message", (e) => e.user === "rustle"));
  check(hello.text === "hello from rust", `the browser opens what the Rust member sealed: ${hello.text}`);
  await page.evaluate(() => window.members.bea.e2e.publish("browser-room", "bye"));
  await joiner.line(/^message bea: bye$/);
  const bye = await page.evaluate(() => window.next("bea", "message", (e) => e.text === "rust got: bye"));
  check(bye.user === "rustle", "the Rust member opens the browser's message and answers");
  const [code] = await joiner.exited;
  check(code === 0, `the Rust member exits cleanly (${code})`);

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
  check(stored.publications >= 4, `the history holds the conversation (${stored.publications} publications)`);
  check(!/hello from rust|rust got|hello from chromium/.test(stored.seen) && stored.seen.includes('"e2e":"msg"'), "what the server stored and relayed is ciphertext only");
  check(stored.plain === "bad_request", "the encrypted channel refuses a plaintext publication");
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
      const session = await SealedSession.open(await connect(), key, (message) => received.push(message));
      session.send("hello from chromium");
      session.send(Uint8Array.of(0, 1, 2, 255));
      session.send("é ✓");
      const deadline = Date.now() + 10_000;
      while (received.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      let wrongPin = "accepted";
      try {
        await SealedSession.open(await connect(), (await generateKeyPair()).publicText);
      } catch (error) {
        wrongPin = error.code;
      }
      return { received: received.map((m) => (typeof m === "string" ? m : Array.from(m).join())), serverKey: session.serverKey, wrongPin };
    },
    [sealedUrl, serverKey],
  );
  check(
    session.received.join("|") === "hello from chromium|0,1,2,255|é ✓" && session.serverKey === serverKey,
    `a Rust sealed server echoes the browser's text and binary messages (${session.received.join("|")})`,
  );
  check(session.wrongPin === "key_mismatch", `a wrong pin fails the handshake in the browser (${session.wrongPin})`);

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
