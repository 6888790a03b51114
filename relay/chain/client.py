"""Everything the relay does on chain: typed reads of the contracts' views, and transactions sent by
the relay signers, with reverts decoded into the contracts' named errors."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount

from relay import typed_data
from relay.chain.abi import ABI_DIR, CONTRACTS, Call, Contract, Errors, checksum, decode_error, errors
from relay.chain.rpc import NodeRpc, Reverted, RpcError
from relay.errors import (
    ERRORS,
    ChainRejected,
    ChainUnavailable,
    InvalidParameter,
    RelayError,
    ShopNotFound,
    UnknownCurrency,
)

log = logging.getLogger(__name__)

# On-chain payment statuses (ILoyaltyPayment.PaymentStatus).
NONE, OPEN, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED = range(6)
ERC1271_MAGIC = bytes.fromhex("1626ba7e")  # isValidSignature(bytes32,bytes)
PANIC = bytes.fromhex("4e487b71")  # Panic(uint256): an arithmetic overflow (0x11) or division by zero (0x12)
FILL_AT_ONCE = 64  # empty transactions a signer sends at most per repair_nonces call
BATCH_SIZE = 50  # receipts asked for in one batch request: under every common node's cap
GAS_PRICE_TTL = 5.0  # seconds a gas price read from the node is used for
Receipt = dict[str, Any]
# The contracts' structs, as abi.Call decodes them: frozen dataclasses of their fields in snake_case
# (ILoyaltyPayment.Estimate, IShopRegistry.ShopInfo, ILoyaltyPayment.PaymentInfo).
Estimate: TypeAlias = Any
ShopInfo: TypeAlias = Any
PaymentInfo: TypeAlias = Any
# The contract errors the relay explains, by name.
REJECTIONS = {cls.reverts: cls for cls in ERRORS if issubclass(cls, ChainRejected) and cls.reverts}


class NonceStore(Protocol):
    """Where the signers' next nonces are kept (the database, so relay instances can share a signer)."""

    def take(self, signer: str, count: Callable[[], int]) -> AbstractContextManager[Any]:
        """Holds the next nonce (the node's `count()` if none is stored) while the block runs; yields
        a slot with its `nonce`, which counts as used when the block ends."""

    def forget(self, signer: str) -> None:
        """Drops the stored nonce: the next `take` asks the node."""

    def locked(self, signer: str) -> AbstractContextManager[int | None]:
        """Holds the signer's lock while the block runs; yields its stored next nonce, if any."""


def _mined(raw: dict[str, Any]) -> Receipt:
    """A receipt with its numbers as ints; the logs stay as the node sent them (hex)."""
    return {**raw, "blockNumber": int(raw["blockNumber"], 16), "status": int(raw["status"], 16)}


def rejection(known: Errors, data: bytes) -> RelayError:
    """The relay's error for revert data: the ChainRejected subclass that explains a contract error a
    client can act on, else ChainRejected("ErrorName(arg=value, ...)"); an arithmetic panic is an
    amount out of range (amounts are checked below 2^256, not against what the contracts add up)."""
    if data[:4] == PANIC:
        return InvalidParameter(f"An amount is out of range for the contracts (panic {data[4:].hex().lstrip('0')}).")
    decoded = decode_error(known, data)
    if decoded is None:
        return ChainRejected("execution reverted")
    name, args = decoded
    text = f"{name}({', '.join(f'{n}={v}' for n, v in args.items())})"
    explained = REJECTIONS.get(name)
    return ChainRejected(text) if explained is None else explained(f"{explained.explains.format(**args)} [{text}]")


def _is_nonce_conflict(message: str) -> bool:
    """The node refused a transaction for its nonce: used, or taken by one still in its pool."""
    return any(word in message.lower() for word in ("nonce", "replacement transaction", "already known"))


