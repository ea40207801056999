// usage: node sign.js BODY_FILE PRIVATE_KEY_B64 SUBSCRIBER_ID UNIQUE_KEY_ID [CREATED EXPIRES]
// Prints the Authorization header value ondc-crypto-sdk-nodejs builds for the body file.
// PRIVATE_KEY_B64 must be the 64-byte libsodium key: the SDK passes it to crypto_sign_detached.
"use strict";

const { createAuthorizationHeader } = require("ondc-crypto-sdk-nodejs");
const { readBody } = require("./read-body");

async function main() {
  const [bodyFile, privateKey, subscriberId, subscriberUniqueKeyId, created, expires] =
    process.argv.slice(2);
  if (!subscriberUniqueKeyId) {
    process.stderr.write("usage: node sign.js BODY_FILE PRIVATE_KEY_B64 SUBSCRIBER_ID UNIQUE_KEY_ID [CREATED EXPIRES]\n");
    process.exit(2);
  }
  const header = await createAuthorizationHeader({
    body: readBody(bodyFile),
    privateKey,
    subscriberId,
    subscriberUniqueKeyId,
    created,
    expires,
  });
  process.stdout.write(header + "\n");
}

main().catch((err) => {
  process.stderr.write(`sign.js failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
