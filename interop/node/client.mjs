// The TypeScript client (clients/js, its built dist/index.js) in headless
// Chromium, with the browser's own WebSocket: it joins a channel of a real
// `ws serve` through a proxy this script cuts, and what was published
// while it was cut off arrives once and in order after it reconnects by
// itself; a deliberate disconnect (4009, `ws ctl disconnect`) ends it;
// on a server of JWTs that last 3 s, it keeps its one connection by
// refreshing them (`refreshToken`).
//
// Usage: node client.mjs PATH/TO/ws PATH/TO/clients/js/dist/index.js
import { execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import WebSocket from "ws";

const [binary, bundle] = process.argv.slice(2);
const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};

const TOKEN = "client-check-admin-token-0123456789";
// The page: the built module at an origin of its own, served from
// loopback as an application serves it (Chromium keeps pages it does not
// know to be local off the local network), which the server is told to
// accept.
const code = readFileSync(bundle, "utf8").replace(/^\/\/# sourceMappingURL=.*$/m, "");
const site = http.createServer((request, response) => {
  const script = request.url === "/index.js";
  response.writeHead(200, { "content-type": script ? "text/javascript" : "text/html" });
  response.end(script ? code : "<!doctype html><title>client</title>");
});
site.listen(0, "127.0.0.1");
await once(site, "listening");
const ORIGIN = `http://127.0.0.1:${site.address().port}`;
async function serve(...args) {
  const child = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--origins", ORIGIN, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, WS_LOG: process.env.WS_LOG ?? "warn" },
  });
  const [first] = await once(createInterface({ input: child.stdout }), "line");
  return { child, base: first.match(/page (http:\/\/\S+)/)[1] };
}
const { child: server, base } = await serve("--admin-token", TOKEN);
const port = Number(new URL(base).port);
const SECRET = "client-check-jwt-secret-of-32-bytes-or-more";
const { child: jwtServer, base: jwtBase } = await serve("--jwt-secret", SECRET);
// An HS256 JWT for `user` that ends `seconds` from now.
const jwt = (user, seconds) => {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub: user, exp: Math.floor(Date.now() / 1000) + seconds })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
};

// A TCP proxy to the server whose connections can be cut.
const links = new Set();
const proxy = net.createServer((inbound) => {
  const outbound = net.connect(port, "127.0.0.1");
  links.add(inbound).add(outbound);
  inbound.pipe(outbound).pipe(inbound);
  const drop = () => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on("error", drop).on("close", drop);
  outbound.on("error", drop).on("close", drop);
});
proxy.listen(0, "127.0.0.1");
await once(proxy, "listening");
const cut = () => {
  for (const socket of links) socket.destroy();
  links.clear();
};

// The publisher: Node, straight to the server.
const { ChannelsClient } = await import(new URL(`file://${process.cwd()}/${bundle}`).href);
const publisher = new ChannelsClient({ url: `ws://127.0.0.1:${port}/channels?user=pat`, WebSocket });
const connected = new Promise((resolve) => publisher.onEvent((e) => e.type === "state" && e.state === "connected" && resolve()));
publisher.connect();
await connected;
await publisher.command("room", "create", { history_size: 100, history_ttl: 300 });

const executablePath = process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
const browser = await chromium.launch({ executablePath, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
const consoleErrors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  await page.goto(`${ORIGIN}/`);
  await page.evaluate(async () => {
    window.ChannelsClient = (await import("/index.js")).ChannelsClient;
  });
  await page.evaluate((proxyPort) => {
    window.events = [];
    window.client = new window.ChannelsClient({ url: `ws://127.0.0.1:${proxyPort}/channels?user=cat`, minDelay: 50, maxDelay: 400 });
    window.client.onEvent((event) => window.events.push(event));
    window.client.join("room");
    window.client.connect();
    window.numbers = () => window.events.filter((e) => e.type === "publication" && e.kind === "message").map((e) => e.publication.data.n);
  }, proxy.address().port);
  await page.waitForFunction(() => window.events.some((e) => e.type === "joined"));
  for (const n of [1, 2, 3]) await publisher.publish("room", { n });
  await page.waitForFunction(() => window.numbers().length === 3);
  cut();
  await page.waitForFunction(() => window.events.some((e) => e.type === "state" && e.state === "disconnected"));
  for (const n of [4, 5, 6]) await publisher.publish("room", { n });
  await page.waitForFunction(() => window.events.some((e) => e.type === "joined" && e.recovered === true), null, { timeout: 10_000 });
  await publisher.publish("room", { n: 7 });
  await page.waitForFunction(() => window.numbers().length === 7);
  const numbers = await page.evaluate(() => window.numbers());
  check(JSON.stringify(numbers) === "[1,2,3,4,5,6,7]", `Chromium: what was published during a cut arrives once and in order after the reconnect (${numbers})`);
  const acked = await page.evaluate(() => window.client.publish("room", { n: 8 }));
  check(acked.offset === 8, `Chromium: a publish is acknowledged with its offset (${JSON.stringify(acked)})`);

  execFileSync(binary, ["ctl", "--server", base.replace(/\/$/, ""), "--token", TOKEN, "disconnect", "--user", "cat"]);
  await page.waitForFunction(() => window.client.state === "closed", null, { timeout: 10_000 });
  const reason = await page.evaluate(() => window.events.findLast((e) => e.type === "state").reason);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const states = await page.evaluate(() => window.events.filter((e) => e.type === "state").map((e) => e.state));
  check(/4009/.test(reason) && states.at(-1) === "closed", `Chromium: a deliberate disconnect (4009) ends it, no reconnect (${reason}; ${states.join(" ")})`);
  // Tokens of 3 s, refreshed from the page's own source of tokens.
  await page.exposeFunction("mintToken", () => jwt("ann", 3));
  await page.evaluate((jwtPort) => {
    window.events = [];
    window.client = new window.ChannelsClient({
      url: async () => `ws://127.0.0.1:${jwtPort}/channels?token=${await window.mintToken()}`,
      refreshToken: () => window.mintToken(),
    });
    window.client.onEvent((event) => window.events.push(event));
    window.client.connect();
  }, Number(new URL(jwtBase).port));
  await page.waitForFunction(() => window.events.filter((e) => e.type === "expiring").length === 3, null, { timeout: 15_000 });
  const kept = await page.evaluate(() => window.events.filter((e) => e.type === "state").map((e) => e.state));
  check(JSON.stringify(kept) === '["connecting","connected"]', `Chromium: a client refreshing its 3-second tokens keeps one connection past three of them (${kept.join(" ")})`);
  await page.evaluate(() => window.client.close());
  check(consoleErrors.length === 0, `no page errors${consoleErrors.length ? `: ${consoleErrors.join("; ")}` : ""}`);
} catch (error) {
  failures.push(String(error));
  console.log(`FAIL ${error}`);
  const page = browser.contexts()[0]?.pages()[0];
  if (page) console.log(`events: ${JSON.stringify(await page.evaluate(() => window.events).catch(() => null))}`);
} finally {
  publisher.close();
  await browser.close();
  proxy.close();
  site.close();
  cut();
  server.kill("SIGINT");
  jwtServer.kill("SIGINT");
}
if (failures.length) {
  console.log(`the TypeScript client in Chromium: ${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("the TypeScript client in Chromium: all checks passed");