class Chain:
    def __init__(self, rpc_url: str, deployment_file: Path, signer_keys: list[str], timeout: float):
        self.rpc = NodeRpc(rpc_url, timeout)
        self.deployment = json.loads(Path(deployment_file).read_text())
        self.chain_id: int = self.deployment["chainId"]
        abis = {name: json.loads((ABI_DIR / f"{name}.json").read_text()) for name in CONTRACTS}
        self.contracts = {name: Contract(self.deployment["contracts"][name], abis[name]) for name in CONTRACTS}
        self.payment = self.contracts["LoyaltyPayment"]
        self.ledger = self.contracts["Ledger"]
        self.shops = self.contracts["ShopRegistry"]
        self.errors = errors(abis.values())
        self.signers: list[LocalAccount] = [Account.from_key(key) for key in signer_keys]
        self._locks = {s.address: threading.Lock() for s in self.signers}
        self._turns = itertools.count(1)
        self._known_shops: set[str] = set()
        self._price = (0.0, 0)  # (when it was read, gas price)
        self._batches = True  # False once the node has refused a batch request

    def _node(self, method: str, params: list[Any]) -> Any:
        """A JSON-RPC result; ChainUnavailable if the node cannot be asked, ChainRejected for a revert."""
        try:
            return self.rpc.result(method, params)
        except (ConnectionError, TimeoutError) as exc:
            raise ChainUnavailable() from exc
        except Reverted as exc:
            raise rejection(self.errors, exc.data) from exc
        except RpcError as exc:
            raise ChainRejected(str(exc)) from exc

    def _read(self, contract: Contract, name: str, *args: Any, block: str | int = "latest", missing: Any = None) -> Any:
        """A view's result. `missing`: (the contract error saying what was asked for does not exist,
        the relay error to raise instead)."""
        fn, tag = contract.call(name, *args), block if isinstance(block, str) else hex(block)
        try:
            return fn.decode(self._node("eth_call", [{"to": fn.to, "data": fn.data}, tag]))
        except ChainRejected as exc:
            if missing is None or not exc.message.startswith(missing[0]):
                raise
            raise missing[1] from exc

    def payment_domain(self) -> dict[str, Any]:
        return typed_data.domain(typed_data.PAYMENT_DOMAIN, self.chain_id, self.payment.address)

    def shop_domain(self) -> dict[str, Any]:
        return typed_data.domain(typed_data.SHOP_DOMAIN, self.chain_id, self.shops.address)

    def account_of(self, account: str) -> tuple[int, int]:
        loyalty_type, balance = self._read(self.ledger, "accountOf", account)
        return loyalty_type, balance

    def estimate(self, account: str, amount: int, currency: str) -> Estimate:
        unknown = ("UnknownCurrency", UnknownCurrency(f"Unknown currency: {currency}"))
        return self._read(self.payment, "estimate", account, amount, currency, missing=unknown)

    def to_point(self, amount: int, currency: str) -> int:
        """The amount in points at the current rate."""
        unknown = ("UnknownCurrency", UnknownCurrency(f"Unknown currency: {currency}"))
        return int(self._read(self.contracts["CurrencyRate"], "toPoint", amount, currency, missing=unknown))

    def payment_nonce(self, account: str, block: str = "latest") -> int:
        return int(self._read(self.payment, "nonces", account, block=block))

    def shop_nonce(self, account: str) -> int:
        return int(self._read(self.shops, "nonces", account))

    def require_shop(self, shop_id: str) -> None:
        """ShopNotFound unless the shop is registered. Shops are never removed, so a shop found once
        is not asked for again."""
        if shop_id not in self._known_shops:
            self.shop(shop_id)
            self._known_shops.add(shop_id)

    def shop(self, shop_id: str, block: str | int = "latest") -> ShopInfo:
        unknown = ("UnknownShop", ShopNotFound(f"Unknown shop: {shop_id}"))
        return self._read(self.shops, "shopOf", shop_id, block=block, missing=unknown)

    def payment_of(self, payment_id: str, block: str = "latest") -> PaymentInfo:
        return self._read(self.payment, "paymentOf", payment_id, block=block)

    def block_number(self) -> int:
        return int(self._node("eth_blockNumber", []), 16)

    def balance(self, account: str) -> int:
        return int(self._node("eth_getBalance", [account, "latest"]), 16)

    def mined_count(self, account: str) -> int:
        """How many of the account's transactions are mined: the nonce of its next one to be mined."""
        return int(self._node("eth_getTransactionCount", [account, "latest"]), 16)

    def latest_timestamp(self) -> int:
        return int(self._node("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def has_code(self, account: str) -> bool:
        return len(self._node("eth_getCode", [checksum(account), "latest"])) > 2

    def is_valid_erc1271(self, account: str, digest: bytes, signature: bytes) -> bool:
        """Asks a contract wallet whether it signed `digest` (ERC-1271)."""
        data = "0x" + (ERC1271_MAGIC + encode(["bytes32", "bytes"], [digest, signature])).hex()
        try:
            result = self._node("eth_call", [{"to": checksum(account), "data": data}, "latest"])
        except ChainRejected:
            return False
        return bytes.fromhex(result[2:])[:4] == ERC1271_MAGIC

    def logs(self, from_block: int, to_block: int) -> list[dict[str, Any]]:
        addresses = [c.address for c in self.contracts.values()]
        return list(
            self._node("eth_getLogs", [{"fromBlock": hex(from_block), "toBlock": hex(to_block), "address": addresses}])
        )

    def events(self, receipt: Receipt, contract: str, event: str) -> list[dict[str, Any]]:
        """The arguments of each `event` that `contract` emitted in the receipt's transaction."""
        return self.contracts[contract].logs(receipt, event)

    def event_logs(self, contract: str, name: str, from_block: int, *indexed: Any) -> list[dict[str, Any]]:
        """The `name` events of `contract` since `from_block` whose indexed arguments are `indexed`
        (None: any), each with its `transactionHash`."""
        c = self.contracts[contract]
        event = c.events[name]
        topics = ["0x" + event.topic.hex()] + [
            None if value is None else "0x" + encode([kind], [value]).hex()
            for (_, kind), value in zip(event.indexed, indexed, strict=False)
        ]
        query = {"fromBlock": hex(from_block), "toBlock": "latest", "address": c.address, "topics": topics}
        return [
            event.decode(entry) | {"transactionHash": entry["transactionHash"]}
            for entry in self._node("eth_getLogs", [query])
        ]

    def refusal(self, fn: Call, sender: str | None = None) -> RelayError | None:
        """Why the contract would refuse `fn` on the pending state, or None if it would not."""
        call = {"from": sender or self.signers[0].address, "to": fn.to, "data": fn.data}
        try:
            self._node("eth_call", [call, "pending"])
        except (ChainRejected, InvalidParameter) as exc:
            return exc
        return None

    def why_reverted(self, fn: Call) -> RelayError:
        """Why a mined transaction of `fn` reverted: the call again on the state the revert left
        (a receipt carries no reason)."""
        return self.refusal(fn) or ChainRejected("The transaction reverted on chain.")

    def signer_for(self, signed_by: str | None) -> LocalAccount:
        """Transactions carrying one account's signatures (whose nonces follow each other) all go
        through the same relay signer, whose nonce order keeps them in order; others take turns."""
        if not self.signers:
            raise ChainUnavailable("The relay has no signer key configured (RELAY_SIGNER_KEYS).")
        turn = next(self._turns) if signed_by is None else int(signed_by, 16)
        return self.signers[turn % len(self.signers)]

    def send(
        self,
        fn: Call,
        nonces: NonceStore,
        gas: int,
        signed_by: str | None = None,
        simulate: bool = False,
        then: Callable[[Any, str], None] | None = None,
    ) -> str:
        """Sends a transaction from a relay signer; returns its hash. With `simulate` it is run on
        the pending state first, so one that would revert is never sent (ChainRejected with the
        decoded error). `then(slot, tx_hash)` runs once the node has accepted it, while the nonce
        store's slot is held (the database's writes there commit with the nonce)."""
        signer = self.signer_for(signed_by)
        if simulate and (refused := self.refusal(fn, signer.address)) is not None:
            raise refused
        with self._locks[signer.address]:
            for _ in range(3):
                with nonces.take(signer.address, lambda: self._count(signer.address)) as slot:
                    tx = {"to": fn.to, "data": fn.data, "value": 0, "gas": gas, "nonce": slot.nonce}
                    try:
                        tx_hash = self._send_raw(signer, tx)
                    except ChainRejected as exc:
                        if not _is_nonce_conflict(exc.message):
                            raise
                    else:
                        if then is not None:
                            then(slot, tx_hash)
                        return tx_hash
                # The key was used elsewhere, or the node lost a transaction: ask the node again.
                nonces.forget(signer.address)
        raise ChainUnavailable("Could not agree a nonce with the node.")

    def repair_nonces(self, nonces: NonceStore) -> None:
        """Fills the nonces of lost transactions (neither mined nor pending), behind which every later
        transaction of their signer waits: sends an empty transfer to itself at each nonce from the
        node's count up to the stored next nonce (at most FILL_AT_ONCE). The node refuses the filler
        where a transaction still waits; where one is missing the filler takes its place."""
        for signer in self.signers:
            with self._locks[signer.address], nonces.locked(signer.address) as stored:
                if stored is None:
                    continue
                count = self._count(signer.address)
                if count < stored:
                    log.warning("signer %s: nonces from %d wait behind a lost transaction", signer.address, count)
                for nonce in range(count, min(stored, count + FILL_AT_ONCE)):
                    try:
                        self._send_raw(signer, {"to": signer.address, "value": 0, "gas": 21_000, "nonce": nonce})
                    except ChainRejected as exc:
                        if not _is_nonce_conflict(exc.message):
                            log.warning("signer %s: filling nonce %d: %s", signer.address, nonce, exc.message)

    def _send_raw(self, signer: LocalAccount, tx: dict[str, Any]) -> str:
        read_at, price = self._price
        if time.monotonic() - read_at > GAS_PRICE_TTL:
            price = int(self._node("eth_gasPrice", []), 16)
            self._price = (time.monotonic(), price)
        signed = signer.sign_transaction({**tx, "gasPrice": price, "chainId": self.chain_id})
        self._node("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        return "0x" + bytes(signed.hash).hex()

    def _count(self, address: str) -> int:
        """The node's count of the address's mined and pending transactions: its next nonce."""
        return int(self._node("eth_getTransactionCount", [address, "pending"]), 16)

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt, or None while the transaction is pending (or unknown to the node)."""
        raw = self._node("eth_getTransactionReceipt", [tx_hash])
        return None if raw is None else _mined(raw)

    def is_known(self, tx_hash: str) -> bool:
        return self._node("eth_getTransactionByHash", [tx_hash]) is not None

    def receipts_of(self, hashes: list[str]) -> dict[str, Receipt]:
        """The receipts of those of `hashes` that are mined, in batch requests where the node takes them."""
        found: dict[str, Receipt] = {}
        for start in range(0, len(hashes), BATCH_SIZE):
            chunk = hashes[start : start + BATCH_SIZE]
            if self._batches and len(chunk) > 1:
                try:
                    replies = self.rpc.batch("eth_getTransactionReceipt", [[tx] for tx in chunk])
                except (ConnectionError, TimeoutError) as exc:
                    raise ChainUnavailable() from exc
                except RpcError as exc:
                    log.warning("the chain node refused a batch request; asking for receipts one by one: %s", exc)
                    self._batches = False
                else:
                    found |= {tx: _mined(r["result"]) for tx, r in zip(chunk, replies, strict=True) if r.get("result")}
                    continue
            found |= {tx: receipt for tx in chunk if (receipt := self.receipt(tx)) is not None}
        return found
