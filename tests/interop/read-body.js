// Reads a body file as the JS string ondc-crypto-sdk-nodejs expects.
//
// The SDK (2.1.1, lib/utility/index.js) takes `body` as a string and hashes
// sodium.from_string(body), i.e. TextEncoder UTF-8. So the bytes it hashes are
// the UTF-8 encoding of the string we hand it. Decoding the file strictly and
// checking that re-encoding gives the file's bytes back guarantees both sides
// hash identical bytes; a body that is not valid UTF-8 cannot be given to the
// SDK at all, and we say so instead of letting it hash U+FFFD replacements.
"use strict";

const fs = require("fs");

function readBody(path) {
  const bytes = fs.readFileSync(path);
  let text;
  try {
    // ignoreBOM keeps a leading U+FEFF: it is part of the bytes on the wire.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (err) {
    process.stderr.write(`body file ${path} is not valid UTF-8; the SDK cannot hash it exactly\n`);
    process.exit(2);
  }
  if (!Buffer.from(new TextEncoder().encode(text)).equals(bytes)) {
    process.stderr.write(`body file ${path} does not survive a UTF-8 round trip\n`);
    process.exit(2);
  }
  return text;
}

module.exports = { readBody };
