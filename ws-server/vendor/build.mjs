// Writes ../src/page/vendor/ts-mls.js: ts-mls and the parts of its optional
// dependencies that ciphersuite 1 needs (@noble/curves for Ed25519,
// @noble/ciphers for its noble provider), as one
// ES module the page imports from its own origin, with no build step for
// the page itself. `node build.mjs --check` rebuilds in memory and fails
// when the committed file differs (CI runs it), so the file in the
// repository is always what these pinned versions produce.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "page", "vendor", "ts-mls.js");
const version = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8")).version;

const banner = `// ts-mls ${version("ts-mls")} (MIT, https://github.com/LukaJCB/ts-mls), @hpke/core ${version("@hpke/core")} (MIT),
// @noble/curves ${version("@noble/curves")}, @noble/ciphers ${version("@noble/ciphers")} and @noble/hashes ${version("@noble/hashes")} (MIT, Paul Miller),
// bundled by ws-server/vendor/build.mjs with esbuild ${version("esbuild")}. Do not edit: rebuild.`;

// ts-mls 1.6.4 reads each external_senders extension as one sender and
// indexes extensions by a sender's index, where RFC 9420 §12.1.8.1 has one
// extension holding a list indexed by it (as mls-rs writes and reads it).
// Until ts-mls reads the list (to be reported upstream), these exact
// changes make it do so; the build fails if any no longer applies.
const LIST = `
import { decodeVarLenType as decodeListOf } from "./codec/variableLength.js";
/** RFC 9420 §12.1.8.1: the senders an external_senders extension lists. */
export const decodeExternalSenderList = decodeListOf(decodeExternalSender);
`;
// ts-mls 1.6.4 makes a commit of GroupContextExtensions proposals without
// a path, where RFC 9420 §12.4 requires one (mls-rs refuses such a commit),
// and takes one without a path; with this change it makes and requires
// the path (to be reported upstream).
const EXTENSIONS_NEED_A_PATH = [
  `const needsUpdatePath = allProposals.length === 0 || Object.values(grouped.update).length > 0 || Object.values(grouped.remove).length > 0;`,
  `const needsUpdatePath = allProposals.length === 0 || Object.values(grouped.update).length > 0 || Object.values(grouped.remove).length > 0 || grouped.group_context_extensions.length > 0;`,
];
// ... and encrypts that path's secrets for the GroupContext before the
// commit's new extensions, where §12.4.2's provisional GroupContext has
// them (as its own reading of a commit does).
const PATH_UNDER_THE_NEW_EXTENSIONS = [
  `    const [tree, updatePath, pathSecrets, newPrivateKey] = res.needsUpdatePath
        ? await createUpdatePath(res.tree, toLeafIndex(state.privatePath.leafIndex), state.groupContext, state.signaturePrivateKey, cipherSuite, excludeNodes)
        : [res.tree, undefined, [], undefined];
    const updatedExtensions = res.additionalResult.kind === "memberCommit" && res.additionalResult.extensions.length > 0
        ? res.additionalResult.extensions
        : state.groupContext.extensions;
    const groupContextWithExtensions = { ...state.groupContext, extensions: updatedExtensions };`,
  `    const updatedExtensions = res.additionalResult.kind === "memberCommit" && res.additionalResult.extensions.length > 0
        ? res.additionalResult.extensions
        : state.groupContext.extensions;
    const groupContextWithExtensions = { ...state.groupContext, extensions: updatedExtensions };
    const [tree, updatePath, pathSecrets, newPrivateKey] = res.needsUpdatePath
        ? await createUpdatePath(res.tree, toLeafIndex(state.privatePath.leafIndex), groupContextWithExtensions, state.signaturePrivateKey, cipherSuite, excludeNodes)
        : [res.tree, undefined, [], undefined];`,
];
const PATCHES = {
  "createCommit.js": [PATH_UNDER_THE_NEW_EXTENSIONS],
  "externalSender.js": [["//# sourceMappingURL=externalSender.js.map", `${LIST}//# sourceMappingURL=externalSender.js.map`]],
  "clientState.js": [
    EXTENSIONS_NEED_A_PATH,
    [`import { decodeExternalSender } from "./externalSender.js";`, `import { decodeExternalSenderList } from "./externalSender.js";`],
    [
      `        const decoded = decodeExternalSender(externalSender.extensionData, 0);
        if (decoded === undefined)
            return new CodecError("Could not decode external_senders");
        const validCredential = await authService.validateCredential(decoded[0].credential, decoded[0].signaturePublicKey);
        if (!validCredential)
            return new ValidationError("Could not validate external credential");`,
      `        const decoded = decodeExternalSenderList(externalSender.extensionData, 0);
        if (decoded === undefined || decoded[1] !== externalSender.extensionData.length)
            return new CodecError("Could not decode external_senders");
        for (const sender of decoded[0]) {
            const validCredential = await authService.validateCredential(sender.credential, sender.signaturePublicKey);
            if (!validCredential)
                return new ValidationError("Could not validate external credential");
        }`,
    ],
  ],
  "publicMessage.js": [
    [`import { decodeExternalSender } from "./externalSender.js";`, `import { decodeExternalSenderList } from "./externalSender.js";`],
    [
      `    const externalSenderExtensions = extensions.filter((ex) => ex.extensionType === "external_senders");
    const externalSenderExtension = externalSenderExtensions[senderIndex];
    if (externalSenderExtension !== undefined) {
        const externalSender = decodeExternalSender(externalSenderExtension.extensionData, 0);
        if (externalSender === undefined)
            throw new CodecError("Could not decode ExternalSender");
        return externalSender[0];
    }`,
      `    const externalSenderExtension = extensions.find((ex) => ex.extensionType === "external_senders");
    if (externalSenderExtension !== undefined) {
        const externalSenders = decodeExternalSenderList(externalSenderExtension.extensionData, 0);
        if (externalSenders === undefined)
            throw new CodecError("Could not decode ExternalSender");
        return externalSenders[0][senderIndex];
    }`,
    ],
  ],
};

