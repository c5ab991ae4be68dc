// The TypeScript client (clients/js, its built dist/index.js) in headless
// Chromium, with the browser's own WebSocket: it joins a channel of a real
// `ws serve` through a proxy this script cuts, and what was published
// while it was cut off arrives once and in order after it reconnects by
// itself; a deliberate disconnect (4009, `ws ctl disconnect`) ends it.
//
// Usage: node client.mjs PATH/TO/ws PATH/TO/clients/js/dist/index.js
import { execFileSync, spawn } from "node:child_process";
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
const server = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--admin-token", TOKEN, "--origins", ORIGIN], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, WS_LOG: process.env.WS_LOG ?? "warn" },
});
const [first] = await once(createInterface({ input: server.stdout }), "line");
const base = first.match(/page (http:\/\/\S+)/)[1];
const port = Number(new URL(base).port);

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
}
if (failures.length) {
  console.log(`the TypeScript client in Chromium: ${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("the TypeScript client in Chromium: all checks passed");
