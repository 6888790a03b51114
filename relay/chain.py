"""Everything the relay does on chain: reads through the contracts' views, and transactions sent by
the relay signers with a nonce kept in the database (row-locked, so several relay instances can
share a signer), with reverts decoded into the contracts' named errors."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils import keccak, to_checksum_address
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.types import BlockIdentifier, Nonce, Wei

from relay import typed_data
from relay.calls import Call, FastContract
from relay.db import Database, is_postgres, run
from relay.errors import ERRORS, ChainRejected, ChainUnavailable, ShopNotFound, UnknownCurrency
from relay.models import Signer
from relay.receipts import ReceiptWatcher
from relay.rpc import NodeProvider, NodeRpc

log = logging.getLogger(__name__)

ABI_DIR = Path(__file__).resolve().parent / "abi"
CONTRACTS = ("LoyaltyToken", "CurrencyRate", "ShopRegistry", "Ledger", "LoyaltyPayment")
# On-chain payment statuses (ILoyaltyPayment.PaymentStatus).
NONE, OPEN, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED = range(6)
ERC1271_MAGIC = bytes.fromhex("1626ba7e")  # isValidSignature(bytes32,bytes)
# Empty transactions a signer sends at most per repair_nonces call to fill lost nonces.
FILL_AT_ONCE = 64
# The contract errors the relay explains, by name.
REJECTIONS = {cls.reverts: cls for cls in ERRORS if issubclass(cls, ChainRejected) and cls.reverts}
# What relay.rpc raises when the node cannot be reached.
CONNECTION_ERRORS = (ConnectionError, TimeoutError)


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
class Shop:
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


class ErrorDecoder:
    """Turns revert data into the relay's error for it: the ChainRejected subclass that explains a
    contract error a client can act on, else ChainRejected("ErrorName(arg=value, ...)"), using
    every contract's ABI."""

    def __init__(self, abis: list[list[dict[str, Any]]]) -> None:
        self.errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item["type"] == "error":
                    types = [i["type"] for i in item["inputs"]]
                    selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                    self.errors[selector] = (item["name"], [i["name"] for i in item["inputs"]], types)

    def rejection(self, data: str | bytes | None) -> ChainRejected:
        raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
        if not raw or len(raw) < 4 or raw[:4] not in self.errors:
            return ChainRejected("execution reverted")
        name, names, types = self.errors[raw[:4]]
        try:
            values = abi_decode(types, raw[4:])
        except Exception:
            return ChainRejected(name)
        args = {n: "0x" + v.hex() if isinstance(v, bytes) else v for n, v in zip(names, values, strict=True)}
        text = f"{name}({', '.join(f'{n}={v}' for n, v in args.items())})"
        explained = REJECTIONS.get(name)
        if explained is None:
            return ChainRejected(text)
        return explained(f"{explained.explains.format(**args)} [{text}]")


