// The page of `ws serve` in headless Chromium, as people use it: it warns
// that anyone can be anyone (no JWT or keys configured); two people join a
// channel and see each other in the roster (themselves marked), exchange
// messages, one reloads and finds the history, a new tab sees the recent
// messages, a long word does not widen the page; the owner kicks the
// other (after a confirmation), who is told, bans them for a while, they
// cannot come back, lifts the ban, they can. Then an end-to-end encrypted
// (MLS) channel: the owner's page adds a newcomer's device, two pages
// talk, one reloads and reads on with the device it kept (a script of the
// page's origin finds no signing key in what it kept), a page outside
// the group is told the channel is sealed and shows no ciphertext, a kick
// is committed out of the group, an owner who checks each device is
// offered newcomers', and a co-owner's page adds newcomers once the
// creator is gone. Last, the server restarts: the page
// says it is unreachable, comes back by itself and says what was lost.
// No page may log a console error. Screenshots go to target/ci/.
//
// Usage: node page.mjs PATH/TO/ws   (the ws-server binary)
// The browser is Debian's chromium ($CHROMIUM, default `chromium` on PATH),
// driven through playwright-core; nothing is downloaded.
import { execFileSync, spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const failures = [];
const check = (condition, what) => {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures.push(what);
};

// Whether any 32 bytes in `blobs` are the Ed25519 private key (seed) of
// `publicKey`: what an attacker who copied a device's storage would try.
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
function holdsPrivateKeyOf(publicKey, blobs) {
  const tried = new Set();
  for (const blob of blobs) {
    for (let i = 0; i + 32 <= blob.length; i++) {
      const seed = blob.subarray(i, i + 32);
      const seen = seed.toString("base64");
      if (tried.has(seen)) continue;
      tried.add(seen);
      const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: "der", type: "pkcs8" });
      if (createPublicKey(key).export({ format: "der", type: "spki" }).subarray(-32).equals(publicKey)) return true;
    }
  }
  return false;
}
{
  // The search finds a key where there is one.
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const hidden = Buffer.concat([randomBytes(100), privateKey.export({ format: "der", type: "pkcs8" }), randomBytes(7)]);
  if (!holdsPrivateKeyOf(raw, [randomBytes(64), hidden]) || holdsPrivateKeyOf(raw, [randomBytes(200)])) throw new Error("the key search is broken");
}

const binary = process.argv[2];
async function startServer(listen) {
  const child = spawn(binary, ["serve", "--listen", listen], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, WS_LOG: "warn" },
  });
  const [first] = await once(createInterface({ input: child.stdout }), "line");
  // "ws serve: page http://127.0.0.1:PORT/  channels ws://..."
  return { child, base: first.match(/page (http:\/\/\S+)/)[1] };
}
let { child: server, base } = await startServer("127.0.0.1:0");

const executablePath = process.env.CHROMIUM ?? execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const consoleErrors = [];
const dialogs = [];
const TIMEOUT = 10_000;

