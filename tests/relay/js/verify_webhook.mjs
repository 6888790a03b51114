// A KIOSK verifying a callback as a JavaScript server would: the npm package standardwebhooks (the
// TypeScript implementation of the spec, not the Python one the relay signs with).
//   node verify_webhook.mjs < {"secret": "whsec_...", "body": "<raw body>", "headers": {...}}
// Prints the verified payload as JSON; fails with the library's error otherwise.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const { secret, body, headers } = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(new Webhook(secret).verify(body, headers)));