class Chain:
    def __init__(self, rpc_url: str, deployment_file: Path, db: Database, signer_keys: list[str], timeout: float):
        self.rpc = NodeRpc(rpc_url, timeout)
        self.receipts = ReceiptWatcher(self.rpc)
        self.w3 = Web3(NodeProvider(self.rpc))
        # Every argument is already validated and every transaction fully specified: the default
        # middleware would only add ENS lookups, chain-id round trips and gas re-estimation.
        for name in ("validation", "ens_name_to_address", "gas_estimate", "gas_price_strategy"):
            self.w3.middleware_onion.remove(name)
        self.deployment = json.loads(Path(deployment_file).read_text())
        self.chain_id: int = self.deployment["chainId"]
        abis = {name: json.loads((ABI_DIR / f"{name}.json").read_text()) for name in CONTRACTS}
        addresses = self.deployment["contracts"]
        self.contracts: dict[str, Contract] = {
            name: self.w3.eth.contract(address=to_checksum_address(addresses[name]), abi=abis[name])
            for name in CONTRACTS
        }
        # Calls are encoded and events decoded with eth-abi (relay.calls); the web3 contracts
        # above serve log searches (get_logs) and addresses.
        self.fast = {name: FastContract(self.rpc, addresses[name], abis[name]) for name in CONTRACTS}
        self.payment = self.fast["LoyaltyPayment"]
        self.ledger = self.fast["Ledger"]
        self.shops = self.fast["ShopRegistry"]
        self.rates = self.fast["CurrencyRate"]
        self.decoder = ErrorDecoder(list(abis.values()))
        self.db = db
        self.signers: list[LocalAccount] = [Account.from_key(key) for key in signer_keys]
        self._locks = {s.address: threading.Lock() for s in self.signers}
        self._turn = 0
        self._turn_lock = threading.Lock()
        self._shops: set[str] = set()

    # ------------------------------------------------------------------ domains

    def payment_domain(self) -> dict[str, Any]:
        return typed_data.domain(typed_data.PAYMENT_DOMAIN, self.chain_id, self.payment.address)

    def shop_domain(self) -> dict[str, Any]:
        return typed_data.domain(typed_data.SHOP_DOMAIN, self.chain_id, self.shops.address)

    # ------------------------------------------------------------------ reads

    def _call(self, fn: Call, block: BlockIdentifier = "latest") -> Any:
        try:
            return fn.call(block_identifier=block)
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc
        except ContractCustomError as exc:
            raise self.decoder.rejection(exc.data if isinstance(exc.data, str) else None) from exc

    def account_of(self, account: str) -> tuple[int, int]:
        loyalty_type, balance = self._call(self.ledger.functions.accountOf(account))
        return int(loyalty_type), int(balance)

    def estimate(self, account: str, amount: int, currency: str) -> Estimate:
        try:
            values = self._call(self.payment.functions.estimate(account, amount, currency))
        except ChainRejected as exc:
            if exc.message.startswith("UnknownCurrency"):
                raise UnknownCurrency(f"Unknown currency: {currency}") from exc
            raise
        return Estimate(*(int(v) for v in values))

    def payment_nonce(self, account: str, block: BlockIdentifier = "latest") -> int:
        return int(self._call(self.payment.functions.nonces(account), block))

    def shop_nonce(self, account: str) -> int:
        return int(self._call(self.shops.functions.nonces(account)))

    def require_shop(self, shop_id: str) -> None:
        """ShopNotFound unless the shop is registered. Shops are never removed, so a shop found
        once is not asked for again (its owner may change: shop_owner reads it each time)."""
        if shop_id not in self._shops:
            self.shop(shop_id)
            self._shops.add(shop_id)

    def shop_owner(self, shop_id: str) -> str:
        return self.shop(shop_id).account

    def shop(self, shop_id: str) -> Shop:
        try:
            info = self._call(self.shops.functions.shopOf(shop_id))
        except ChainRejected as exc:
            if exc.message.startswith("UnknownShop"):
                raise ShopNotFound(f"Unknown shop: {shop_id}") from exc
            raise
        return Shop(
            shop_id="0x" + info[0].hex(),
            name=info[1],
            provide_wait_time=int(info[2]),
            provide_percent=int(info[3]),
            account=to_checksum_address(info[4]),
            provided_point=int(info[5]),
            used_point=int(info[6]),
            settled_point=int(info[7]),
            withdrawn_point=int(info[8]),
            withdraw_amount=int(info[9]),
            withdraw_open=bool(info[10]),
        )

    def payment_of(self, payment_id: str, block: BlockIdentifier = "latest") -> OnChainPayment:
        info = self._call(self.payment.functions.paymentOf(payment_id), block)
        return OnChainPayment(
            status=int(info[4]),
            account=to_checksum_address(info[2]),
            loyalty_type=int(info[3]),
            paid=int(info[5]),
            fee=int(info[6]),
            deadline=int(info[9]),
        )

    def block_number(self) -> int:
        try:
            return int(self.rpc.result("eth_blockNumber", []), 16)
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc

    def latest_timestamp(self) -> int:
        try:
            return int(self.w3.eth.get_block("latest")["timestamp"])
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc

    def has_code(self, account: str) -> bool:
        try:
            return len(self.w3.eth.get_code(to_checksum_address(account))) > 0
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc

    def is_valid_erc1271(self, account: str, digest: bytes, signature: bytes) -> bool:
        """Asks a contract wallet whether it signed `digest` (ERC-1271)."""
        data = ERC1271_MAGIC + abi_encode(["bytes32", "bytes"], [digest, signature])
        try:
            result = self.w3.eth.call({"to": to_checksum_address(account), "data": HexStr("0x" + data.hex())})
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc
        except (ContractLogicError, Web3RPCError, ValueError):
            return False
        return bytes(result)[:4] == ERC1271_MAGIC

    # ------------------------------------------------------------------ transactions

    def rejection(self, fn: Call, otherwise: str) -> ChainRejected:
        """Why the contract refuses `fn` now, from a call of it by a relay signer on the pending
        state (ChainRejected(`otherwise`) if the call goes through)."""
        try:
            fn.simulate(self.signers[0].address)
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc
        except ContractCustomError as exc:
            return self.decoder.rejection(exc.data if isinstance(exc.data, str) else None)
        except (ContractLogicError, Web3RPCError) as exc:
            return ChainRejected(str(exc))
        return ChainRejected(otherwise)

    def _next_signer(self, signed_by: str | None) -> LocalAccount:
        if not self.signers:
            raise ChainUnavailable("The relay has no signer key configured (RELAY_SIGNER_KEYS).")
        if signed_by is not None:
            # Transactions carrying one account's signatures (whose nonces follow each other) all
            # go through the same relay signer, so its nonce order keeps them in order on chain;
            # sent by different signers, a later one could be mined first and revert.
            return self.signers[int(signed_by, 16) % len(self.signers)]
        with self._turn_lock:
            self._turn = (self._turn + 1) % len(self.signers)
            return self.signers[self._turn]

    def send(
        self,
        fn: Call,
        gas: int | None = None,
        signed_by: str | None = None,
        record: Callable[[Session, str], None] | None = None,
        simulate: bool = False,
    ) -> str:
        """Sends a transaction from one of the relay signers; returns its hash. Without a `gas`
        limit its gas is estimated, and with `simulate` it is run once on the pending state (an
        eth_call, cheaper for the node than an estimate): either way a transaction that would
        revert is never sent, and that raises ChainRejected with the decoded error.
        ChainUnavailable if the node cannot be reached.
        `signed_by`: the account whose signature (and signature nonce) the call carries.
        `record(session, tx_hash)` runs once the node has accepted the transaction, in the
        database transaction that takes the signer's nonce: its writes commit with the nonce."""
        signer = self._next_signer(signed_by)
        if gas is None or simulate:
            try:
                if gas is None:
                    estimated = fn.estimate_gas({"from": signer.address})
                    gas = estimated + estimated // 5
                else:
                    fn.simulate(signer.address)
            except CONNECTION_ERRORS as exc:
                raise ChainUnavailable() from exc
            except ContractCustomError as exc:
                raise self.decoder.rejection(exc.data if isinstance(exc.data, str) else None) from exc
            except (ContractLogicError, Web3RPCError) as exc:
                raise ChainRejected(str(exc)) from exc
        with self._locks[signer.address]:
            for _ in range(3):
                tx_hash = self._send_locked(signer, fn, gas, record)
                if tx_hash is not None:
                    return tx_hash
        raise ChainUnavailable("Could not agree a nonce with the node.")

    def _send_locked(
        self, signer: LocalAccount, fn: Call, gas: int, record: Callable[[Session, str], None] | None
    ) -> str | None:
        """Sends with the signer's next nonce from the database, whose row stays locked until the
        transaction is accepted, so relay instances sharing the signer never reuse a nonce. If
        the node says the nonce is wrong (the key was used elsewhere, or the node lost a
        transaction), forgets the stored nonce and returns None: the caller tries again with the
        node's count."""
        with self.db.session() as session:
            # Common case, one statement: take the stored nonce and count it as used; the update
            # holds the row lock to the end of this transaction.
            taken = run(session, _TAKE_NONCE, {"signer": signer.address}).scalar_one_or_none()
            nonce = taken - 1 if taken is not None else self._first_nonce(session, signer)
            try:
                tx = fn.build_transaction(
                    {
                        "from": signer.address,
                        "nonce": Nonce(nonce),
                        "gas": gas,
                        "gasPrice": Wei(self._gas_price()),
                        "chainId": self.chain_id,
                    }
                )
                tx_hash = self._send_raw(signer, dict(tx))
            except CONNECTION_ERRORS as exc:
                raise ChainUnavailable() from exc
            except Web3RPCError as exc:
                if not _is_nonce_conflict(str(exc)):
                    raise ChainRejected(str(exc)) from exc
                # Committed (not rolled back with an exception): the next try asks the node.
                session.execute(update(Signer).where(Signer.address == signer.address).values(next_nonce=None))
                return None
            if record is not None:
                record(session, tx_hash)
            return tx_hash

    def _first_nonce(self, session: Session, signer: LocalAccount) -> int:
        """The signer's row has no stored nonce (first use, or forgotten after a mismatch): lock the
        row (creating it if needed), ask the node and store the count after this transaction."""
        lock = select(Signer).where(Signer.address == signer.address).with_for_update()
        row = session.execute(lock).scalar_one_or_none()
        if row is None:
            # Several relay processes may start sending with a new signer at the same moment:
            # create its row without a duplicate-key error, then lock it. (Only then: on SQLite
            # the insert takes the database's write lock for the whole send.)
            insert = pg_insert if is_postgres(self.db.engine) else sqlite_insert
            session.execute(insert(Signer).values(address=signer.address).on_conflict_do_nothing())
            row = session.execute(lock).scalar_one()
        if row.next_nonce is not None:  # another process stored it meanwhile
            nonce = row.next_nonce
        else:
            try:
                nonce = self._transaction_count(signer.address)
            except CONNECTION_ERRORS as exc:
                raise ChainUnavailable() from exc
        row.next_nonce = nonce + 1
        return nonce

    def repair_nonces(self) -> None:
        """A transaction the node had accepted is gone (neither mined nor pending): every later
        transaction of its signer waits behind the missing nonce. For each signer whose stored
        next nonce is ahead of the node's count of its mined and pending transactions, sends an
        empty transfer to itself at each nonce from that count on (at most FILL_AT_ONCE a call):
        where a transaction still waits the node refuses the filler, where one is missing the
        filler takes its place and the queue behind it moves. The lost operation itself is sent
        again, with a new nonce, by whoever found it lost."""
        for signer in self.signers:
            with self._locks[signer.address], self.db.session() as session:
                row = session.execute(
                    select(Signer).where(Signer.address == signer.address).with_for_update()
                ).scalar_one_or_none()
                if row is None or row.next_nonce is None:
                    continue
                try:
                    count = self._transaction_count(signer.address)
                except CONNECTION_ERRORS as exc:
                    raise ChainUnavailable() from exc
                if count < row.next_nonce:
                    log.warning("signer %s: nonces from %d wait behind a lost transaction", signer.address, count)
                for nonce in range(count, min(row.next_nonce, count + FILL_AT_ONCE)):
                    self._fill(signer, nonce)

    def _fill(self, signer: LocalAccount, nonce: int) -> None:
        try:
            tx = {
                "from": signer.address,
                "to": signer.address,
                "value": 0,
                "nonce": nonce,
                "gas": 21_000,
                "gasPrice": self._gas_price(),
                "chainId": self.chain_id,
            }
            self._send_raw(signer, tx)
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc
        except Web3RPCError as exc:
            if not _is_nonce_conflict(str(exc)):
                log.warning("signer %s: filling nonce %d: %s", signer.address, nonce, exc)

    def _send_raw(self, signer: LocalAccount, tx: dict[str, Any]) -> str:
        """Signs `tx` with the signer's key and hands it to the node; returns its hash."""
        signed = signer.sign_transaction(tx)
        self.rpc.result("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        return "0x" + bytes(signed.hash).hex()

    _price: tuple[float, int] = (0.0, 0)

    def _gas_price(self) -> int:
        fetched_at, price = self._price
        if time.monotonic() - fetched_at > 5:
            price = int(self.rpc.result("eth_gasPrice", []), 16)
            self._price = (time.monotonic(), price)
        return price

    def _transaction_count(self, address: str) -> int:
        """The node's count of the address's mined and pending transactions: its next nonce."""
        return int(self.rpc.result("eth_getTransactionCount", [address, "pending"]), 16)

    def receipt(self, tx_hash: str) -> Mined | None:
        """The receipt, or None while the transaction is pending (or unknown to the node)."""
        try:
            raw = self.rpc.result("eth_getTransactionReceipt", [tx_hash])
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc
        return None if raw is None else mined(raw)

    def is_known(self, tx_hash: str) -> bool:
        try:
            return self.rpc.result("eth_getTransactionByHash", [tx_hash]) is not None
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc

    def wait(self, tx_hash: str, timeout: float) -> Mined | None:
        """The receipt once the transaction is mined; None if it is not mined within `timeout`.
        Asks at once; after that the process's receipt watcher asks for every waiting request
        together, once per new block (relay.receipts)."""
        try:
            raw = self.receipts.wait(tx_hash, timeout)
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc
        return None if raw is None else mined(raw)

    def follow(self, tx_hash: str, timeout: float, then: Callable[[Mined], object]) -> None:
        """Runs `then(receipt)` on a thread of the receipt watcher once the transaction is mined,
        if it is within `timeout`; returns at once."""
        self.receipts.follow(tx_hash, timeout, lambda raw: then(mined(raw)))

    def events(self, receipt: Mined, contract: str, event: str) -> list[dict[str, Any]]:
        """The arguments of each `event` that `contract` emitted in the receipt's transaction."""
        return self.fast[contract].logs(receipt, event)

    def find_events(self, contract: str, event: str, payment_id: str, from_block: int = 0) -> list[Any]:
        """Events of `contract` whose first indexed argument is `payment_id`."""
        try:
            return list(
                self.contracts[contract]
                .events[event]()
                .get_logs(from_block=from_block, argument_filters={"paymentId": payment_id})
            )
        except CONNECTION_ERRORS as exc:
            raise ChainUnavailable() from exc


# Takes a signer's stored next nonce and counts it as used. Built once and run as plain SQL
# (`relay.db.run`): every transaction the relay sends runs it.
_TAKE_NONCE = (
    update(Signer)
    .where(Signer.address == bindparam("signer"), Signer.next_nonce.is_not(None))
    .values(next_nonce=Signer.next_nonce + 1)
    .returning(Signer.next_nonce)
)


class Mined(TypedDict):
    """What the relay reads of a receipt: the node's JSON with its numbers as ints; the logs stay
    as the node sent them (hex strings), which the relay's event decoders read as they are
    (web3.py's receipt formatter converted every field and checksummed every log's address, for
    a status and a few logs)."""

    transactionHash: str
    blockNumber: int
    status: int
    gasUsed: int
    logs: list[dict[str, Any]]


def mined(raw: dict[str, Any]) -> Mined:
    return Mined(
        transactionHash=raw["transactionHash"],
        blockNumber=int(raw["blockNumber"], 16),
        status=int(raw["status"], 16),
        gasUsed=int(raw["gasUsed"], 16),
        logs=raw["logs"],
    )


def _is_nonce_conflict(message: str) -> bool:
    """The node refused a transaction because of its nonce: already used, or taken by another
    transaction still waiting in its pool."""
    text = message.lower()
    return any(word in text for word in ("nonce", "replacement transaction", "already known"))
