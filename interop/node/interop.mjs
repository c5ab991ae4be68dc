// Interop between our adapters (ws-tokio, ws-smol) and Node `ws`, both directions,
// plain and with permessage-deflate (through a relay that counts the bytes on the
// wire, so a side that negotiates but does not compress fails).
// Usage: node interop.mjs PATH/TO/interop   (an adapter's interop example binary)
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createInterface } from "node:readline";
import WebSocket, { WebSocketServer } from "ws";
import { countingRelay, events } from "./relay.mjs";

const MIB = 1 << 20;
const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const withTimeout = (promise, ms, what) =>
  Promise.race([promise, sleep(ms).then(() => { throw new Error(`timeout: ${what}`); })]);

/** A client whose messages and close can be awaited in order. */
function open(url, options = {}) {
  const ws = new WebSocket(url, options);
  ws.on("upgrade", (response) => { ws.responseHeaders = response.headers; });
  const queue = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const item = isBinary ? Buffer.from(data) : data.toString("utf8");
    const waiter = waiters.shift();
    if (waiter) waiter(item); else queue.push(item);
  });
  ws.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on("error", () => {});
  ws.next = () => withTimeout(new Promise((resolve) => {
    if (queue.length) resolve(queue.shift()); else waiters.push(resolve);
  }), 20000, "message");
  return once(ws, "open").then(() => ws);
}

async function compressedClients(base, relay) {
  const ws = await open(`ws://127.0.0.1:${relay.port}/deflate`, { maxPayload: 64 * MIB, perMessageDeflate: { threshold: 0 } });
  check(ws.extensions.startsWith("permessage-deflate"), `rust accepted node's permessage-deflate: ${ws.extensions}`);
  let sent = 0;
  for (const message of [events(MIB), Buffer.from(events(200000)), "héllo ✓", "", events(3000)]) {
    ws.send(message);
    sent += message.length;
    check(same(await ws.next(), message), `node->rust compressed echo of ${message.length} bytes`);
  }
  ws.send("frag", { fin: false });
  ws.send("ment", { fin: false });
  ws.send("ed", { fin: true });
  check((await ws.next()) === "fragmented", "node->rust compressed fragmented text");
  ws.close(1000, "done");
  const closed = await ws.closed;
  check(closed.code === 1000, `compressed connection closed cleanly: ${JSON.stringify(closed)}`);
  const counts = relay.counts["/deflate"] ?? { up: sent, down: sent };
  check(counts.up < sent / 3, `node compressed on the wire: ${counts.up} bytes for ${sent}`);
  check(counts.down < sent / 3, `rust compressed on the wire: ${counts.down} bytes for ${sent}`);

  const strict = await open(`${base}/deflate`, {
    maxPayload: 64 * MIB,
    perMessageDeflate: { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 },
  });
  for (const param of ["server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits=10", "client_max_window_bits=9"]) {
    const answer = strict.responseHeaders["sec-websocket-extensions"] ?? "";
    check(answer.includes(param), `rust answered ${param}: ${answer}`);
  }
  for (const message of [events(300000), events(300000), Buffer.alloc(100000)]) {
    strict.send(message);
    check(same(await strict.next(), message), `node->rust echo without context takeover, ${message.length} bytes`);
  }
  strict.close();

  const plain = await open(`${base}/echo`, { perMessageDeflate: { threshold: 0 } });
  check(plain.extensions === "", `rust's /echo declined permessage-deflate: ${JSON.stringify(plain.extensions)}`);
  plain.send("plain");
  check((await plain.next()) === "plain", "node->rust echo after a declined offer");
  plain.close();
}

const same = (a, b) => (Buffer.isBuffer(a) ? Buffer.isBuffer(b) && a.equals(b) : a === b);

async function lastClose(base) {
  const ws = await open(`${base}/last-close`);
  ws.send("?");
  const text = await ws.next();
  ws.close();
  return text;
}

