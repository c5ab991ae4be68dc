// The protocol's transcripts (ws-channels/transcripts/*.json) played
// through this client against a real `ws serve`: every command goes out
// as the client encodes it (and must read as the transcript's), every
// message the server sends must match the transcript, and every reply
// must come back from the client's promise as the transcript says (the
// data without `ok`, or a ChannelError with its code and message). The
// Rust client and the server run the same files
// (ws-channels/tests/transcripts.rs).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { ChannelsClient } from "../dist/index.js";

const WS_BIN = process.env.WS_BIN ?? fileURLToPath(new URL("../../../target/debug/ws", import.meta.url));
const DIR = fileURLToPath(new URL("../../../ws-channels/transcripts/", import.meta.url));
const WAIT = 5_000;

// As in the Rust runner: `$any` matches anything; another `$name` binds
// the value the first time and must equal it after; objects have the
// same keys.
function matches(pattern, actual, bound) {
  if (typeof pattern === "string" && pattern.startsWith("$")) {
    if (pattern === "$any") return true;
    if (pattern in bound) return JSON.stringify(bound[pattern]) === JSON.stringify(actual);
    bound[pattern] = actual;
    return true;
  }
  if (Array.isArray(pattern)) return Array.isArray(actual) && pattern.length === actual.length && pattern.every((p, i) => matches(p, actual[i], bound));
  if (pattern && typeof pattern === "object") {
    if (!actual || typeof actual !== "object" || Array.isArray(actual)) return false;
    const keys = Object.keys(pattern);
    return keys.length === Object.keys(actual).length && keys.every((k) => k in actual && matches(pattern[k], actual[k], bound));
  }
  return pattern === actual;
}

function substitute(value, bound) {
  if (typeof value === "string" && value in bound) return bound[value];
  if (Array.isArray(value)) return value.map((v) => substitute(v, bound));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, bound)]));
  return value;
}

const withoutEmptyData = ({ data, ...rest }) => (data === undefined || (data && typeof data === "object" && !Array.isArray(data) && Object.keys(data).length === 0) ? rest : { ...rest, data });

// A session: the client, and what crossed its socket.
function session(port, user) {
  const inbox = [];
  const sent = [];
  let waiter = null;
  let socket = null;
  class Tap extends WebSocket {
    constructor(url) {
      super(url);
      socket = this;
      this.addEventListener("message", (event) => {
        inbox.push(JSON.parse(String(event.data)));
        waiter?.();
      });
    }
    send(text) {
      try {
        sent.push(JSON.parse(text));
      } catch {
        sent.push(text);
      }
      super.send(text);
    }
  }
  const client = new ChannelsClient({ url: `ws://127.0.0.1:${port}/channels?user=${user}`, WebSocket: Tap, maxAttempts: 1 });
  return {
    client,
    sent,
    raw: () => socket,
    async next(ms = WAIT) {
      const deadline = Date.now() + ms;
      while (inbox.length === 0) {
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        await new Promise((resolve) => {
          waiter = resolve;
          setTimeout(resolve, left);
        });
        waiter = null;
      }
      return inbox.shift();
    },
  };
}

async function play(port, name, transcript) {
  const sessions = new Map();
  const bound = {};
  const replies = new Map(); // transcript id -> the client's promise, settled
  const ids = new Map(); // the client's id -> the transcript's
  for (const [at, step] of transcript.steps.entries()) {
    const place = `${name} step ${at}: ${JSON.stringify(step)}`;
    if (step.connect) {
      const s = session(port, step.user ?? step.connect);
      const connected = new Promise((resolve, reject) => s.client.onEvent((e) => e.type === "state" && (e.state === "connected" ? resolve() : e.state === "closed" && reject(new Error(`${place}: ${e.reason}`)))));
      s.client.connect();
      await connected;
      sessions.set(step.connect, s);
    } else if (step.send) {
      const s = sessions.get(step.send);
      if (step.text !== undefined) {
        s.raw().send(step.text);
        continue;
      }
      const message = substitute(step.message, bound);
      const { channel, action, data, params } = message;
      const promise = action === "publish" && params ? s.client.publish(channel, data, { idempotencyKey: params.idempotency_key }) : s.client.command(channel, action, data);
      replies.set(message.id, promise.then((value) => ({ value }), (error) => ({ error })));
      const wire = s.sent.at(-1);
      ids.set(wire.id, message.id);
      assert.deepEqual(withoutEmptyData({ ...wire, id: message.id }), withoutEmptyData(message), `${place}: the client encodes it otherwise`);
    } else if (step.receive) {
      const s = sessions.get(step.receive);
      const expected = step.messages ? [...step.messages] : [step.message];
      while (expected.length > 0) {
        const actual = await s.next();
        assert.ok(actual, `${place}: nothing came`);
        if (actual.id !== undefined) actual.id = ids.get(actual.id) ?? actual.id;
        const at = expected.findIndex((pattern) => {
          const trial = { ...bound };
          if (!matches(pattern, actual, trial)) return false;
          Object.assign(bound, trial);
          return true;
        });
        assert.ok(at >= 0, `${place}\n  got ${JSON.stringify(actual)}\n  with ${JSON.stringify(bound)}`);
        expected.splice(at, 1);
        if (actual.type === "response" && actual.id !== undefined && replies.has(actual.id)) {
          const settled = await replies.get(actual.id);
          const { ok, code, message, ...rest } = actual.data;
          if (ok) assert.deepEqual(settled.value, rest, `${place}: the client resolved with other data`);
          else assert.deepEqual([settled.error?.code, settled.error?.message], [code, message], `${place}: the client rejected otherwise`);
        }
      }
    } else if (step.close) {
      sessions.get(step.close).client.close();
      sessions.delete(step.close);
    } else {
      assert.fail(`${place}: no connect, send, receive or close`);
    }
  }
  for (const [name, s] of sessions) {
    const more = await s.next(300);
    assert.equal(more, undefined, `${name} got more than the transcript says: ${JSON.stringify(more)}`);
    s.client.close();
  }
}

const files = readdirSync(DIR).filter((file) => file.endsWith(".json")).sort();

describe("the protocol's transcripts", () => {
  // A server per transcript: no channel of another lingers.
  const servers = [];
  async function startServer() {
    const child = spawn(WS_BIN, ["serve", "--listen", "127.0.0.1:0", "--channel", 'topics={printers="everyone"}'], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, WS_LOG: "warn" } });
    servers.push(child);
    const [line] = await once(createInterface({ input: child.stdout }), "line");
    return Number(new URL(line.match(/page (http:\/\/\S+)/)[1]).port);
  }
  before(() => assert.ok(files.length >= 3, `transcripts in ${DIR}`));
  after(() => servers.forEach((child) => child.kill("SIGINT")));
  for (const file of files) {
    test(file, async () => {
      await play(await startServer(), file, JSON.parse(readFileSync(DIR + file, "utf8")));
    });
  }
});
