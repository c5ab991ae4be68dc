// A Rust MLS member (ws-crypto on mls-rs, through interop/programs'
// mls_peer) and a ts-mls member (the bundle `ws serve`'s page loads,
// ws-server/src/page/vendor/ts-mls.js: ts-mls with its reading of RFC
// 9420's external_senders list mended) in one group on ciphersuite 1: each adds
// and removes the other, messages go both ways, and what one removed
// cannot read. `node mls.mjs PATH/TO/mls_peer`; exits non-zero on the
// first thing that does not hold, naming it.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";
import {
  createApplicationMessage,
  createCommit,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processPrivateMessage,
  processPublicMessage,
} from "../../ws-server/src/page/vendor/ts-mls.js";

const peerPath = process.argv[2];
if (!peerPath) {
  console.error("usage: node mls.mjs PATH/TO/mls_peer");
  process.exit(2);
}

// The Rust side, one JSON command and one JSON answer per line.
const peer = spawn(peerPath, [], { stdio: ["pipe", "pipe", "inherit"] });
const answers = createInterface({ input: peer.stdout })[Symbol.asyncIterator]();
async function rust(op, user, fields = {}) {
  peer.stdin.write(JSON.stringify({ op, user, ...fields }) + "\n");
  const { value, done } = await answers.next();
  assert.ok(!done, `mls_peer ended during ${op}`);
  const answer = JSON.parse(value);
  return answer;
}
async function rustOk(op, user, fields) {
  const answer = await rust(op, user, fields);
  assert.equal(answer.error, undefined, `${op} for ${user}: ${answer.error}`);
  return answer;
}

const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const unb64 = (text) => new Uint8Array(Buffer.from(text, "base64"));
const utf8 = (text) => new TextEncoder().encode(text);
const text = (bytes) => new TextDecoder().decode(bytes);
const decoded = (bytes) => {
  const result = decodeMlsMessage(bytes, 0);
  assert.ok(result, "an MLS message that does not decode");
  return result[0];
};

const impl = await getCiphersuiteImpl(
  getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"),
);

// The ts-mls member.
// Groups of ws-crypto hold its roles extension (0xf5a1): a member must
// list it among its capabilities to be added.
const capabilities = defaultCapabilities();
capabilities.extensions = [...capabilities.extensions, 0xf5a1];
const bob = await generateKeyPackage(
  { credentialType: "basic", identity: utf8("bob") },
  capabilities,
  defaultLifetime,
  [],
  impl,
);
let bobState;

async function bobReceives(bytes) {
  const message = decoded(bytes);
  if (message.wireformat === "mls_private_message") {
    const result = await processPrivateMessage(bobState, message.privateMessage, emptyPskIndex, impl);
    bobState = result.newState;
    return result;
  }
  assert.equal(message.wireformat, "mls_public_message", "a commit or a message");
  const result = await processPublicMessage(bobState, message.publicMessage, emptyPskIndex, impl);
  bobState = result.newState;
  return { kind: "newState", ...result };
}

async function bobSends(words) {
  const result = await createApplicationMessage(bobState, utf8(words), impl);
  bobState = result.newState;
  return encodeMlsMessage({
    privateMessage: result.privateMessage,
    wireformat: "mls_private_message",
    version: "mls10",
  });
}

async function bobCommits(proposals) {
  const result = await createCommit(
    { state: bobState, cipherSuite: impl },
    { extraProposals: proposals, wireAsPublicMessage: true, ratchetTreeExtension: true },
  );
  bobState = result.newState;
  return {
    commit: encodeMlsMessage(result.commit),
    welcome: result.welcome && encodeMlsMessage({ welcome: result.welcome, wireformat: "mls_welcome", version: "mls10" }),
  };
}

const steps = [];
async function step(name, body) {
  await body();
  steps.push(name);
  console.log(`ok - ${name}`);
}

