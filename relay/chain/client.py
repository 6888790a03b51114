"""Everything the relay does on chain: typed reads of the contracts' views, and transactions sent by
the relay signers, with reverts decoded into the contracts' named errors. The signers' nonces are
kept by the `NonceStore` handed in (the database, so several relay instances can share a signer):
this layer knows no database."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount

from relay import typed_data
from relay.chain.abi import CONTRACTS, Call, Contract, ErrorDecoder, checksum, load_abi
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
# Empty transactions a signer sends at most per repair_nonces call to fill lost nonces.
FILL_AT_ONCE = 64
# Receipts asked for in one batch request (nodes cap batch sizes; 50 is under every common cap).
BATCH_SIZE = 50
Receipt = dict[str, Any]
# The contract errors the relay explains, by name.
REJECTIONS = {cls.reverts: cls for cls in ERRORS if issubclass(cls, ChainRejected) and cls.reverts}
T = TypeVar("T")


class NonceStore(Protocol):
    """Where the relay signers' next nonces are kept, each under a lock while it is used."""

    def take(self, signer: str, count: Callable[[], int]) -> AbstractContextManager[Any]:
        """Holds the signer's next nonce (the node's `count()` if none is stored) while the block
        runs; yields a slot whose `nonce` the block uses; the nonce counts as used when it ends."""
        ...

    def forget(self, signer: str) -> None:
        """Drops the stored nonce: the next `take` asks the node."""
        ...

    def locked(self, signer: str) -> AbstractContextManager[int | None]:
        """Holds the signer's lock while the block runs; yields its stored next nonce (None if none)."""
        ...


@dataclass(frozen=True)
class Estimate:
    loyalty_type: int
    balance: int
    paid_point: int
    paid_token: int
    paid_value: int
    fee_point: int
    fee_token: int
    fee_value: int
    total_point: int
    total_token: int
    total_value: int


@dataclass(frozen=True)
class ShopInfo:
    shop_id: str
    name: str
    provide_wait_time: int
    provide_percent: int
    account: str
    provided_point: int
    used_point: int
    settled_point: int
    withdrawn_point: int
    withdraw_amount: int
    withdraw_open: bool


@dataclass(frozen=True)
class OnChainPayment:
    status: int
    account: str
    loyalty_type: int
    paid: int
    fee: int
    deadline: int


def _mined(raw: dict[str, Any]) -> Receipt:
    """A receipt with its numbers as ints; the logs stay as the node sent them (hex)."""
    return {**raw, "blockNumber": int(raw["blockNumber"], 16), "status": int(raw["status"], 16)}


def rejection(decoder: ErrorDecoder, data: bytes) -> RelayError:
    """The relay's error for revert data: the ChainRejected subclass that explains a contract error a
    client can act on, else ChainRejected("ErrorName(arg=value, ...)"); an arithmetic panic is an
    amount out of range (amounts are checked below 2^256, not against what the contracts add up)."""
    if data[:4] == PANIC:
        return InvalidParameter(f"An amount is out of range for the contracts (panic {data[4:].hex().lstrip('0')}).")
    decoded = decoder.decode(data)
    if decoded is None:
        return ChainRejected("execution reverted")
    name, args = decoded
    text = f"{name}({', '.join(f'{n}={v}' for n, v in args.items())})"
    explained = REJECTIONS.get(name)
    return ChainRejected(text) if explained is None else explained(f"{explained.explains.format(**args)} [{text}]")


def _is_nonce_conflict(message: str) -> bool:
    """The node refused a transaction because of its nonce: already used, or taken by another
    transaction still waiting in its pool."""
    return any(word in message.lower() for word in ("nonce", "replacement transaction", "already known"))