async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (message) => {
    // A connection refused while the server restarts is the browser's own
    // report of what the page then says in words.
    if (message.type() === "error" && !restarting) consoleErrors.push(`${name}: ${message.text()}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
  page.on("dialog", (dialog) => {
    dialogs.push(`${name}: ${dialog.message()}`);
    dialog.accept();
  });
  await page.goto(base);
  return page;
}
let restarting = false;

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
  await ann.waitForSelector("#insecure:not([hidden])");
  check((await ann.textContent("#insecure")).includes("anyone can join under any name"), "the page warns that names are not checked");

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
  check((await roster(ann, "ann").locator(".you").count()) === 1 && !(await roster(ann, "bob").locator(".you").count()), "the roster marks who you are");

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

  // A new tab (a new person) sees the recent messages too.
  const fay = await person("fay");
  await join(fay, "fay", "room");
  await said(fay, "hello from ann").waitFor();
  await said(fay, "hi ann").waitFor();
  check(true, "a new tab sees the recent messages");
  await fay.click("#leave");

  // A long word (a URL) wraps: the page does not get wider than the window.
  const long = `https://example.com/${"a".repeat(300)}`;
  await ann.fill("#text", long);
  await ann.click("#send");
  await said(bob, long).waitFor();
  const overflow = await bob.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `a long word does not widen the page (${overflow} px too wide)`);

  // The owner kicks bob, after saying yes: he is told and may come back.
  await roster(ann, "bob").locator("button.kick").click();
  await bob.waitForSelector("#error:not([hidden])");
  check(dialogs.some((d) => d === "ann: Kick bob?"), `the owner is asked before a kick: ${dialogs.join("; ")}`);
  check((await bob.textContent("#error")).includes("kicked"), `bob is told he was kicked: ${await bob.textContent("#error")}`);
  await roster(ann, "bob").waitFor({ state: "detached" });
  check(true, "bob leaves ann's roster");

  await bob.click("#join");
  await roster(ann, "bob").waitFor();
  check(true, "a kicked user may join again");

  // The owner bans bob for ten minutes: he is told and cannot come back,
  // until the ban is lifted.
  await ann.selectOption("#ban-for", "600");
  await roster(ann, "bob").locator("button.ban").click();
  await bob.waitForFunction(() => document.querySelector("#error").textContent.includes("banned"));
  check(dialogs.some((d) => d === "ann: Ban for 10 minutes: bob?"), `the owner is asked before a ban, with its length: ${dialogs.join("; ")}`);
  check(true, "bob is told he was banned");
  await bob.click("#join");
  await bob.waitForFunction(() => document.querySelector("#error").textContent === "You are banned from this channel.");
  check(true, "a banned user cannot join again, and is told why");
  check(!(await roster(ann, "bob").count()), "bob is not back in ann's roster");
  await ann.fill("#unban-user", "bob");
  await ann.click("#unban");
  await ann.locator("#messages li.system", { hasText: "The ban on bob was lifted." }).waitFor();
  await bob.click("#join");
  await roster(ann, "bob").waitFor();
  check(true, "once the ban is lifted, bob is back");

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
  await dan.locator("#messages li.system", { hasText: "This device is in the channel's group now" }).waitFor();
  check(true, "an encrypted channel's owner page adds a newcomer's device to its MLS group");
  const danKey = await dan.textContent("#fingerprint");
  check(/^[0-9a-f]{4}( [0-9a-f]{4}){7}$/.test(danKey), "the page shows its device's fingerprint");
  await cara.locator("#group-roster li[data-user=dan] code", { hasText: danKey }).waitFor();
  const caraKey = await cara.textContent("#fingerprint");
  await dan.locator("#group-roster li[data-user=cara] code", { hasText: caraKey }).waitFor();
  check(true, "each page shows the group's roster (MLS) with every device's fingerprint, the same on both sides");
  await cara.fill("#text", "the vault opens at noon");
  await cara.click("#send");
  await dan.locator("#messages li.message.sealed", { hasText: "the vault opens at noon" }).waitFor();
  await cara.locator("#messages li.message.sealed", { hasText: "the vault opens at noon" }).waitFor();
  await dan.fill("#text", "noted");
  await dan.click("#send");
  await cara.locator("#messages li.message.sealed", { hasText: "noted" }).waitFor();
  check(true, "encrypted messages cross both ways, marked as sealed");
  // A reload: the device and its group are kept in the browser, so the
  // page goes on in the group without being added again.
  await dan.reload();
  await dan.check("#e2e");
  await join(dan, "dan", "vault");
  await dan.waitForSelector("#room:not([hidden])");
  await cara.fill("#text", "after the reload");
  await cara.click("#send");
  await dan.locator("#messages li.message.sealed", { hasText: "after the reload" }).waitFor();
  check(!(await dan.textContent("#messages")).includes("Waiting for a member"), "after a reload the page reads on in the group with the device it kept");
  // As a script of the page's origin would (an XSS, an extension with
  // access to the site): read everything the browser keeps for dan's
  // device, try to export every key in it, and look for the signing key.
  const kept = await dan.evaluate(async () => {
    const db = await new Promise((resolve, reject) => {
      const request = indexedDB.open("ws-mls");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const record = await new Promise((resolve, reject) => {
      const request = db.transaction("devices").objectStore("devices").get("dan");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const base64 = (bytes) => {
      let text = "";
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(text);
    };
    const blobs = [];
    const privateExports = [];
    const walk = async (value) => {
      if (value instanceof CryptoKey) {
        for (const format of ["pkcs8", "raw", "jwk"]) {
          try {
            const out = await crypto.subtle.exportKey(format, value);
            if (value.type === "private") privateExports.push(format);
            blobs.push(base64(format === "jwk" ? new TextEncoder().encode(JSON.stringify(out)) : new Uint8Array(out)));
          } catch {}
        }
      } else if (ArrayBuffer.isView(value)) blobs.push(base64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)));
      else if (value instanceof ArrayBuffer) blobs.push(base64(new Uint8Array(value)));
      else if (typeof value === "string") {
        blobs.push(base64(new TextEncoder().encode(value)));
        try {
          blobs.push(base64(Uint8Array.from(atob(value), (c) => c.charCodeAt(0))));
        } catch {}
      } else if (value && typeof value === "object") for (const inner of Object.values(value)) await walk(inner);
    };
    await walk(record);
    const cryptoKeys = [];
    const findKeys = (value) => {
      if (value instanceof CryptoKey) cryptoKeys.push({ type: value.type, extractable: value.extractable });
      else if (value && typeof value === "object" && !ArrayBuffer.isView(value)) Object.values(value).forEach(findKeys);
    };
    findKeys(record);
    return { publicKey: base64(record.keys.publicKey), blobs, privateExports, cryptoKeys, groups: Object.keys(record.groups) };
  });
  check(kept.groups.includes("vault") && kept.blobs.length > 100, "the device's record holds its group state and key packages");
  check(
    kept.cryptoKeys.some((key) => key.type === "private" && !key.extractable) && kept.privateExports.length === 0,
    "the device's signing key is kept as a non-extractable CryptoKey: a script of the origin cannot export it",
  );
  check(
    !holdsPrivateKeyOf(Buffer.from(kept.publicKey, "base64"), kept.blobs.map((blob) => Buffer.from(blob, "base64"))),
    "nothing a script of the origin can read from the device's storage (keys, key packages, group states) holds its signing key",
  );
  // A second tab of the same browser does not share the device (one group
  // state in two tabs would reuse keys and nonces): it gets its own.
  const danTab = await dan.context().newPage();
  danTab.setDefaultTimeout(TIMEOUT);
  danTab.on("pageerror", (error) => consoleErrors.push(`dan's second tab: ${error.message}`));
  await danTab.goto(base);
  await danTab.check("#e2e");
  await join(danTab, "dan", "vault");
  await danTab.locator("#messages li.system", { hasText: "Another tab has this browser's device" }).waitFor();
  check((await danTab.textContent("#fingerprint")) !== (await dan.textContent("#fingerprint")), "a second tab is a device of its own, not the first tab's");
  await danTab.close();
  await join(eve, "eve", "vault");
  await eve.waitForSelector("#room:not([hidden])");
  await eve.locator("#messages li.system", { hasText: "This channel is end-to-end encrypted" }).waitFor();
  await cara.fill("#text", "second secret");
  await cara.click("#send");
  await eve.locator("#messages li.message.sealed-unread").first().waitFor();
  const seenByEve = await eve.textContent("#messages");
  check(
    !seenByEve.includes("second secret") && !seenByEve.includes("noon") && !seenByEve.includes('"ct"'),
    "a page without the key is told the channel is sealed and shows no ciphertext",
  );
  await eve.fill("#text", "plain words");
  await eve.click("#send");
  await eve.waitForSelector("#error:not([hidden])");
  check((await eve.textContent("#error")).includes("end-to-end encrypted"), "a page without the key does not post plaintext into an encrypted channel");
  await roster(cara, "dan").locator("button.kick").click();
  await cara.locator("#messages li.system", { hasText: "dan is out of the group" }).waitFor();
  await cara.waitForFunction(() => !document.querySelector("#group-roster li[data-user=dan]"));
  check(true, "kicking from an encrypted channel has the owner's page commit the server's removal proposal");

  // The owner checks each new device: it sees the newcomer's fingerprint,
  // computed from the key package, and adds it or refuses it.
  const ida = await person("ida");
  const gus = await person("gus");
  const hal = await person("hal");
  await ida.check("#e2e");
  await join(ida, "ida", "checked");
  await ida.waitForSelector("#owner-tools:not([hidden])");
  await ida.check("#approve-devices");
  await gus.check("#e2e");
  await join(gus, "gus", "checked");
  await gus.locator("#messages li.system", { hasText: "Waiting for a member" }).waitFor();
  const gusKey = await gus.textContent("#fingerprint");
  const offer = ida.locator("#messages li.approval[data-user=gus]");
  check((await offer.locator("code").textContent()) === gusKey, "the owner is shown the newcomer's device with the fingerprint the newcomer's page shows");
  await offer.locator("button.add-device").click();
  await gus.locator("#messages li.system", { hasText: "This device is in the channel's group now" }).waitFor();
  check(true, "an approved device joins the group");
  await hal.check("#e2e");
  await join(hal, "hal", "checked");
  // gus opens the channel in a second browser: the owner is offered that
  // device too, with the fingerprint it shows, and adds it.
  const gusPhone = await person("gus");
  await gusPhone.check("#e2e");
  await join(gusPhone, "gus", "checked");
  await gusPhone.locator("#messages li.system", { hasText: "Waiting for a member" }).waitFor();
  const phoneKey = await gusPhone.textContent("#fingerprint");
  const phoneOffer = ida.locator("#messages li.approval[data-user=gus]", { has: ida.locator("code", { hasText: phoneKey }) });
  await phoneOffer.locator("button.add-device").click();
  await gusPhone.locator("#messages li.system", { hasText: "This device is in the channel's group now" }).waitFor();
  check(phoneKey !== gusKey, "a member's second browser is offered to the owner with its own fingerprint, and joins the group once approved");
  await ida.locator("#messages li.approval[data-user=hal] button.refuse-device").click();
  await ida.fill("#text", "only for gus");
  await ida.click("#send");
  await gus.locator("#messages li.message.sealed", { hasText: "only for gus" }).waitFor();
  check(!(await hal.textContent("#messages")).includes("only for gus") && !(await hal.textContent("#messages")).includes("in the channel's group now"), "a refused device is not in the group and reads nothing");

  // The owner shares ownership of an encrypted channel: the co-owner's
  // page adds newcomers once the creator is gone (the group's own role,
  // which members check, and the channel's on the server).
  const jo = await person("jo");
  const kay = await person("kay");
  await jo.check("#e2e");
  await join(jo, "jo", "shared");
  await jo.waitForSelector("#room:not([hidden])");
  await kay.check("#e2e");
  await join(kay, "kay", "shared");
  await kay.locator("#messages li.system", { hasText: "This device is in the channel's group now" }).waitFor();
  check(!(await kay.locator("#group-roster button.co-owner").count()), "a page without the group's owner role offers no role changes");
  await jo.locator("#group-roster li[data-user=kay] button.co-owner", { hasText: "Make co-owner" }).click();
  await kay.locator("#group-roster li[data-user=kay] .role", { hasText: "owner" }).waitFor();
  await kay.waitForSelector("#owner-tools:not([hidden])");
  check(true, "the owner makes a member co-owner: the group's roster says so on the member's page, which gets the owner's tools");
  await jo.close();
  const lu = await person("lu");
  await lu.check("#e2e");
  await join(lu, "lu", "shared");
  await lu.locator("#messages li.system", { hasText: "This device is in the channel's group now" }).waitFor();
  await kay.fill("#text", "from the co-owner");
  await kay.click("#send");
  await lu.locator("#messages li.message.sealed", { hasText: "from the co-owner" }).waitFor();
  check(true, "with the creator gone, the co-owner's page adds a newcomer's device, who reads the group");
  await kay.locator("#group-roster li[data-user=lu] button.co-owner", { hasText: "Make co-owner" }).click();
  await lu.locator("#group-roster li[data-user=lu] .role", { hasText: "owner" }).waitFor();
  await kay.locator("#group-roster li[data-user=lu] button.co-owner", { hasText: "No longer co-owner" }).click();
  await lu.waitForFunction(() => !document.querySelector("#group-roster li[data-user=lu] .role"));
  await lu.waitForSelector("#owner-tools", { state: "hidden" });
  check(true, "a co-owner makes another member co-owner and takes it back: the group's role and the owner's tools go");

  mkdirSync("target/ci", { recursive: true });
  await ann.screenshot({ path: "target/ci/page.png", fullPage: true });
  await bob.screenshot({ path: "target/ci/page-banned.png", fullPage: true });
  await cara.screenshot({ path: "target/ci/page-e2e.png", fullPage: true });
  await eve.screenshot({ path: "target/ci/page-sealed.png", fullPage: true });

  // The server restarts (its channels were in memory): ann's page says
  // it is unreachable while it is down, comes back by itself, and says
  // the channel's earlier messages are lost.
  restarting = true;
  const port = new URL(base).port;
  server.kill("SIGINT");
  await once(server, "exit");
  await ann.waitForFunction(() => document.querySelector("#error").textContent.includes("unreachable"));
  check(await ann.locator("#status[data-state=reconnecting]").count() === 1, "the page says the server is unreachable and that it retries");
  check(!(await ann.locator("#roster li").count()), "the roster is cleared while the page is away");
  ({ child: server } = await startServer(`127.0.0.1:${port}`));
  await ann.waitForSelector("#status[data-state=online]", { timeout: 45_000 });
  restarting = false;
  // Whichever page comes back first makes the channel anew; the others
  // find it with a new history.
  await ann.locator("#messages li.system", { hasText: /earlier messages are (lost|no longer available)/i }).first().waitFor();
  await roster(ann, "ann").waitFor();
  await ann.fill("#text", "back again");
  await ann.click("#send");
  await said(ann, "back again").waitFor();
  check(true, "after a restart the page comes back by itself, says what was lost, and works");

  await ann.screenshot({ path: "target/ci/page-restarted.png", fullPage: true });
  console.log("screenshots: target/ci/page.png, page-banned.png, page-e2e.png, page-sealed.png, page-restarted.png");
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
