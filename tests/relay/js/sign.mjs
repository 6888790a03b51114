// A JavaScript wallet signing what the relay served, as the app does: the response text through
// JSON.parse, then ethers v6's signTypedData (which takes the types without EIP712Domain).
//   node sign.mjs <private key> <path of the document in the response, e.g. data.typedData.confirm> < response
// Prints the signature; fails (with ethers' error) on a document ethers will not sign.
import { readFileSync } from "node:fs";
import { Wallet } from "ethers";

const [key, path] = process.argv.slice(2);
const response = JSON.parse(readFileSync(0, "utf8"));
const typed = path.split(".").reduce((value, name) => value[name], response);
const { EIP712Domain, ...types } = typed.types;
process.stdout.write(await new Wallet(key).signTypedData(typed.domain, types, typed.message));
