// The client against a real `ws serve` (through a proxy the test cuts) and
// against sockets the test scripts (close codes, silence, gaps).
//
// Usage: npm test (WS_BIN: the `ws` binary, default ../../target/debug/ws;
// build it with `cargo build --bin ws`).
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";
import WebSocket from "ws";
import { ChannelError, ChannelsClient } from "../dist/index.js";

const WS_BIN = process.env.WS_BIN ?? fileURLToPath(new URL("../../../target/debug/ws", import.meta.url));

async function startServer(args = []) {
  const child = spawn(WS_BIN, ["serve", "--listen", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, WS_LOG: "warn" } });
  const [line] = await once(createInterface({ input: child.stdout }), "line");
  // "ws serve: page http://127.0.0.1:PORT/  channels ws://..."
  const port = Number(new URL(line.match(/page (http:\/\/\S+)/)[1]).port);
  return { child, port };
}

// A TCP proxy to `port` whose connections the test can cut, stall (hold
// what crosses in both directions, then let it through in order) or drop
// in the middle of the next thing the server sends.
async function startProxy(port) {
  const links = new Set();
  let held = null; // while stalled: what waits, as [socket, chunk]
  let dropNext = false;
  const forward = (to, chunk, fromServer) => {
    if (held) return held.push([to, chunk, fromServer]);
    if (fromServer && dropNext && chunk.length > 1) {
      dropNext = false;
      to.write(chunk.subarray(0, chunk.length >> 1), () => to.destroy());
      return;
    }
    to.write(chunk);
  };
  const server = net.createServer((inbound) => {
    const outbound = net.connect(port, "127.0.0.1");
    links.add(inbound).add(outbound);
    inbound.on("data", (chunk) => forward(outbound, chunk, false));
    outbound.on("data", (chunk) => forward(inbound, chunk, true));
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: server.address().port,
    cut() {
      for (const socket of links) socket.destroy();
      links.clear();
    },
    // Holds everything for `ms`, then lets it through.
    async stall(ms) {
      held = [];
      await new Promise((resolve) => setTimeout(resolve, ms));
      const waiting = held;
      held = null;
      for (const [to, chunk, fromServer] of waiting) forward(to, chunk, fromServer);
    },
    // The next chunk from the server goes through half, then the
    // connection ends.
    dropMidMessage() {
      dropNext = true;
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

// Every event of `client`, and a way to wait for one.
function recorder(client) {
  const events = [];
  const waiters = new Set();
  client.onEvent((event) => {
    events.push(event);
    for (const waiter of waiters) waiter();
  });
  return {
    events,
    until(test, what = "the event", ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(test);
          if (found) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${what} in ${ms} ms: ${JSON.stringify(events)}`));
        }, ms);
        waiters.add(check);
        check();
      });
    },
  };
}

const numbers = (events) => events.filter((e) => e.type === "publication" && e.kind === "message").map((e) => e.publication.data.n);

describe("against ws serve", () => {
  let server;
  let proxy;
  before(async () => {
    server = await startServer();
    proxy = await startProxy(server.port);
  });
  after(() => {
    proxy.close();
    server.child.kill("SIGINT");
  });

  test("what was published during a cut arrives once and in order, and commands are acknowledged", async () => {
    const publisher = new ChannelsClient({ url: `ws://127.0.0.1:${server.port}/channels?user=pat`, WebSocket });
    const pat = recorder(publisher);
    publisher.connect();
    await pat.until((e) => e.type === "state" && e.state === "connected");
    await publisher.command("room", "create", { history_size: 100, history_ttl: 300 });

    let attempts = 0;
    const client = new ChannelsClient({
      // Called for every attempt: where a fresh token would go.
      url: () => `ws://127.0.0.1:${proxy.port}/channels?user=cat&attempt=${++attempts}`,
      WebSocket,
      minDelay: 50,
      maxDelay: 400,
    });
    const cat = recorder(client);
    client.join("room");
    client.connect();
    await cat.until((e) => e.type === "joined");
    for (const n of [1, 2, 3]) await publisher.publish("room", { n });
    await cat.until(() => numbers(cat.events).length === 3, "three publications");
    proxy.cut();
    await cat.until((e) => e.type === "state" && e.state === "disconnected", "a disconnect");
    for (const n of [4, 5, 6]) await publisher.publish("room", { n });
    await cat.until((e) => e.type === "joined" && e.recovered === true, "a recovered join");
    await publisher.publish("room", { n: 7 });
    await cat.until(() => numbers(cat.events).length === 7, "seven publications");
    assert.deepEqual(numbers(cat.events), [1, 2, 3, 4, 5, 6, 7]);
    assert.ok(attempts >= 2, `the URL was asked for on each attempt (${attempts})`);
    assert.deepEqual(client.position("room"), { offset: 7, epoch: cat.events.findLast((e) => e.type === "publication").publication.epoch });

    // An acknowledged publish, once per idempotency key.
    const first = await client.publish("room", { n: 8 }, { idempotencyKey: "k-8" });
    const again = await client.publish("room", { n: 8 }, { idempotencyKey: "k-8" });
    assert.equal(first.offset, 8);
    assert.deepEqual([again.offset, again.duplicate], [8, true]);
    // A refusal is a typed error.
    await assert.rejects(client.kick("room", "pat"), (error) => error instanceof ChannelError && error.code === "forbidden");
    client.close();
    publisher.close();
    assert.equal(client.state, "closed");
    await assert.rejects(client.publish("room", {}), (error) => error.code === "closed");
  });
  test("a connection stalled for 5 s goes on where it was: nothing lost, nothing twice", async () => {
    const publisher = new ChannelsClient({ url: `ws://127.0.0.1:${server.port}/channels?user=sam`, WebSocket });
    const sam = recorder(publisher);
    publisher.connect();
    await sam.until((e) => e.type === "state" && e.state === "connected");
    await publisher.command("stalled", "create", { history_size: 100, history_ttl: 300 });
    const client = new ChannelsClient({ url: `ws://127.0.0.1:${proxy.port}/channels?user=sid`, WebSocket, minDelay: 50, maxDelay: 400 });
    const sid = recorder(client);
    client.join("stalled");
    client.connect();
    await sid.until((e) => e.type === "joined");
    await publisher.publish("stalled", { n: 1 });
    await sid.until(() => numbers(sid.events).length === 1, "the first publication");
    const stall = proxy.stall(5_000);
    for (const n of [2, 3, 4]) await publisher.publish("stalled", { n });
    // A command sent into the stall is answered after it (10 s allowed).
    const acknowledged = client.publish("stalled", { n: 5 });
    await stall;
    assert.equal((await acknowledged).offset, 5);
    await sid.until(() => numbers(sid.events).length === 5, "five publications");
    assert.deepEqual(numbers(sid.events), [1, 2, 3, 4, 5]);
    assert.ok(!sid.events.some((e) => e.type === "state" && e.state === "disconnected"), "the same connection throughout");
    client.close();
    publisher.close();
  });

  test("a connection dropped in the middle of a message comes back and recovers once and in order", async () => {
    const publisher = new ChannelsClient({ url: `ws://127.0.0.1:${server.port}/channels?user=dee`, WebSocket });
    const dee = recorder(publisher);
    publisher.connect();
    await dee.until((e) => e.type === "state" && e.state === "connected");
    await publisher.command("dropped", "create", { history_size: 100, history_ttl: 300 });
    const client = new ChannelsClient({ url: `ws://127.0.0.1:${proxy.port}/channels?user=dot`, WebSocket, minDelay: 50, maxDelay: 400 });
    const dot = recorder(client);
    client.join("dropped");
    client.connect();
    await dot.until((e) => e.type === "joined");
    await publisher.publish("dropped", { n: 1 });
    await dot.until(() => numbers(dot.events).length === 1, "the first publication");
    proxy.dropMidMessage();
    // Half of this one's frame reaches the client, then the connection ends.
    await publisher.publish("dropped", { n: 2, padding: "x".repeat(2000) });
    await dot.until((e) => e.type === "state" && e.state === "disconnected", "a disconnect");
    for (const n of [3, 4]) await publisher.publish("dropped", { n });
    await dot.until(() => numbers(dot.events).length === 4, "four publications");
    assert.deepEqual(numbers(dot.events), [1, 2, 3, 4]);
    assert.ok(dot.events.some((e) => e.type === "joined" && e.recovered === true), JSON.stringify(dot.events));
    client.close();
    publisher.close();
  });
});

// A restart of `ws serve` on Redis: the channel and its history outlive
// the process, so the client comes back by itself and recovers what was
// published while it was away, once and in order.
describe("across a restart of ws serve on Redis", { skip: process.env.WS_TEST_REDIS_URL ? false : "skipped: set WS_TEST_REDIS_URL (redis://127.0.0.1:6379) to run it" }, () => {
  test("what was published before the client was back arrives once and in order", async () => {
    const TOKEN = "restart-check-admin-token-0123456789";
    const prefix = `t7js${process.pid}${Date.now() % 100000}`;
    const args = (port) => ["serve", "--listen", `127.0.0.1:${port}`, "--backend", process.env.WS_TEST_REDIS_URL, "--backend-prefix", prefix, "--cluster-key", "a-cluster-key-for-the-restart-test-0123456789", "--admin-token", TOKEN];
    const start = async (port) => {
      const child = spawn(WS_BIN, args(port), { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, WS_LOG: "warn" } });
      const [line] = await once(createInterface({ input: child.stdout }), "line");
      return { child, port: Number(new URL(line.match(/page (http:\/\/\S+)/)[1]).port) };
    };
    const ctl = (port, ...command) => new Promise((resolve, reject) => {
      const child = spawn(WS_BIN, ["ctl", "--server", `http://127.0.0.1:${port}`, "--token", TOKEN, ...command], { stdio: "inherit" });
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`ws ctl ${command.join(" ")}: exit ${code}`))));
    });
    let server = await start(0);
    const port = server.port;
    const owner = new ChannelsClient({ url: `ws://127.0.0.1:${port}/channels?user=own`, WebSocket });
    const own = recorder(owner);
    owner.connect();
    await own.until((e) => e.type === "state" && e.state === "connected");
    await owner.command("room", "create", { history_size: 100, history_ttl: 300 });
    // Waits of exactly a second: the publications below come before it.
    const client = new ChannelsClient({ url: `ws://127.0.0.1:${port}/channels?user=cat`, WebSocket, minDelay: 1000, maxDelay: 1000, jitter: false });
    const cat = recorder(client);
    client.join("room");
    client.connect();
    await cat.until((e) => e.type === "joined");
    for (const n of [1, 2]) await owner.publish("room", { n });
    await cat.until(() => numbers(cat.events).length === 2, "two publications");
    server.child.kill("SIGKILL");
    await once(server.child, "exit");
    await cat.until((e) => e.type === "state" && e.state === "disconnected", "a disconnect");
    server = await start(port);
    for (const n of [3, 4]) await ctl(port, "publish", "room", JSON.stringify({ n }));
    await cat.until((e) => e.type === "joined" && e.recovered !== null, "a join after the restart");
    await ctl(port, "publish", "room", JSON.stringify({ n: 5 }));
    await cat.until(() => numbers(cat.events).length === 5, "five publications");
    const rejoined = cat.events.filter((e) => e.type === "joined");
    assert.equal(rejoined.at(-1).recovered, true, JSON.stringify(rejoined));
    assert.deepEqual(numbers(cat.events), [1, 2, 3, 4, 5]);
    client.close();
    owner.close();
    server.child.kill("SIGINT");
    await once(server.child, "exit");
  });
});

