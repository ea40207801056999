// usage: node resolve-did.js DID KEY_ID
// Resolves DID with the DIF's did-resolver + web-did-resolver (over https, as did:web requires),
// then finds the verification method that a BECKN-006 keyId "subscriber|ukid|ed25519" names
// (DID#ukid) and reads its publicKeyJwk with node:crypto.
// Prints one JSON line: {metadata, document, method, purposes, publicKey}, where publicKey is the
// raw Ed25519 key in standard base64 (what Beckn peers such as ondc-crypto-sdk-nodejs take), or
// null when the document has no such method.
"use strict";

const crypto = require("node:crypto");

async function main() {
  const [did, keyId] = process.argv.slice(2);
  if (!keyId) {
    process.stderr.write("usage: node resolve-did.js DID KEY_ID\n");
    process.exit(2);
  }
  // Both packages ship CommonJS builds; web-did-resolver fetches with cross-fetch (node-fetch).
  const { Resolver } = require("did-resolver");
  const { getResolver } = require("web-did-resolver");
  const resolver = new Resolver(getResolver());
  const result = await resolver.resolve(did);
  const document = result.didDocument;
  const out = { metadata: result.didResolutionMetadata, document, method: null, purposes: [], publicKey: null };
  if (document) {
    const ukid = keyId.split("|")[1];
    const wanted = `${document.id}#${ukid}`;
    const method = (document.verificationMethod || []).find((m) => m.id === wanted || m.id === `#${ukid}`);
    if (method) {
      out.method = method;
      out.purposes = ["assertionMethod", "authentication"].filter((name) =>
        (document[name] || []).some((ref) => (typeof ref === "string" ? ref : ref.id) === method.id));
      const key = crypto.createPublicKey({ key: method.publicKeyJwk, format: "jwk" });
      const spki = key.export({ format: "der", type: "spki" });
      out.publicKey = spki.subarray(spki.length - 32).toString("base64");
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(`resolve-did.js failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
