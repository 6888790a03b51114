// A JavaScript wallet opening a session as the Expo app does: the payment domain from
// GET /v1/payment/chain, an AppSession(account, deadline) signed with ethers v6 (the deadline a
// decimal string, 110 s ahead: the Python SDK signs 120 s ahead, so the same wallet's messages
// differ), POST /v1/payment/account/session; then the token sent in fetch's Authorization header.
//   node session.mjs <private key> <relay URL> <payment id>
// Prints {"session": <the session answer>, "item": <GET item with the token>}.
import { Wallet } from "ethers";

const [key, url, paymentId] = process.argv.slice(2);
const wallet = new Wallet(key);
const chain = await (await fetch(`${url}/v1/payment/chain`)).json();
const types = {
  AppSession: [
    { name: "account", type: "address" },
    { name: "deadline", type: "uint256" },
  ],
};
const message = { account: wallet.address, deadline: String(Math.floor(Date.now() / 1000) + 110) };
const signature = await wallet.signTypedData(chain.data.domains.payment, types, message);
const session = await (
  await fetch(`${url}/v1/payment/account/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...message, deadline: Number(message.deadline), signature }),
  })
).json();
const item = await (
  await fetch(`${url}/v1/payment/item?paymentId=${paymentId}`, {
    headers: { authorization: `Bearer ${session.data.token}` },
  })
).json();
process.stdout.write(JSON.stringify({ session, item }));
