// The page of `ws serve` in headless Chromium, as two people use it: both
// join a channel and see each other in the roster, exchange messages, one
// reloads and finds the history; the owner kicks the other, who is told,
// then bans them, and they cannot come back. Then an end-to-end encrypted
// channel: two pages talk, a page without the key sees ciphertext only.
// No page may log a console error. A screenshot goes to target/ci/page.png.
//
// Usage: node page.mjs PATH/TO/ws   (the ws-server binary)
// The browser is Debian's chromium ($CHROMIUM, default `chromium` on PATH),
// driven through playwright-core; nothing is downloaded.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};

const binary = process.argv[2];
const server = spawn(binary, ["serve", "--listen", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, WS_LOG: "warn" },
});
const [first] = await once(createInterface({ input: server.stdout }), "line");
// "ws serve: page http://127.0.0.1:PORT/  channels ws://..."
const base = first.match(/page (http:\/\/\S+)/)[1];

const executablePath = process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const consoleErrors = [];
const TIMEOUT = 10_000;

async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(`${name}: ${message.text()}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
  await page.goto(base);
  return page;
}

async function join(page, name, channel) {
  await page.fill("#user", name);
  await page.fill("#channel", channel);
  await page.click("#join");
}

const roster = (page, user) => page.locator(`#roster li[data-user="${user}"]`);
const said = (page, text) => page.locator("#messages li.message", { hasText: text });

try {
  console.log(`${browser.version()} against ${base}`);
  const ann = await person("ann");
  const bob = await person("bob");

  await join(ann, "ann", "room");
  await ann.waitForSelector("#status[data-state=online]");
  await ann.waitForSelector("#room:not([hidden])");
  check(await ann.locator("#owner-hint").isVisible(), "the creator is told she owns the channel");

  await join(bob, "bob", "room");
  await bob.waitForSelector("#room:not([hidden])");
  await roster(ann, "bob").waitFor();
  await roster(bob, "ann").waitFor();
  check(true, "both see each other in the roster");
  check((await ann.textContent("#count")) === "2", "the roster counts two");

  await ann.fill("#text", "hello from ann");
  await ann.click("#send");
  await said(bob, "hello from ann").waitFor();
  await bob.fill("#text", "hi ann");
  await bob.press("#text", "Enter");
  await said(ann, "hi ann").waitFor();
  check(true, "messages cross both ways");

  // A reload: joining again shows what was said before.
  await bob.reload();
  await join(bob, "bob", "room");
  await said(bob, "hello from ann").waitFor();
  await said(bob, "hi ann").waitFor();
  check(true, "the history is there after a reload");

  // The owner kicks bob: he is told and may come back.
  await roster(ann, "bob").locator("button.kick").click();
  await bob.waitForSelector("#error:not([hidden])");
  check((await bob.textContent("#error")).includes("kicked"), `bob is told he was kicked: ${await bob.textContent("#error")}`);
  await roster(ann, "bob").waitFor({ state: "detached" });
  check(true, "bob leaves ann's roster");

  await bob.click("#join");
  await roster(ann, "bob").waitFor();
  check(true, "a kicked user may join again");

  // The owner bans bob: he is told and cannot come back.
  await roster(ann, "bob").locator("button.ban").click();
  await bob.waitForFunction(() => document.querySelector("#error").textContent.includes("banned"));
  check(true, "bob is told he was banned");
  await bob.click("#join");
  await bob.waitForFunction(() => document.querySelector("#error").textContent === "You are banned from this channel.");
  check(true, "a banned user cannot join again, and is told why");
  check(!(await roster(ann, "bob").count()), "bob is not back in ann's roster");

  // End-to-end encrypted: two pages with the box ticked talk; a third
  // without it sees only ciphertext and cannot post plaintext.
  const cara = await person("cara");
  const dan = await person("dan");
  const eve = await person("eve");
  await cara.check("#e2e");
  await join(cara, "cara", "vault");
  await cara.waitForSelector("#room:not([hidden])");
  await dan.check("#e2e");
  await join(dan, "dan", "vault");
  await dan.locator("#messages li.system", { hasText: "Key received (epoch 1)" }).waitFor();
  check(true, "an encrypted channel's owner page hands the key to a newcomer");
  check(/^[0-9a-f]{4}( [0-9a-f]{4}){7}$/.test(await dan.textContent("#fingerprint")), "the page shows its key's fingerprint");
  await cara.fill("#text", "the vault opens at noon");
  await cara.click("#send");
  await dan.locator("#messages li.message.sealed", { hasText: "the vault opens at noon" }).waitFor();
  await dan.fill("#text", "noted");
  await dan.click("#send");
  await cara.locator("#messages li.message.sealed", { hasText: "noted" }).waitFor();
  check(true, "encrypted messages cross both ways, marked as sealed");
  await join(eve, "eve", "vault");
  await eve.waitForSelector("#room:not([hidden])");
  await cara.fill("#text", "second secret");
  await cara.click("#send");
  await eve.locator("#messages li.message", { hasText: '"e2e":"msg"' }).first().waitFor();
  const seenByEve = await eve.textContent("#messages");
  check(!seenByEve.includes("second secret") && !seenByEve.includes("noon"), "a page without the key sees ciphertext only");
  await eve.fill("#text", "plain words");
  await eve.click("#send");
  await eve.waitForSelector("#error:not([hidden])");
  check((await eve.textContent("#error")).includes("only end-to-end envelopes"), "plaintext into an encrypted channel is refused");
  await roster(cara, "dan").locator("button.kick").click();
  await cara.locator("#messages li.system", { hasText: "new key (epoch 2)" }).waitFor();
  check(true, "kicking from an encrypted channel starts a new key epoch");

  mkdirSync("target/ci", { recursive: true });
  await ann.screenshot({ path: "target/ci/page.png", fullPage: true });
  await bob.screenshot({ path: "target/ci/page-banned.png", fullPage: true });
  await cara.screenshot({ path: "target/ci/page-e2e.png", fullPage: true });
  console.log("screenshots: target/ci/page.png, target/ci/page-banned.png, target/ci/page-e2e.png");
  check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? `: ${consoleErrors.join("; ")}` : ""}`);
} catch (error) {
  failures.push(String(error));
  console.log(`FAIL ${error}`);
} finally {
  await browser.close();
  server.kill();
}
if (failures.length) {
  console.log(`${failures.length} page check(s) failed`);
  process.exit(1);
}
console.log("the page: all checks passed");
process.exit(0);
