// End-to-end encrypted channels between the Rust client (ws-crypto's
// e2e_member example) and headless Chromium running the page's WebCrypto
// module (/e2e.js of `ws serve`): the browser checks the Rust key-wrapping
// vector, joins a channel a Rust owner created and talks with it, then owns
// a channel a Rust member joins. A plain WebSocket in the same browser
// reads what the server stored and finds only ciphertext.
//
// Usage: node e2e.mjs PATH/TO/ws PATH/TO/e2e_member
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};

const [binary, member] = process.argv.slice(2);
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
console.log("end-to-end channels, Rust and Chromium: all checks passed");
process.exit(0);