await step("Rust creates a group and adds the ts-mls member with its key package", async () => {
  await rustOk("device", "ann");
  await rustOk("create", "ann", { channel: "room" });
  const keyPackage = encodeMlsMessage({ keyPackage: bob.publicPackage, wireformat: "mls_key_package", version: "mls10" });
  const add = await rustOk("add", "ann", { key_packages: [b64(keyPackage)] });
  assert.ok(add.welcome, "a Welcome for bob");
  const welcome = decoded(unb64(add.welcome));
  assert.equal(welcome.wireformat, "mls_welcome");
  bobState = await joinGroup(welcome.welcome, bob.publicPackage, bob.privatePackage, emptyPskIndex, impl);
  const members = await rustOk("members", "ann");
  assert.equal(BigInt(members.epoch), bobState.groupContext.epoch, "one epoch on both sides");
});

await step("messages go both ways", async () => {
  const fromRust = await rustOk("encrypt", "ann", { data: "hello from rust" });
  const got = await bobReceives(unb64(fromRust.message));
  assert.equal(got.kind, "applicationMessage");
  assert.equal(text(got.message), "hello from rust");
  const fromNode = await bobSends("hello from ts-mls");
  const received = await rustOk("receive", "ann", { message: b64(fromNode) });
  assert.deepEqual([received.kind, received.from, received.data], ["message", "bob", "hello from ts-mls"]);
});

await step("the Rust owner makes the ts-mls member a committer (the group's roles extension), and both apply it", async () => {
  const role = await rustOk("role", "ann", { member: "bob", role: "committer" });
  const got = await bobReceives(unb64(role.commit));
  assert.equal(got.actionTaken, "accept", "bob applies the owner's role change");
  const roles = bobState.groupContext.extensions.find((e) => e.extensionType === 0xf5a1);
  assert.deepEqual(JSON.parse(text(roles.extensionData)), { ann: "owner", bob: "committer" });
});

await step("the ts-mls member adds a Rust member, who reads it", async () => {
  await rustOk("device", "cy");
  const keyPackage = (await rustOk("key_package", "cy")).key_package;
  const decodedPackage = decoded(unb64(keyPackage));
  assert.equal(decodedPackage.wireformat, "mls_key_package");
  const { commit, welcome } = await bobCommits([{ proposalType: "add", add: { keyPackage: decodedPackage.keyPackage } }]);
  assert.ok(welcome, "a Welcome for cy");
  const seen = await rustOk("receive", "ann", { message: b64(commit) });
  assert.deepEqual([seen.kind, seen.added], ["commit", ["cy"]]);
  await rustOk("join", "cy", { welcome: b64(welcome) });
  const words = await bobSends("welcome, cy");
  for (const user of ["ann", "cy"]) {
    const got = await rustOk("receive", user, { message: b64(words) });
    assert.deepEqual([got.from, got.data], ["bob", "welcome, cy"], user);
  }
});

await step("the ts-mls member removes the Rust member it added, who cannot read what follows", async () => {
  const { members } = await rustOk("members", "ann");
  const cy = members.find((m) => m.user === "cy");
  const { commit, welcome } = await bobCommits([{ proposalType: "remove", remove: { removed: cy.index } }]);
  assert.equal(welcome, undefined);
  const seen = await rustOk("receive", "ann", { message: b64(commit) });
  assert.deepEqual([seen.kind, seen.removed], ["commit", ["cy"]]);
  const told = await rustOk("receive", "cy", { message: b64(commit) });
  assert.equal(told.removed_me, true, "cy is told");
  const after = await bobSends("cy is gone");
  const refused = await rust("receive", "cy", { message: b64(after) });
  assert.ok(refused.error, "cy cannot open it");
  const got = await rustOk("receive", "ann", { message: b64(after) });
  assert.equal(got.data, "cy is gone");
});

await step("Rust removes the ts-mls member, who cannot read what follows", async () => {
  const remove = await rustOk("remove", "ann", { member: "bob" });
  await bobReceives(unb64(remove.commit));
  const after = await rustOk("encrypt", "ann", { data: "bob is gone" });
  await assert.rejects(bobReceives(unb64(after.message)), "bob cannot open it");
  const { members } = await rustOk("members", "ann");
  assert.deepEqual(members.map((m) => m.user), ["ann"]);
});

peer.stdin.end();
console.log(`mls interop: ${steps.length} steps passed`);
