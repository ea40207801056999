// usage: node verify.js BODY_FILE PUBLIC_KEY_B64 HEADER
// Prints "true" or "false": ondc-crypto-sdk-nodejs's isHeaderValid for the body file.
// Note: isHeaderValid checks only the Ed25519 signature over the rebuilt signing string;
// it ignores created/expires and the algorithm fields.
"use strict";

const { isHeaderValid } = require("ondc-crypto-sdk-nodejs");
const { readBody } = require("./read-body");

async function main() {
  const [bodyFile, publicKey, header] = process.argv.slice(2);
  if (!header) {
    process.stderr.write("usage: node verify.js BODY_FILE PUBLIC_KEY_B64 HEADER\n");
    process.exit(2);
  }
  const valid = await isHeaderValid({ header, body: readBody(bodyFile), publicKey });
  process.stdout.write(valid ? "true\n" : "false\n");
}

main().catch((err) => {
  process.stderr.write(`verify.js failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