async function nodeClients(base) {
  const ws = await open(`${base}/echo`, { maxPayload: 64 * MIB, perMessageDeflate: false });
  for (const message of ["héllo ✓", Buffer.from([0, 255, 1]), ""]) {
    ws.send(message);
    check(same(await ws.next(), message), `node->rust echo ${JSON.stringify(message)}`);
  }
  ws.send("frag", { fin: false });
  ws.send("ment", { fin: false });
  ws.send("ed", { fin: true });
  check((await ws.next()) === "fragmented", "node->rust fragmented text");
  const big = randomBytes(16 * MIB);
  ws.send(big);
  check(same(await ws.next(), big), "node->rust 16 MiB echo");
  const pong = once(ws, "pong");
  ws.ping("ping payload");
  const [payload] = await withTimeout(pong, 5000, "pong");
  check(payload.toString() === "ping payload", "node->rust ping answered with its payload");
  ws.close(1000, "done");
  await ws.closed;
  await sleep(200);
  check((await lastClose(base)) === "1000 done", "rust saw the client's 1000 'done'");

  for (const [path, code, reason] of [["/close", 4000, "bye"], ["/going-away", 1001, "going away"]]) {
    const ws = await open(`${base}${path}`);
    ws.send("go");
    const closed = await withTimeout(ws.closed, 10000, path);
    check(closed.code === code && closed.reason === reason, `rust closed ${path} with ${code}: ${JSON.stringify(closed)}`);
  }

  const small = await open(`${base}/big`, { maxPayload: MIB });
  small.send(String(2 * MIB));
  const closed = await withTimeout(small.closed, 10000, "big");
  check(closed.code === 1006 || closed.code === 1009, `node refused a 2 MiB message: ${JSON.stringify(closed)}`);
  await sleep(200);
  check((await lastClose(base)).startsWith("1009"), "rust saw node's 1009");

  const dropped = await open(`${base}/echo`);
  dropped.terminate();
  await sleep(300);
  check((await lastClose(base)).startsWith("1006"), "rust saw the terminate as 1006");
}

async function wsTokioClient(binary) {
  const serverSaw = {};
  const serverExtensions = {};
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, maxPayload: 64 * MIB, perMessageDeflate: { threshold: 0 } });
  wss.on("connection", (ws, req) => {
    const path = req.url;
    serverExtensions[path] = ws.extensions;
    ws.on("close", (code, reason) => { serverSaw[path] = [code, reason.toString()]; });
    ws.on("error", () => {});
    ws.on("message", (data, isBinary) => {
      if (path === "/echo" || path === "/deflate") ws.send(data, { binary: isBinary });
      else if (path === "/close") ws.close(4000, "bye");
      else if (path === "/going-away") ws.close(1001, "going away");
      else if (path === "/big") ws.send(Buffer.alloc(Number(data.toString()), 0x5a));
      else if (path === "/drop") ws.terminate();
    });
  });
  await once(wss, "listening");
  const relay = await countingRelay(wss.address().port);
  const child = spawn(binary, ["client", `ws://127.0.0.1:${relay.port}`], { stdio: ["ignore", "pipe", "inherit"] });
  for await (const line of createInterface({ input: child.stdout })) {
    check(line.startsWith("ok "), `rust->node ${line}`);
  }
  const [status] = await once(child, "exit");
  check(status === 0, "rust client exit status");
  await sleep(200);
  check(JSON.stringify(serverSaw["/echo"]) === JSON.stringify([1000, "done"]), `node saw rust's 1000 done: ${serverSaw["/echo"]}`);
  check(serverSaw["/big"]?.[0] === 1009, `node saw rust's 1009: ${serverSaw["/big"]}`);
  check(serverExtensions["/echo"] === "", `no compression where rust did not offer it: ${serverExtensions["/echo"]}`);
  check(serverExtensions["/deflate"]?.startsWith("permessage-deflate"), `node accepted rust's offer: ${serverExtensions["/deflate"]}`);
  const counts = relay.counts["/deflate"] ?? { up: 0, down: 0 };
  check(counts.up > 0 && counts.up < MIB, `rust compressed on the wire: ${counts.up} bytes up for about 4.3 MB`);
  check(counts.down > 0 && counts.down < MIB, `node compressed on the wire: ${counts.down} bytes down for about 4.3 MB`);
  relay.close();
  wss.close();
}

const binary = process.argv[2];
const server = spawn(binary, ["server", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
const [first] = await once(createInterface({ input: server.stdout }), "line");
const port = Number(first.split(" ").pop());
const relay = await countingRelay(port);
try {
  await nodeClients(`ws://127.0.0.1:${port}`);
  await compressedClients(`ws://127.0.0.1:${port}`, relay);
} finally {
  relay.close();
  server.kill();
}
await wsTokioClient(binary);
if (failures.length) {
  console.log(`${failures.length} interop check(s) failed`);
  process.exit(1);
}
console.log("node interop: all checks passed");
process.exit(0);
