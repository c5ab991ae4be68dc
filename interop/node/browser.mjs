// Headless Chromium against our server with permessage-deflate: the page
// offers it (Chromium always does), our /deflate endpoint accepts, and
// compressed messages of every kind cross both ways. A relay between the
// browser and the server counts the bytes on the wire, so a side that
// negotiates but does not compress fails.
//
// Usage: node browser.mjs PATH/TO/interop   (an adapter's interop example binary)
// The browser is Debian's chromium ($CHROMIUM, default `chromium` on PATH),
// driven through playwright-core; nothing is downloaded.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { countingRelay, events } from "./relay.mjs";

const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};

// Runs in the page (with `events` from relay.mjs added): echo messages
// through /deflate, report what happened.
const PAGE = `<!doctype html><meta charset="utf-8"><title>deflate</title><script>
async function run(url) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let wake = null;
  ws.onmessage = (event) => { inbox.push(event.data); if (wake) { wake(); wake = null; } };
  const next = async () => {
    while (!inbox.length) await new Promise((resolve) => { wake = resolve; });
    return inbox.shift();
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("socket error")); });
  const report = { extensions: ws.extensions, echoes: [], sent: 0 };
  const bytes = new TextEncoder().encode(events(200000));
  const messages = [events(1 << 20), bytes.buffer, "héllo ✓", "", events(3000), events(50000)];
  for (const message of messages) {
    ws.send(message);
    report.sent += typeof message === "string" ? new TextEncoder().encode(message).length : message.byteLength;
    const echo = await next();
    const same = typeof message === "string"
      ? echo === message
      : echo instanceof ArrayBuffer && echo.byteLength === message.byteLength
        && new Uint8Array(echo).every((b, i) => b === new Uint8Array(message)[i]);
    report.echoes.push(same);
  }
  const closed = new Promise((resolve) => { ws.onclose = (event) => resolve(event); });
  ws.close(1000, "done");
  const event = await closed;
  report.close = { code: event.code, clean: event.wasClean };
  return report;
}
</script>`;

const binary = process.argv[2];
const server = spawn(binary, ["server", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
const [first] = await once(createInterface({ input: server.stdout }), "line");
const port = Number(first.split(" ").pop());
const relay = await countingRelay(port);
const pages = http.createServer((_, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end(PAGE);
});
pages.listen(0, "127.0.0.1");
await once(pages, "listening");

const executablePath = process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  console.log(`${browser.version()} against ws://127.0.0.1:${relay.port}/deflate`);
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${pages.address().port}/`);
  // The same test data as the other interop scripts.
  await page.addScriptTag({ content: events.toString() });
  const report = await page.evaluate((url) => run(url), `ws://127.0.0.1:${relay.port}/deflate`);
  check(report.extensions.startsWith("permessage-deflate"), `chromium negotiated permessage-deflate: ${report.extensions}`);
  report.echoes.forEach((same, i) => check(same, `chromium->rust compressed echo #${i + 1}`));
  check(report.close.code === 1000 && report.close.clean, `clean close: ${JSON.stringify(report.close)}`);
  const { up, down } = relay.counts["/deflate"] ?? { up: Infinity, down: Infinity };
  check(up < report.sent / 3, `chromium compressed on the wire: ${up} bytes for ${report.sent}`);
  check(down < report.sent / 3, `rust compressed on the wire: ${down} bytes for ${report.sent}`);
} finally {
  await browser.close();
  relay.close();
  pages.close();
  server.kill();
}
if (failures.length) {
  console.log(`${failures.length} browser check(s) failed`);
  process.exit(1);
}
console.log("browser interop: all checks passed");
process.exit(0);