class Chain:
    def __init__(self, rpc_url: str, deployment_file: Path, signer_keys: list[str], timeout: float):
        self.rpc = NodeRpc(rpc_url, timeout)
        self._batches = True  # False once the node has refused a batch request
        self.deployment = json.loads(Path(deployment_file).read_text())
        self.chain_id: int = self.deployment["chainId"]
        abis = {name: load_abi(name) for name in CONTRACTS}
        self.contracts = {name: Contract(self.deployment["contracts"][name], abis[name]) for name in CONTRACTS}
        self.payment = self.contracts["LoyaltyPayment"]
        self.ledger = self.contracts["Ledger"]
        self.shops = self.contracts["ShopRegistry"]
        self.decoder = ErrorDecoder(list(abis.values()))
        self.signers: list[LocalAccount] = [Account.from_key(key) for key in signer_keys]
        self._locks = {s.address: threading.Lock() for s in self.signers}
        self._turn = 0
        self._turn_lock = threading.Lock()
        self._shops: set[str] = set()
        self._price = (0.0, 0)

    # ------------------------------------------------------------------ errors and plumbing

    def rejection(self, data: bytes) -> RelayError:
        return rejection(self.decoder, data)

    def _node(self, method: str, params: list[Any]) -> Any:
        """A JSON-RPC result; ChainUnavailable if the node cannot be asked, ChainRejected for a revert."""
        try:
            return self.rpc.result(method, params)
        except (ConnectionError, TimeoutError) as exc:
            raise ChainUnavailable() from exc
        except Reverted as exc:
            raise self.rejection(exc.data) from exc
        except RpcError as exc:
            raise ChainRejected(str(exc)) from exc

    def call(self, fn: Call, block: str | int = "latest") -> Any:
        return fn.decode(
            self._node("eth_call", [{"to": fn.to, "data": fn.data}, block if isinstance(block, str) else hex(block)])
        )

    def payment_domain(self) -> dict[str, Any]:
        return typed_data.domain(typed_data.PAYMENT_DOMAIN, self.chain_id, self.payment.address)

    def shop_domain(self) -> dict[str, Any]:
        return typed_data.domain(typed_data.SHOP_DOMAIN, self.chain_id, self.shops.address)

    # ------------------------------------------------------------------ reads

    def account_of(self, account: str) -> tuple[int, int]:
        loyalty_type, balance = self.call(self.ledger.call("accountOf", account))
        return int(loyalty_type), int(balance)

    def estimate(self, account: str, amount: int, currency: str) -> Estimate:
        try:
            values = self.call(self.payment.call("estimate", account, amount, currency))
        except ChainRejected as exc:
            if exc.message.startswith("UnknownCurrency"):
                raise UnknownCurrency(f"Unknown currency: {currency}") from exc
            raise
        return Estimate(*(int(v) for v in values))

    def payment_nonce(self, account: str, block: str = "latest") -> int:
        return int(self.call(self.payment.call("nonces", account), block))

    def shop_nonce(self, account: str) -> int:
        return int(self.call(self.shops.call("nonces", account)))

    def require_shop(self, shop_id: str) -> None:
        """ShopNotFound unless the shop is registered. Shops are never removed, so a shop found once
        is not asked for again (its owner may change: shop_owner reads it each time)."""
        if shop_id not in self._shops:
            self.shop(shop_id)
            self._shops.add(shop_id)

    def shop_owner(self, shop_id: str) -> str:
        return self.shop(shop_id).account

    def shop(self, shop_id: str, block: str | int = "latest") -> ShopInfo:
        try:
            info = self.call(self.shops.call("shopOf", shop_id), block)
        except ChainRejected as exc:
            if exc.message.startswith("UnknownShop"):
                raise ShopNotFound(f"Unknown shop: {shop_id}") from exc
            raise
        raw_id, name, wait, percent, owner, provided, used, settled, withdrawn, open_amount, is_open = info[:11]
        return ShopInfo("0x" + raw_id.hex(), name, int(wait), int(percent), checksum(owner), int(provided),
                        int(used), int(settled), int(withdrawn), int(open_amount), bool(is_open))  # fmt: skip

    def payment_of(self, payment_id: str, block: str = "latest") -> OnChainPayment:
        info = self.call(self.payment.call("paymentOf", payment_id), block)
        return OnChainPayment(int(info[4]), checksum(info[2]), int(info[3]), int(info[5]), int(info[6]), int(info[9]))

    def block_number(self) -> int:
        return int(self._node("eth_blockNumber", []), 16)

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

    # ------------------------------------------------------------------ transactions

    def refusal(self, fn: Call, sender: str | None = None) -> RelayError | None:
        """Why the contract would refuse `fn` on the pending state, or None if it would not."""
        try:
            self._node(
                "eth_call", [{"from": sender or self.signers[0].address, "to": fn.to, "data": fn.data}, "pending"]
            )
        except (ChainRejected, InvalidParameter) as exc:
            return exc
        return None

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

    def signer_for(self, signed_by: str | None) -> LocalAccount:
        """Transactions carrying one account's signatures (whose nonces follow each other) all go
        through the same relay signer, so its nonce order keeps them in order on chain; others
        take the signers in turn."""
        if not self.signers:
            raise ChainUnavailable("The relay has no signer key configured (RELAY_SIGNER_KEYS).")
        if signed_by is not None:
            return self.signers[int(signed_by, 16) % len(self.signers)]
        with self._turn_lock:
            self._turn = (self._turn + 1) % len(self.signers)
            return self.signers[self._turn]

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
                        tx_hash = None
                    if tx_hash is not None:
                        if then is not None:
                            then(slot, tx_hash)
                        return tx_hash
                # The key was used elsewhere, or the node lost a transaction: ask the node again.
                nonces.forget(signer.address)
        raise ChainUnavailable("Could not agree a nonce with the node.")

    def repair_nonces(self, nonces: NonceStore) -> None:
        """A transaction the node had accepted is gone (neither mined nor pending): every later
        transaction of its signer waits behind the missing nonce. For each signer whose stored next
        nonce is ahead of the node's count, sends an empty transfer to itself at each nonce from
        that count on (at most FILL_AT_ONCE a call): where a transaction still waits the node
        refuses the filler, where one is missing the filler takes its place."""
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
        signed = signer.sign_transaction({**tx, "gasPrice": self._gas_price(), "chainId": self.chain_id})
        self._node("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        return "0x" + bytes(signed.hash).hex()

    def _gas_price(self) -> int:
        fetched_at, price = self._price
        if time.monotonic() - fetched_at > 5:
            price = int(self._node("eth_gasPrice", []), 16)
            self._price = (time.monotonic(), price)
        return price

    def _count(self, address: str) -> int:
        """The node's count of the address's mined and pending transactions: its next nonce."""
        return int(self._node("eth_getTransactionCount", [address, "pending"]), 16)

    # ------------------------------------------------------------------ receipts

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt, or None while the transaction is pending (or unknown to the node)."""
        raw = self._node("eth_getTransactionReceipt", [tx_hash])
        return None if raw is None else _mined(raw)

    def is_known(self, tx_hash: str) -> bool:
        return self._node("eth_getTransactionByHash", [tx_hash]) is not None

    def receipts_of(self, hashes: list[str]) -> dict[str, Receipt]:
        """The receipts of those of `hashes` that are mined, in batch requests where the node takes them."""
        found: dict[str, Receipt] = {}
        for chunk in batched(hashes, BATCH_SIZE):
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
            for tx in chunk:
                if (receipt := self.receipt(tx)) is not None:
                    found[tx] = receipt
        return found


def batched(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