const patched = new Set();
const rfc9420Mends = {
  name: "rfc-9420-mends",
  setup(build) {
    build.onLoad({ filter: /ts-mls[\\/]dist[\\/]src[\\/](externalSender|clientState|publicMessage|createCommit)\.js$/ }, (args) => {
      let contents = readFileSync(args.path, "utf8");
      for (const [from, to] of PATCHES[args.path.split(/[\\/]/).pop()]) {
        if (contents.split(from).length !== 2) throw new Error(`${args.path}: a patch no longer applies (ts-mls changed?): ${from.slice(0, 80)}`);
        contents = contents.replace(from, to);
      }
      patched.add(args.path.split(/[\\/]/).pop());
      return { contents, loader: "js" };
    });
  },
};

const result = await build({
  stdin: {
    // Beside the package's API: a key package's reference (to find the
    // Welcome for one of ours), the sender of an application message
    // (1.6.4's processPrivateMessage does not return it), the codec of a
    // list of external senders (to write the extension), and the
    // configuration a group state saved without it is loaded with.
    contents: `export * from "ts-mls";
export { makeKeyPackageRef } from "ts-mls/keyPackage.js";
export { unprotectPrivateMessage } from "ts-mls/messageProtection.js";
export { externalSenderEncoder } from "ts-mls/externalSender.js";
export { varLenTypeEncoder } from "ts-mls/codec/variableLength.js";
export { encode } from "ts-mls/codec/tlsEncoder.js";
export { defaultClientConfig } from "ts-mls/clientConfig.js";`,
    resolveDir: here,
    sourcefile: "ts-mls-entry.js",
  },
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "none",
  banner: { js: banner },
  // Other ciphersuites' optional dependencies, loaded only when one is
  // used; the page uses ciphersuite 1 only.
  external: ["@hpke/chacha20poly1305", "@hpke/hybridkem-x-wing", "@hpke/dhkem-x448", "@hpke/ml-kem", "@noble/post-quantum", "@noble/curves/ed448.js", "@noble/curves/nist.js"],
  write: false,
  plugins: [rfc9420Mends],
});
if (patched.size !== Object.keys(PATCHES).length) throw new Error(`patched ${[...patched]}, not every one of ${Object.keys(PATCHES)}`);
const bytes = result.outputFiles[0].contents;

if (process.argv.includes("--check")) {
  let committed;
  try {
    committed = readFileSync(out);
  } catch {
    committed = Buffer.alloc(0);
  }
  if (!Buffer.from(bytes).equals(committed)) {
    console.error(`${out} is not what build.mjs makes from the pinned packages: run \`npm ci && node build.mjs\` in ws-server/vendor and commit it`);
    process.exit(1);
  }
  console.log(`${out}: as built (${bytes.length} bytes)`);
} else {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bytes);
  console.log(`wrote ${out} (${bytes.length} bytes)`);
}