// A socket the test scripts: each one made is kept in `sockets`.
function scripted() {
  const sockets = [];
  class Scripted {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.onopen = this.onclose = this.onmessage = this.onerror = null;
      sockets.push(this);
    }
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    receive(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
    close(code = 1005, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return { Scripted, sockets };
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

// An HS256 JWT for `user` that ends `seconds` from now.
function jwt(secret, user, seconds) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: user, exp: Math.floor(Date.now() / 1000) + seconds })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

describe("with tokens that end", () => {
  const secret = "a-secret-of-at-least-thirty-two-bytes!!";
  let server;
  before(async () => {
    server = await startServer(["--jwt-secret", secret]);
  });
  after(() => server.child.kill("SIGINT"));
  const url = () => `ws://127.0.0.1:${server.port}/channels?token=${jwt(secret, "ann", 3)}`;

  test("a client with refreshToken keeps one connection past its tokens' ends", async () => {
    let fetched = 0;
    const client = new ChannelsClient({ url, WebSocket, refreshToken: () => (fetched++, jwt(secret, "ann", 3)) });
    const ann = recorder(client);
    client.connect();
    await ann.until(() => ann.events.filter((e) => e.type === "expiring").length === 3, "three expiring events");
    client.close();
    assert.equal(fetched, 3);
    assert.deepEqual(ann.events.filter((e) => e.type === "state").map((e) => e.state), ["connecting", "connected", "closed"]);
    assert.ok(!ann.events.some((e) => e.type === "refresh_failed"), JSON.stringify(ann.events));
  });

  test("a token of another user is refused, and the session ends with its own (4011); the client comes back", async () => {
    const client = new ChannelsClient({ url, WebSocket, minDelay: 50, refreshToken: () => jwt(secret, "bob", 600) });
    const ann = recorder(client);
    client.connect();
    const failed = await ann.until((e) => e.type === "refresh_failed");
    assert.equal(failed.error.code, "forbidden");
    const cut = await ann.until((e) => e.type === "state" && e.state === "disconnected");
    assert.match(cut.reason, /4011/);
    await ann.until(() => ann.events.filter((e) => e.type === "state" && e.state === "connected").length === 2, "a second connection");
    client.close();
  });
});

describe("against scripted sockets", () => {
  test("a close that says not to come back ends it; others are retried", async () => {
    for (const [code, again] of [[4001, false], [4009, false], [1008, false], [1001, true], [1006, true], [4008, true]]) {
      const { Scripted, sockets } = scripted();
      const client = new ChannelsClient({ url: "ws://x/", WebSocket: Scripted, minDelay: 1, maxDelay: 5 });
      client.connect();
      await tick();
      sockets[0].open();
      sockets[0].close(code, "bye");
      await tick(20);
      assert.equal(client.state === "closed", !again, `${code}: ${client.state}`);
      assert.equal(sockets.length > 1, again, `${code}: ${sockets.length} sockets`);
      client.close();
    }
  });

  test("waits double up to the bound; a connection that drops at once counts as a failure", async () => {
    const { Scripted, sockets } = scripted();
    const client = new ChannelsClient({ url: "ws://x/", WebSocket: Scripted, minDelay: 4, maxDelay: 32, jitter: false, maxAttempts: 7 });
    const record = recorder(client);
    client.connect();
    for (let i = 0; i < 7; i++) {
      await tick();
      const socket = sockets.at(-1);
      if (i % 2) {
        socket.open();
        socket.close(1006);
      } else socket.close(1006);
      await tick(40);
    }
    const waits = record.events.filter((e) => e.type === "state" && e.state === "disconnected").map((e) => e.retryIn);
    assert.deepEqual(waits, [4, 8, 16, 32, 32, 32]);
    assert.equal(client.state, "closed");
    assert.match(record.events.at(-1).reason, /gave up after 7 attempts/);
  });

  test("full jitter draws each wait from zero up to its bound", async () => {
    const waits = [];
    for (let i = 0; i < 50; i++) {
      const { Scripted, sockets } = scripted();
      const client = new ChannelsClient({ url: "ws://x/", WebSocket: Scripted, minDelay: 100, maxDelay: 100 });
      const record = recorder(client);
      client.connect();
      await tick();
      sockets[0].close(1006);
      waits.push(record.events.find((e) => e.state === "disconnected").retryIn);
      client.close();
    }
    assert.ok(waits.every((w) => w >= 0 && w <= 100), String(waits));
    assert.ok(new Set(waits).size > 40, `spread: ${waits}`);
  });

  test("a command without a reply times out; one without a connection is refused", async () => {
    const { Scripted, sockets } = scripted();
    const client = new ChannelsClient({ url: "ws://x/", WebSocket: Scripted, commandTimeout: 30 });
    await assert.rejects(client.publish("room", {}), (error) => error.code === "closed");
    client.connect();
    await tick();
    sockets[0].open();
    await assert.rejects(client.publish("room", {}), (error) => error instanceof ChannelError && error.code === "timeout");
    client.close();
  });

  test("duplicates are dropped, a gap is read from history first, and a lost history is said", async () => {
    const { Scripted, sockets } = scripted();
    const client = new ChannelsClient({ url: "ws://x/", WebSocket: Scripted });
    const record = recorder(client);
    client.join("room");
    client.connect();
    await tick();
    const socket = sockets[0];
    socket.open();
    const join = socket.sent.at(-1);
    assert.deepEqual([join.action, join.data], ["join", {}]);
    socket.receive({ type: "response", id: join.id, data: { ok: true, role: "participant", offset: 0, epoch: "e" } });
    const message = (n) => ({ type: "event", channel: "room", action: "message", data: { offset: n, epoch: "e", data: { n } } });
    for (const n of [1, 2, 2, 1]) socket.receive(message(n));
    assert.deepEqual(numbers(record.events), [1, 2]);
    // 3 never came: 4 waits while the join from 2 reads it.
    socket.receive(message(4));
    const rejoin = socket.sent.at(-1);
    assert.deepEqual(rejoin.data, { since: { offset: 2, epoch: "e" } });
    socket.receive(message(5));
    socket.receive({ type: "response", id: rejoin.id, data: { ok: true, offset: 4, epoch: "e", recovered: true, publications: [message(3).data, message(4).data] } });
    assert.deepEqual(numbers(record.events), [1, 2, 3, 4, 5]);
    // A `lost` event, then a history that no longer reaches back.
    socket.receive({ type: "event", channel: "room", action: "lost", data: {} });
    const lost = socket.sent.at(-1);
    assert.deepEqual(lost.data, { since: { offset: 5, epoch: "e" } });
    socket.receive({ type: "response", id: lost.id, data: { ok: true, offset: 40, epoch: "e", recovered: false } });
    assert.ok(record.events.some((e) => e.type === "joined" && e.recovered === false));
    socket.receive(message(41));
    assert.deepEqual(numbers(record.events), [1, 2, 3, 4, 5, 41]);
    // Kicked: said, and not joined again after a reconnect.
    socket.receive({ type: "event", channel: "room", action: "kicked", data: {} });
    assert.ok(record.events.some((e) => e.type === "removed" && e.reason === "kicked"));
    socket.close(1006);
    await tick(400);
    sockets.at(-1).open();
    assert.ok(!sockets.at(-1).sent.some((m) => m.action === "join"));
    client.close();
  });
});
