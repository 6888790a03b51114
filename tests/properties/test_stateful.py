"""Stateful property tests: random sequences of every payment, settlement and loyalty operation,
with every invariant of PROPERTIES.md checked against the chain after every step.

The machine drives four users (three start on points, one on tokens; any may switch) and two
shops (1 % and 25 % purchase rewards) through the relay's and the users' real entry points, keeps
a model of what each operation should do (`_model.py`), and before each transaction decides
from the model whether it must succeed or revert — and with which custom error and arguments.
A transaction expected to succeed is mined; one expected to revert is evaluated against the
pending block (same state, sender and timestamp) and must revert with exactly that error.

anvil runs with a fixed one-second block interval inside each sequence, so the model knows the
timestamp of every block and time-boundary cases (deadline, deadline + 1) are exact.
Each sequence runs inside `chain.isolate()`; function fixtures are not reset between examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import signature
from types import SimpleNamespace

from ape import chain
from eth_utils import keccak
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from relay import typed_data
from tests.properties._model import (
    CANCEL_OPEN,
    CANCELLED,
    CLOSED,
    IN_ESCROW,
    OPEN,
    POINT,
    REFUNDED,
    STATUS_NAMES,
    TERMINAL,
    TOKEN,
    TOKEN_CURRENCY,
    TRANSITIONS,
    UNIT,
    Cap,
    Model,
    Payment,
    Shop,
)
from tests.properties._rpc import Reverted
from tests.properties.conftest import (
    CREDIT_LIMITS,
    GRANT_CAP,
    RESERVE,
    REWARD_CAP,
    SHOP_PERCENTS,
    STARTING_POINTS,
    STATS,
    TOKEN_USER_DEPOSIT,
    WALLET,
    World,
)

DAY = 86_400
UNKNOWN_SHOP = b"\xee" * 32
RELAY_ROLE = keccak(text="RELAY_ROLE")
PROVIDER_ROLE = keccak(text="PROVIDER_ROLE")
GRANTER_ROLE = keccak(text="GRANTER_ROLE")
RATE_SETTER_ROLE = keccak(text="RATE_SETTER_ROLE")
ADMIN_ROLE = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
INITIAL_RATES = {"krw": UNIT, "usd": 1_350 * UNIT, TOKEN_CURRENCY: 100 * UNIT}

ADMIN_TOKEN_ACTIONS = ("withdraw fees", "donate", "fund reserve", "withdraw reserve")
ADMIN_SETTINGS = ("fee rate", "cancel period", "escrow timeout")
ADMIN_BOUNDS = ("token rate", "usd rate", "reward cap", "grant cap", "credit limit", "correct totals")
# How the wallet bounds a payment: the relay's estimate (most often), more, one less than the
# charge, or the other loyalty type.
CHARGE_BOUNDS = ("estimate", "estimate", "estimate", "generous", "tight", "wrong type")
FORGERIES = (
    "wrong chain id",
    "wrong contract",
    "expired",
    "used nonce",
    "future nonce",
    "wrong signer",
    "deny signed as approval",
    "altered amount",
    "altered shop",
    "altered max total",
)
UNAUTHORIZED_ATTEMPTS = (
    "stranger closes a payment",
    "stranger provides loyalty",
    "stranger opens a withdrawal",
    "relay moves a balance into escrow",
    "relay releases escrow",
    "relay refunds escrow",
    "relay returns a payment to escrow",
    "relay records a payment for a shop",
    "relay records a cancellation",
    "relay records a purchase reward",
    "admin moves a balance into escrow",
    "relay takes token fees",
    "relay takes the reserve",
    "relay sets the fee rate",
    "relay grants loyalty",
    "relay sets a rate",
    "relay raises the reward cap",
    "relay raises a credit limit",
    "relay corrects shop totals",
    "admin grants the admin role in one step",
    "user switches another account",
    "unknown shop",
)

# What the default profile must reach at least this many times (`rule: outcome` of the run
# summary), or the run fails: a property run that never closes a cancel proves nothing about it.
REQUIRED = {
    "reward (provide): ok": 20,
    "reward (provide): RewardCapExceeded": 3,
    "reward (provide): CreditLimitExceeded": 3,
    "reward (grant): ok": 10,
    "reward (grant): GrantCapExceeded": 3,
    "open_payment: ok": 40,
    "open_payment: ChargeExceedsMaxTotal": 3,
    "open_payment: LoyaltyTypeMismatch": 3,
    "close_payment (confirm): ok": 15,
    "close_payment (confirm): EscrowExpired": 3,
    "close_payment (refuse): ok": 10,
    "open_cancel: ok": 10,
    "open_cancel: CreditLimitExceeded": 1,
    "close_cancel (confirm): ok": 5,
    "close_cancel (refuse): ok": 5,
    "refund_expired: ok": 5,
    "refund_expired (everything, after every timeout): ok": 3,
    "open_withdrawal: ok": 5,
    "close_withdrawal: ok": 5,
    "admin (token rate): ok": 5,
    "admin (token rate): RateChangeTooLarge": 2,
    "admin (usd rate): ok": 5,
    "admin (usd rate): RateUpdateTooSoon": 2,
    "admin (reward cap): ok": 3,
    "admin (grant cap): ok": 3,
    "admin (credit limit): ok": 3,
    "admin (correct totals): ok": 3,
    "shop_transfer (accept): ok": 3,
    "token_account (switch): ok": 3,
    "token_account (switch): SwitchBelowMinimum": 1,
    "token_account (switch via relay): ok": 3,
}

# ---------------------------------------------------------------- strategies

user_index = st.integers(0, 3)
shop_index = st.integers(0, 1)


@st.composite
def priced(draw) -> tuple[str, int]:
    """A purchase amount with 18 decimals in a currency: dust (rounds to zero loyalty), small,
    medium or large (large purchases at the 25 % shop reach the reward cap and the credit limit),
    sometimes in a currency without a rate."""
    currency = draw(st.sampled_from(["krw"] * 4 + ["point", "point", "usd", "usd", TOKEN_CURRENCY, "xyz"]))
    top = {"usd": 15, TOKEN_CURRENCY: 200}.get(currency, 20_000) * UNIT
    size = draw(st.sampled_from(["dust", "small", "medium", "large"]))
    low, high = {"dust": (1, 10**17), "small": (1, top // 100), "medium": (top // 100, top // 2)}.get(
        size, (top // 2, top)
    )
    return currency, draw(st.integers(low, high))


def R(name: str, *args) -> Reverted:
    """The custom error `name(*args)` a call is expected to revert with."""
    return Reverted(name, args)


def counted(function):
    """Counts the step and names it for the run summary."""

    def step(self, **kwargs):
        STATS.steps += 1
        self.steps += 1
        self.rule_name = function.__name__
        self.corrected = False
        return function(self, **kwargs)

    step.__name__ = function.__name__
    step.__qualname__ = function.__qualname__
    return step


@dataclass
class View:
    """Everything the invariants read from the chain, fetched in one JSON-RPC batch per step."""

    ts: int
    accounts: dict[str, tuple[int, int]]
    wallets: dict[str, int]
    escrow: tuple[int, int]
    fees: tuple[int, int]
    reserve: int
    ledger_tokens: int
    shops: list[SimpleNamespace]
    payments: dict[bytes, SimpleNamespace]
    nonces: dict[tuple[str, str], int]
    settings: tuple[int, int, int]
    rates: dict[str, tuple[int, int]]  # currency -> (rate, updated at)
    caps: dict[str, tuple[int, int]]  # "reward", "grant" -> (limit, remaining)


class LoyaltyMachine(RuleBasedStateMachine):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.w = world
        self._isolation = chain.isolate()
        self._isolation.__enter__()
        STATS.sequences += 1
        rpc = world.rpc
        latest = int(rpc.request("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        rpc.request("anvil_setAutomine", [False])
        rpc.request("anvil_setBlockTimestampInterval", [1])
        rpc.request("evm_setNextBlockTimestamp", [latest + 1])

        token_users = set(world.token_users)
        rates_set = {c: world.rates.rateUpdatedAt(c) for c in INITIAL_RATES}
        self.m = Model(
            latest_ts=latest,
            rates=dict(INITIAL_RATES),
            rate_updated=rates_set,
            caps={"reward": Cap(REWARD_CAP), "grant": Cap(GRANT_CAP)},
            fee_rate=500,
            cancel_period=7 * DAY,
            escrow_timeout=1 * DAY,
            types={u: TOKEN if u in token_users else POINT for u in world.users},
            balances={u: TOKEN_USER_DEPOSIT if u in token_users else STARTING_POINTS for u in world.users},
            wallets={u: WALLET - (TOKEN_USER_DEPOSIT if u in token_users else 0) for u in world.users},
            reserve=RESERVE,
            ledger_tokens=RESERVE + TOKEN_USER_DEPOSIT * len(token_users),
            shops=[
                Shop(shop_id, owner, percent, limit)
                for shop_id, owner, percent, limit in zip(
                    world.shop_ids, world.owners, SHOP_PERCENTS, CREDIT_LIMITS, strict=True
                )
            ],
        )
        self.m.created_points = STARTING_POINTS * (len(world.users) - len(token_users))
        for owner in world.owners:
            self.m.nonces[("shops", owner)] = 1  # AddShop
        self.domains = {
            "payment": typed_data.domain("LoyaltyPayment", world.chain_id, world.payment.address),
            "shops": typed_data.domain("ShopRegistry", world.chain_id, world.shops.address),
            "ledger": typed_data.domain("Ledger", world.chain_id, world.ledger.address),
        }
        self.counter = 0
        self.steps = 0
        self.rule_name = "init"
        self.replayable: list[tuple[str, tuple]] = []  # accepted signed actions, to replay
        self.rebuilt = world.rebuilt.copy()
        self.corrected = False  # an admin correction of shop totals in this step
        self._view: View | None = None
        self._view_step = -1
        self.prev: View | None = None

    def teardown(self) -> None:
        STATS.lengths[self.steps] += 1
        try:
            self.w.rpc.request("anvil_removeBlockTimestampInterval", [])
            self.w.rpc.request("anvil_setAutomine", [True])
        finally:
            self._isolation.__exit__(None, None, None)

    # ================================================================ helpers

    def _next_id(self) -> int:
        self.counter += 1
        return self.counter

    def _sign(self, key_of: str, domain: str | dict, primary_type: str, **message) -> bytes:
        """`key_of`'s EIP-712 signature of `message` in a contract's domain (or a forged domain)."""
        domain = self.domains[domain] if isinstance(domain, str) else domain
        signature = typed_data.sign(self.w.keys[key_of], typed_data.build(primary_type, domain, message))
        return bytes.fromhex(signature[2:])

    def _deadline(self) -> int:
        return self.m.next_ts + 3_600

    def _owner_signs(self, shop, primary_type: str, **fields) -> tuple[int, bytes]:
        """The shop owner's signature of a withdrawal action with its next registry nonce, and
        the deadline it carries."""
        dl = self._deadline()
        nonce = self.m.nonce("shops", shop.owner)
        message = {"shopId": shop.shop_id, **fields, "account": shop.owner, "nonce": nonce, "deadline": dl}
        sig = self._sign(shop.owner, "shops", primary_type, **message)
        return dl, sig

    def _expect(self, method, args: tuple, sender: str, error: Reverted | None) -> bool:
        """Mines the transaction if the model expects success; otherwise checks it reverts with
        exactly `error` (evaluated against the pending block, nothing mined)."""
        name = self.rule_name
        if error is None:
            try:
                receipt = method.transact(*args, sender=sender)
            except Reverted as reverted:
                raise AssertionError(f"{name}: the model expected success, the chain reverted: {reverted}") from None
            self.m.mined()
            for log in receipt["logs"]:
                if (event := self.w.decoder.decode(log)) is not None:
                    self.rebuilt.apply(*event)
            STATS.outcome(name, "ok")
            return True
        got = method.revert_of(*args, sender=sender)
        assert got == error, f"{name}: the model expected revert {error}, the chain gave {got or 'success'}"
        STATS.outcome(name, error.name)
        return False

    def _pick(self, data, payments: list[Payment]) -> Payment:
        return data.draw(st.sampled_from(sorted(payments, key=lambda p: p.pid)), label="payment")

    def _fees(self, loyalty_type: int) -> int:
        fees = sum(p.fee for p in self.m.in_status(CLOSED) if p.loyalty_type == loyalty_type)
        return fees - (self.m.fees_withdrawn if loyalty_type == TOKEN else 0)

    # --- model effects shared by several rules

    def _credit_points(self, account: str, point: int) -> None:
        """Ledger._creditPoints: points, or tokens from the reserve for a token account."""
        m = self.m
        if m.types[account] == POINT:
            m.balances[account] += point
            m.created_points += point
        else:
            tokens = m.point_to_token(point)
            m.reserve -= tokens
            m.balances[account] += tokens

    def _credit_error(self, account: str, point: int) -> Reverted | None:
        m = self.m
        if m.types[account] == TOKEN and m.reserve < (tokens := m.point_to_token(point)):
            return R("InsufficientReserve", m.reserve, tokens)
        return None

    def _refund_error(self, p: Payment) -> Reverted | None:
        """Ledger.refundFromEscrow: converted through the reserve if the account switched since."""
        m = self.m
        if m.types[p.account] != p.loyalty_type and m.reserve < (tokens := m.point_to_token(p.total)):
            return R("InsufficientReserve", m.reserve, tokens)
        return None

    def _refund(self, p: Payment, status: int) -> None:
        m = self.m
        p.status = status
        if m.types[p.account] == p.loyalty_type:
            m.balances[p.account] += p.total
        else:  # a point payment of an account that has switched to tokens since
            tokens = m.point_to_token(p.total)
            m.reserve -= tokens
            m.balances[p.account] += tokens
            m.converted_points += p.total
            STATS.outcome(self.rule_name, "refund converted (account switched)")

    def _release(self, p: Payment) -> None:
        """Ledger.releaseToShop + ShopRegistry.recordPayment."""
        p.status = CLOSED
        if p.loyalty_type == TOKEN:
            self.m.reserve += p.paid
        self.m.shops[p.shop].used += p.shop_point

    # ================================================================ rules: loyalty in

    @rule(kind=st.sampled_from(["provide", "provide", "grant"]), u=user_index, data=st.data())
    @counted
    def reward(self, kind, u, data):
        """The relay credits a purchase reward (`provide`, recorded for the shop) or a grant."""
        self.rule_name = f"reward ({kind})"
        if kind == "provide":
            self._provide(u, data.draw(shop_index, label="shop"), data.draw(priced(), label="purchase"))
        else:
            self._grant(u, data.draw(st.integers(0, 50_000 * UNIT), label="point"))

    def _provide(self, u, s, purchase):
        m, w = self.m, self.w
        currency, amount = purchase
        account, shop = w.users[u], m.shops[s]
        reward = 0
        if m.rate(currency) is None:
            error = R("UnknownCurrency", currency)
        else:
            reward = m.to_point(amount, currency) * shop.percent // 10_000
            debt = shop.debt(provided=shop.provided + reward)
            remaining = m.caps["reward"].remaining(m.next_ts)
            if debt > shop.credit_limit:
                error = R("CreditLimitExceeded", shop.shop_id, debt, shop.credit_limit)
            elif reward == 0:
                error = R("InvalidAmount", amount)
            elif reward > remaining:
                error = R("RewardCapExceeded", reward, remaining)
            else:
                error = self._credit_error(account, reward)
        args = (account, shop.shop_id, f"R{self._next_id():06d}", amount, currency)
        if self._expect(w.ledger.provide, args, w.relay, error):
            shop.provided += reward
            m.caps["reward"].use(m.latest_ts, reward)
            self._credit_points(account, reward)

    def _grant(self, u, point):
        m, w = self.m, self.w
        account = w.users[u]
        remaining = m.caps["grant"].remaining(m.next_ts)
        if point == 0:
            error = R("InvalidAmount", 0)
        elif point > remaining:
            error = R("GrantCapExceeded", point, remaining)
        else:
            error = self._credit_error(account, point)
        if self._expect(w.ledger.grant, (account, point), w.admin, error):
            m.caps["grant"].use(m.latest_ts, point)
            self._credit_points(account, point)

    # ================================================================ rules: payments

    @rule(
        u=user_index,
        s=shop_index,
        purchase=priced(),
        signed_for=st.sampled_from([3_600, 3_600, 0]),
        bound=st.sampled_from(CHARGE_BOUNDS),
    )
    @counted
    def open_payment(self, u, s, purchase, signed_for, bound):
        """The relay submits a payment the user signed; `signed_for` 0: the signature's deadline is
        the very second the transaction is mined (still valid). `bound`: the loyalty type and
        maxTotal the wallet signed (the estimate, more, one less than the charge, the other type)."""
        m, w = self.m, self.w
        currency, amount = purchase
        account, shop = w.users[u], m.shops[s]
        n = self._next_id()
        pid, purchase_id = keccak(text=f"payment {n}"), f"P{n:06d}"
        loyalty_type, balance = m.types[account], m.balances[account]
        paid = fee = shop_point = max_total = 0
        signed_type = 1 - loyalty_type if bound == "wrong type" else loyalty_type
        if m.rate(currency) is None:
            error = R("UnknownCurrency", currency)
        else:
            paid, fee, shop_point = m.quote(loyalty_type, amount, currency)
            # P14: the estimate the relay shows is exactly what opening charges.
            e = w.payment.estimate(account, amount, currency)
            fee_value = amount * m.fee_rate // 10_000
            in_type = (paid, fee, paid + fee)
            expected = (loyalty_type, balance, (amount, fee_value, amount + fee_value))
            expected += (in_type, (0, 0, 0)) if loyalty_type == POINT else ((0, 0, 0), in_type)
            got = (e.loyaltyType, e.balance, (e.paidValue, e.feeValue, e.totalValue))
            got += ((e.paidPoint, e.feePoint, e.totalPoint), (e.paidToken, e.feeToken, e.totalToken))
            assert got == expected, f"P14: estimate {got} != charge {expected}"
            total = paid + fee
            max_total = {"generous": 2 * total + 1, "tight": max(total - 1, 0)}.get(bound, total)
            if paid == 0:
                error = R("InvalidAmount", amount)
            elif signed_type != loyalty_type:
                error = R("LoyaltyTypeMismatch", account, loyalty_type)
            elif total > max_total:
                error = R("ChargeExceedsMaxTotal", pid, total, max_total)
            elif balance < total:
                error = R("InsufficientBalance", account, balance, total)
            else:
                error = None
        dl = m.next_ts + signed_for
        sig = self._sign(
            account,
            "payment",
            "NewPayment",
            paymentId=pid,
            purchaseId=purchase_id,
            amount=amount,
            currency=currency,
            shopId=shop.shop_id,
            account=account,
            loyaltyType=signed_type,
            maxTotal=max_total,
            nonce=m.nonce("payment", account),
            deadline=dl,
        )
        data = (pid, purchase_id, amount, currency, shop.shop_id, account, signed_type, max_total, dl)
        if self._expect(w.payment.openNewPayment, (data, sig), w.relay, error):
            m.use_nonce("payment", account)
            m.balances[account] -= paid + fee
            m.payments[pid] = Payment(
                pid,
                purchase_id,
                account,
                s,
                loyalty_type,
                paid,
                fee,
                shop_point,
                m.fee_rate,
                m.latest_ts + m.escrow_timeout,
            )
            self.replayable.append(("NewPayment", (data, sig)))

    @precondition(lambda self: self.m.in_status(OPEN, CLOSED, CANCEL_OPEN))
    @rule(data=st.data(), confirm=st.sampled_from([True, True, False]))
    @counted
    def advance_payment(self, data, confirm):
        """The next step in a payment's life, whichever it is: close an open payment (confirm or
        refuse), open the cancel of a completed one, close an opened cancel (confirm or reverse).
        One rule for the three keeps long paths (open, close, cancel, close the cancel) frequent."""
        p = self._pick(data, self.m.in_status(OPEN, CLOSED, CANCEL_OPEN))
        if p.status == OPEN:
            self._close_payment(p, confirm)
        elif p.status == CLOSED:
            self._open_cancel(p)
        else:
            self._close_cancel(p, confirm)

    def _close_payment(self, p: Payment, confirm: bool) -> None:
        """Completes (until the escrow expires) or refunds an open payment."""
        self.rule_name = f"close_payment ({'confirm' if confirm else 'refuse'})"
        if confirm:
            error = R("EscrowExpired", p.pid, p.deadline) if self.m.next_ts > p.deadline else None
        else:
            error = self._refund_error(p)
        if self._expect(self.w.payment.closeNewPayment, (p.pid, confirm), self.w.relay, error):
            if confirm:
                self._release(p)
                p.deadline = self.m.latest_ts + self.m.cancel_period
            else:
                self._refund(p, REFUNDED)

    def _open_cancel(self, p: Payment) -> None:
        m, w = self.m, self.w
        self.rule_name = "open_cancel"
        shop = m.shops[p.shop]
        dl = self._deadline()
        if m.next_ts > p.deadline:
            error = R("CancelPeriodOver", p.pid, p.deadline)
        elif self._fees(p.loyalty_type) < p.fee:
            error = R("InsufficientFees", self._fees(p.loyalty_type), p.fee)
        elif p.loyalty_type == TOKEN and m.reserve < p.paid:
            error = R("InsufficientReserve", m.reserve, p.paid)
        elif (debt := shop.debt(used=shop.used - p.shop_point)) > shop.credit_limit:
            error = R("CreditLimitExceeded", shop.shop_id, debt, shop.credit_limit)
        else:
            error = None
        sig = self._sign_cancel(shop.owner, p, dl)
        if self._expect(w.payment.openCancelPayment, (p.pid, p.purchase_id, dl, sig), w.relay, error):
            m.use_nonce("payment", shop.owner)
            p.status = CANCEL_OPEN
            if p.loyalty_type == TOKEN:
                m.reserve -= p.paid
            shop.used -= p.shop_point
            self.replayable.append(("CancelPayment", (p.pid, p.purchase_id, dl, sig)))

    def _sign_cancel(self, key_of: str, p: Payment, dl: int) -> bytes:
        shop = self.m.shops[p.shop]
        message = dict(
            paymentId=p.pid,
            purchaseId=p.purchase_id,
            shopId=shop.shop_id,
            account=shop.owner,
            nonce=self.m.nonce("payment", shop.owner),
            deadline=dl,
        )
        return self._sign(key_of, "payment", "CancelPayment", **message)

    def _close_cancel(self, p: Payment, confirm: bool) -> None:
        """Completes an opened cancel (refund) or, until its escrow expires, reverses it."""
        self.rule_name = f"close_cancel ({'confirm' if confirm else 'refuse'})"
        m = self.m
        if confirm:
            error = self._refund_error(p)
        elif m.next_ts > (expires := p.deadline + m.escrow_timeout):
            error = R("EscrowExpired", p.pid, expires)
        else:
            error = None
        if self._expect(self.w.payment.closeCancelPayment, (p.pid, confirm), self.w.relay, error):
            if confirm:
                self._refund(p, CANCELLED)
            else:  # back to completed; the cancel period still ends when it did
                self._release(p)

    @precondition(lambda self: self.m.in_status(*IN_ESCROW))
    @rule(data=st.data(), everything=st.sampled_from([False] * 5 + [True]))
    @counted
    def refund_expired(self, data, everything):
        """Anyone (here a stranger) may return a payment stuck in escrow after the timeout."""
        if everything:
            self.rule_name = "refund_expired (everything, after every timeout)"
            self._refund_everything_expired()
            return
        m = self.m
        p = self._pick(data, m.in_status(*IN_ESCROW))
        expires = m.escrow_expiry(p)
        error = R("EscrowNotExpired", p.pid, expires) if m.next_ts <= expires else self._refund_error(p)
        if self._expect(self.w.payment.refundExpired, (p.pid,), self.w.stranger, error):
            self._refund(p, REFUNDED if p.status == OPEN else CANCELLED)

    def _refund_everything_expired(self):
        """No stuck escrow: once every timeout has passed, anyone empties the escrow (except refunds
        the reserve cannot convert for accounts that switched to tokens, a documented limit)."""
        m = self.m
        escrowed = m.in_status(*IN_ESCROW)
        self._set_next_ts(max(m.next_ts, *(m.escrow_expiry(p) + 1 for p in escrowed)))
        for p in sorted(escrowed, key=lambda p: p.pid):
            if self._expect(self.w.payment.refundExpired, (p.pid,), self.w.stranger, self._refund_error(p)):
                self._refund(p, REFUNDED if p.status == OPEN else CANCELLED)
        stuck = m.in_status(*IN_ESCROW)
        assert all(self._refund_error(p) for p in stuck), "a refundable payment stayed in escrow"
        if not stuck:
            assert self._fetch().escrow == (0, 0), "escrow not empty after every payment was refunded"

    # ================================================================ rules: time

    def _set_next_ts(self, ts: int) -> None:
        assert ts >= self.m.latest_ts
        self.w.rpc.request("evm_setNextBlockTimestamp", [ts])
        self.m.next_ts = ts

    @rule(
        seconds=st.sampled_from([0, 1, 60, 600, 3_600, 6 * 3_600, DAY, 2 * DAY, 8 * DAY]) | st.integers(0, 10 * DAY),
        to_boundary=st.sampled_from([False, False, True]),
        data=st.data(),
    )
    @counted
    def advance_time(self, seconds, to_boundary, data):
        """Moves the clock; or jumps to exactly a payment's time limit (offset 0: still inside;
        1: just past), where an off-by-one in `>` versus `>=` would show."""
        m = self.m
        limited = m.in_status(OPEN, CLOSED, CANCEL_OPEN)
        if not (to_boundary and limited):
            self._set_next_ts(m.next_ts + seconds)
            STATS.outcome("advance_time", "ok")
            return
        self.rule_name = "advance_time (to a payment's time limit)"
        p = self._pick(data, limited)
        offset = data.draw(st.sampled_from([0, 1]), label="offset")
        target = (p.deadline if p.status == CLOSED else m.escrow_expiry(p)) + offset
        if target >= m.latest_ts:
            self._set_next_ts(target)
            STATS.outcome(self.rule_name, f"ok (+{offset})")
        else:
            STATS.outcome(self.rule_name, "already past")

    # ================================================================ rules: settlement

    @precondition(lambda self: any(s.available or s.open_amount or s.withdrawn for s in self.m.shops))
    @rule(data=st.data(), how=st.sampled_from(["all", "all", "half", "over", "zero", "out of turn"]))
    @counted
    def withdrawal(self, data, how):
        """The next withdrawal step of a shop: the owner asks for what the shop is owed (or too much,
        or nothing), or confirms the open withdrawal arrived; "out of turn" tries the other step."""
        shops = [s for s in self.m.shops if s.available or s.open_amount or s.withdrawn]
        shop = data.draw(st.sampled_from(shops), label="shop")
        if bool(shop.open_amount) != (how == "out of turn"):
            self._close_withdrawal(shop)
        else:
            self._open_withdrawal(shop, how)

    def _open_withdrawal(self, shop: Shop, how: str) -> None:
        m, w = self.m, self.w
        self.rule_name = "open_withdrawal"
        available = shop.available
        amount = {"half": available // 2, "over": available + 1, "zero": 0}.get(how, available)
        if shop.open_amount:
            error = R("WithdrawalAlreadyOpen", shop.shop_id, shop.open_amount)
        elif amount == 0 or amount > available:
            error = R("InvalidWithdrawalAmount", shop.shop_id, amount, available)
            if shop.withdrawn > shop.settled:
                STATS.outcome("open_withdrawal", "refused: shop in debt")
        else:
            error = None
        dl, sig = self._owner_signs(shop, "OpenWithdrawal", amount=amount)
        args = (shop.shop_id, amount, dl, sig)
        if self._expect(w.shops.openWithdrawal, args, w.relay, error):
            m.use_nonce("shops", shop.owner)
            shop.open_amount = amount
            self.replayable.append(("OpenWithdrawal", args))

    def _close_withdrawal(self, shop: Shop) -> None:
        m, w = self.m, self.w
        self.rule_name = "close_withdrawal"
        error = None if shop.open_amount else R("NoOpenWithdrawal", shop.shop_id)
        dl, sig = self._owner_signs(shop, "CloseWithdrawal")
        args = (shop.shop_id, dl, sig)
        if self._expect(w.shops.closeWithdrawal, args, w.relay, error):
            m.use_nonce("shops", shop.owner)
            shop.withdrawn += shop.open_amount
            shop.open_amount = 0
            if shop.withdrawn > shop.settled:
                STATS.outcome("close_withdrawal", "closed into debt")
            self.replayable.append(("CloseWithdrawal", args))

    # ================================================================ rules: accounts and tokens

    @rule(
        u=user_index,
        action=st.sampled_from(["switch", "switch via relay", "deposit", "withdraw"]),
        how=st.sampled_from(["zero", "half", "all", "over"]),
    )
    @counted
    def token_account(self, u, action, how):
        """A user switches to tokens (itself, or through the relay with a signature), or a token
        account holder deposits from or withdraws to its own wallet."""
        self.rule_name = f"token_account ({action})"
        if action.startswith("switch"):
            self._switch_to_token(u, via_relay=action == "switch via relay", how=how)
        else:
            self._move_tokens(u, action == "deposit", how)

    def _switch_to_token(self, u, via_relay, how):
        """`how` picks the minimum the user signs: none, exactly what it gets, or one more."""
        m, w = self.m, self.w
        account = w.users[u]
        point = m.balances[account]
        tokens = m.point_to_token(point) if point else 0
        min_token = {"zero": 0, "half": tokens, "all": tokens, "over": tokens + 1}[how]
        if m.types[account] == TOKEN:
            error = R("WrongLoyaltyType", account, TOKEN)
        elif tokens < min_token:
            error = R("SwitchBelowMinimum", account, tokens, min_token)
        elif m.reserve < tokens:
            error = R("InsufficientReserve", m.reserve, tokens)
        else:
            error = None
        if via_relay:
            dl = self._deadline()
            nonce = m.nonce("ledger", account)
            message = dict(account=account, minToken=min_token, nonce=nonce, deadline=dl)
            sig = self._sign(account, "ledger", "SwitchToToken", **message)
            ok = self._expect(w.ledger.switchToTokenFor, (account, min_token, dl, sig), w.relay, error)
            if ok:
                m.use_nonce("ledger", account)
                self.replayable.append(("SwitchToToken", (account, min_token, dl, sig)))
        else:
            ok = self._expect(w.ledger.switchToToken, (min_token,), account, error)
        if ok:
            m.types[account] = TOKEN
            m.balances[account] = tokens
            m.reserve -= tokens
            m.converted_points += point

    def _move_tokens(self, u, deposit, how):
        m, w = self.m, self.w
        account = w.users[u]
        source = m.wallets[account] if deposit else m.balances[account]
        amount = {"zero": 0, "half": source // 2, "all": source, "over": source + 1}[how]
        if amount == 0:
            error = R("InvalidAmount", 0)
        elif m.types[account] != TOKEN:
            error = R("WrongLoyaltyType", account, m.types[account])
        elif amount > source:
            name = "ERC20InsufficientBalance" if deposit else "InsufficientBalance"
            error = R(name, account, source, amount)
        else:
            error = None
        method, args = (w.ledger.deposit, (account, amount)) if deposit else (w.ledger.withdraw, (amount,))
        if self._expect(method, args, account, error):
            sign = 1 if deposit else -1
            m.balances[account] += sign * amount
            m.wallets[account] -= sign * amount
            m.ledger_tokens += sign * amount

    @rule(
        what=st.sampled_from([*ADMIN_TOKEN_ACTIONS, *ADMIN_SETTINGS, *ADMIN_BOUNDS, *ADMIN_BOUNDS]),
        data=st.data(),
    )
    @counted
    def admin(self, what, data):
        """The admin's token movements, settings and bounds, and the rate setter's rates (and a
        plain ERC-20 transfer into the ledger)."""
        if what in ADMIN_SETTINGS:
            self._admin_settings(what, data)
        elif what in ADMIN_BOUNDS:
            self._admin_bounds(what, data)
        else:
            self._admin_tokens(what, data)

    def _admin_tokens(self, what, data):
        """The admin's token movements, and a plain ERC-20 transfer into the ledger."""
        m, w = self.m, self.w
        self.rule_name = f"admin ({what})"
        if what in ("withdraw fees", "withdraw reserve"):
            held = self._fees(TOKEN) if what == "withdraw fees" else m.reserve
            amount = data.draw(st.sampled_from([0, held // 3, held, held, held + 1]), label="amount")
            if amount == 0:
                error = R("InvalidAmount", 0)
            elif amount > held:
                error = R("InsufficientFees" if what == "withdraw fees" else "InsufficientReserve", held, amount)
            else:
                error = None
            method = w.ledger.withdrawFees if what == "withdraw fees" else w.ledger.withdrawReserve
            if self._expect(method, (w.treasury, amount), w.admin, error):
                m.ledger_tokens -= amount
                if what == "withdraw fees":
                    m.fees_withdrawn += amount
                else:
                    m.reserve -= amount
        else:
            amount = data.draw(st.integers(1, 100_000 * UNIT), label="amount")
            if what == "donate":
                self._expect(w.token.transfer, (w.ledger.address, amount), w.admin, None)
                m.donated += amount
            else:
                self._expect(w.ledger.fundReserve, (amount,), w.admin, None)
                m.reserve += amount
            m.ledger_tokens += amount

    def _admin_settings(self, what, data):
        m, w = self.m, self.w
        self.rule_name = f"admin ({what})"
        if what == "fee rate":
            value = data.draw(st.sampled_from([0, 1, 333, 500, 1_000, 1_001]), label="value")
            error = R("InvalidSetting", value, 0, 1_000) if value > 1_000 else None
            if self._expect(w.payment.setFeeRate, (value,), w.admin, error):
                m.fee_rate = value
        elif what == "cancel period":
            value = data.draw(st.sampled_from([0, 3_600, 7 * DAY, 366 * DAY]), label="value")
            error = R("InvalidSetting", value, 0, 365 * DAY) if value > 365 * DAY else None
            if self._expect(w.payment.setCancelPeriod, (value,), w.admin, error):
                m.cancel_period = value
        else:
            value = data.draw(st.sampled_from([599, 600, DAY, 3 * DAY, 31 * DAY]), label="value")
            error = R("InvalidSetting", value, 600, 30 * DAY) if not 600 <= value <= 30 * DAY else None
            if self._expect(w.payment.setEscrowTimeout, (value,), w.admin, error):
                m.escrow_timeout = value

    def _admin_bounds(self, what, data):
        """Rates (bounded per update), the reward and grant caps, credit limits, corrections."""
        m, w = self.m, self.w
        self.rule_name = f"admin ({what})"
        if what in ("token rate", "usd rate"):
            currency = TOKEN_CURRENCY if what == "token rate" else "usd"
            per_mille = data.draw(st.sampled_from([900, 950, 1_000, 1_050, 1_100, 1_101, 500, 0]), label="change")
            value = m.rates[currency] * per_mille // 1_000
            refusal = m.rate_error(currency, value)
            if self._expect(w.rates.setRates, ([currency], [value]), w.admin, refusal and R(*refusal)):
                m.rates[currency] = value
                m.rate_updated[currency] = m.latest_ts
        elif what in ("reward cap", "grant cap"):
            value = data.draw(st.sampled_from([0, 500, 4_000, 100_000, 10**9]), label="points") * UNIT
            if data.draw(st.booleans(), label="too large"):
                value = 2**96
            setter = w.ledger.setRewardCap if what == "reward cap" else w.ledger.setGrantCap
            error = R("InvalidCap", value) if value >= 2**96 else None
            if self._expect(setter, (value,), w.admin, error):
                m.caps[what.split()[0]].limit = value
        elif what == "credit limit":
            shop = m.shops[data.draw(shop_index, label="shop")]
            value = data.draw(st.sampled_from([0, 500, 3_000, 50_000]), label="points") * UNIT
            value += data.draw(st.sampled_from([0, 0, 0, UNIT // 2]), label="fraction")
            error = R("InvalidCreditLimit", value) if value % UNIT else None
            if self._expect(w.shops.setCreditLimit, (shop.shop_id, value), w.admin, error):
                shop.credit_limit = value
        else:
            shop = m.shops[data.draw(shop_index, label="shop")]
            provided = data.draw(st.sampled_from([shop.provided, shop.provided // 2, shop.provided + 1_000 * UNIT]))
            withdrawn = data.draw(st.sampled_from([shop.withdrawn, shop.withdrawn // 2]), label="withdrawn")
            if self._expect(w.shops.correctShopTotals, (shop.shop_id, provided, withdrawn), w.admin, None):
                shop.provided, shop.withdrawn = provided, withdrawn
                self.corrected = True

    # ================================================================ rules: shop ownership

    @rule(s=shop_index, action=st.sampled_from(["transfer", "transfer", "accept", "accept", "withdraw transfer"]))
    @counted
    def shop_transfer(self, s, action):
        """The owner names the other owner key as the shop's next owner (or withdraws the transfer),
        or the named owner accepts: two steps, each signed."""
        m, w = self.m, self.w
        self.rule_name = f"shop_transfer ({action})"
        shop = m.shops[s]
        other = w.owners[1] if shop.owner == w.owners[0] else w.owners[0]
        dl = self._deadline()
        if action == "accept":
            accepter = shop.pending_owner or other
            message = dict(shopId=shop.shop_id, account=accepter, nonce=m.nonce("shops", accepter), deadline=dl)
            sig = self._sign(accepter, "shops", "AcceptShop", **message)
            error = None if shop.pending_owner else R("NoPendingTransfer", shop.shop_id)
            if self._expect(w.shops.acceptShop, (shop.shop_id, dl, sig), w.relay, error):
                m.use_nonce("shops", accepter)
                shop.owner, shop.pending_owner = accepter, None
                self.replayable.append(("AcceptShop", (shop.shop_id, dl, sig)))
            return
        new_owner = other if action == "transfer" else ZERO_ADDRESS
        nonce = m.nonce("shops", shop.owner)
        message = dict(shopId=shop.shop_id, newOwner=new_owner, account=shop.owner, nonce=nonce, deadline=dl)
        sig = self._sign(shop.owner, "shops", "TransferShop", **message)
        if self._expect(w.shops.transferShop, (shop.shop_id, new_owner, dl, sig), w.relay, None):
            m.use_nonce("shops", shop.owner)
            shop.pending_owner = new_owner if new_owner != ZERO_ADDRESS else None
            self.replayable.append(("TransferShop", (shop.shop_id, new_owner, dl, sig)))

    # ================================================================ rules: attacks (all must revert)

    @rule(data=st.data())
    @counted
    def attack(self, data):
        """Something that must revert and change nothing: a forged, replayed or misused signature,
        a reused payment id, a transition from the wrong status, a call without the role."""
        kinds = [self._forged_payment_signature, self._reused_payment_id, self._wrong_status, self._unauthorized_call]
        if self.m.in_status(CLOSED):
            kinds.append(self._forged_cancel_signature)
        if self.replayable:
            kinds.append(self._replayed_signature)
        data.draw(st.sampled_from(kinds), label="attack")(data)

    def _forged_payment_signature(self, data):
        """A NewPayment whose signature does not match: rejected before anything moves."""
        u, s = data.draw(user_index, label="user"), data.draw(shop_index, label="shop")
        forgery = data.draw(st.sampled_from(FORGERIES), label="forgery")
        m, w = self.m, self.w
        self.rule_name = f"attack: forged payment signature ({forgery})"
        account, shop = w.users[u], m.shops[s]
        pid = keccak(text=f"payment {self._next_id()}")
        amount, dl = UNIT, self._deadline()
        nonce = m.nonce("payment", account)
        loyalty_type, max_total = m.types[account], 10**30
        message = dict(
            paymentId=pid,
            purchaseId="F1",
            amount=amount,
            currency="krw",
            shopId=shop.shop_id,
            account=account,
            loyaltyType=loyalty_type,
            maxTotal=max_total,
            nonce=nonce,
            deadline=dl,
        )
        domain, key_of, primary_type = dict(self.domains["payment"]), account, "NewPayment"
        submitted = dict(amount=amount, shopId=shop.shop_id, deadline=dl, maxTotal=max_total)
        if forgery == "wrong chain id":
            domain["chainId"] += 1
        elif forgery == "wrong contract":
            domain["verifyingContract"] = w.shops.address
        elif forgery == "expired":
            message["deadline"] = submitted["deadline"] = m.next_ts - 1  # one second before the next block
        elif forgery == "used nonce":
            message["nonce"] = nonce - 1 if nonce else 2**256 - 1
        elif forgery == "future nonce":
            message["nonce"] = nonce + 1
        elif forgery == "wrong signer":
            key_of = w.users[(u + 1) % len(w.users)]
        elif forgery == "deny signed as approval":
            primary_type = "DenyPayment"
        elif forgery == "altered amount":
            submitted["amount"] = amount + 1
        elif forgery == "altered max total":
            submitted["maxTotal"] = max_total + 1
        else:
            submitted["shopId"] = m.shops[1 - s].shop_id
        sig = self._sign(key_of, domain, primary_type, **message)
        fields = (
            pid,
            "F1",
            submitted["amount"],
            "krw",
            submitted["shopId"],
            account,
            loyalty_type,
            submitted["maxTotal"],
            submitted["deadline"],
        )
        expired = forgery == "expired"
        error = R("ExpiredSignature", submitted["deadline"]) if expired else R("InvalidSignature", account)
        self._expect(w.payment.openNewPayment, (fields, sig), w.relay, error)

    def _forged_cancel_signature(self, data):
        """A CancelPayment approval that the shop owner did not sign for this payment."""
        kinds = ["deny signed as approval", "signed by the user", "other shop's owner", "expired"]
        forgery = data.draw(st.sampled_from(kinds), label="forgery")
        m, w = self.m, self.w
        self.rule_name = f"attack: forged cancel signature ({forgery})"
        p = self._pick(data, m.in_status(CLOSED))
        owner = m.shops[p.shop].owner
        not_owner = w.owners[1] if owner == w.owners[0] else w.owners[0]
        dl = m.next_ts - 1 if forgery == "expired" else self._deadline()
        if forgery == "deny signed as approval":
            sig = self._sign(owner, "payment", "DenyCancel", paymentId=p.pid, account=owner, deadline=dl)
        elif forgery == "signed by the user":
            sig = self._sign_cancel(p.account, p, dl)
        elif forgery == "other shop's owner":
            sig = self._sign_cancel(not_owner, p, dl)
        else:
            sig = self._sign_cancel(owner, p, dl)
        if m.next_ts > p.deadline:
            error = R("CancelPeriodOver", p.pid, p.deadline)
        elif forgery == "expired":
            error = R("ExpiredSignature", dl)
        else:
            error = R("InvalidSignature", owner)
        self._expect(w.payment.openCancelPayment, (p.pid, p.purchase_id, dl, sig), w.relay, error)

    def _replayed_signature(self, data):
        """An accepted signature submitted again: its nonce is spent (or its payment id taken)."""
        m, w = self.m, self.w
        kind, args = data.draw(st.sampled_from(self.replayable), label="replay")
        self.rule_name = f"attack: replayed signature ({kind})"
        if kind == "NewPayment":
            (payment_data, _sig) = args
            method, error = w.payment.openNewPayment, R("PaymentAlreadyExists", payment_data[0])
        elif kind == "CancelPayment":
            pid, _purchase, dl, _sig = args
            p = m.payments[pid]
            method = w.payment.openCancelPayment
            if p.status != CLOSED:
                error = R("InvalidPaymentStatus", pid, p.status)
            elif m.next_ts > p.deadline:
                error = R("CancelPeriodOver", pid, p.deadline)
            else:
                error = self._spent_signature_error(dl, m.shops[p.shop].owner)
        elif kind == "SwitchToToken":
            account, _min, dl, _sig = args
            method, error = w.ledger.switchToTokenFor, self._spent_signature_error(dl, account)
        elif kind == "AcceptShop":
            shop = next(shop for shop in m.shops if shop.shop_id == args[0])
            method = w.shops.acceptShop
            if shop.pending_owner is None:
                error = R("NoPendingTransfer", shop.shop_id)
            else:
                error = self._spent_signature_error(args[-2], shop.pending_owner)
        else:
            shop = next(shop for shop in m.shops if shop.shop_id == args[0])
            method = {
                "OpenWithdrawal": w.shops.openWithdrawal,
                "CloseWithdrawal": w.shops.closeWithdrawal,
                "TransferShop": w.shops.transferShop,
            }[kind]
            error = self._spent_signature_error(args[-2], shop.owner)
        self._expect(method, args, w.relay, error)

    def _spent_signature_error(self, dl: int, signer: str) -> Reverted:
        return R("ExpiredSignature", dl) if self.m.next_ts > dl else R("InvalidSignature", signer)

    def _reused_payment_id(self, data):
        """A correctly signed payment whose id is zero or already used (whatever its status)."""
        m, w = self.m, self.w
        self.rule_name = "attack: reused payment id"
        u = data.draw(user_index, label="user")
        ids = [b"\x00" * 32, *sorted(m.payments)]
        pid = data.draw(st.sampled_from(ids), label="paymentId")
        account, shop = w.users[u], m.shops[0]
        dl = self._deadline()
        message = dict(paymentId=pid, purchaseId="X", amount=UNIT, currency="krw", shopId=shop.shop_id)
        message.update(account=account, loyaltyType=m.types[account], maxTotal=10**30)
        sig = self._sign(account, "payment", "NewPayment", **message, nonce=m.nonce("payment", account), deadline=dl)
        data_ = (pid, "X", UNIT, "krw", shop.shop_id, account, m.types[account], 10**30, dl)
        self._expect(w.payment.openNewPayment, (data_, sig), w.relay, R("PaymentAlreadyExists", pid))

    def _wrong_status(self, data):
        """A transition attempted from a status it does not start from (or on an unknown id)."""
        m, w = self.m, self.w
        action = data.draw(st.sampled_from(["closeNew", "openCancel", "closeCancel", "refundExpired"]), label="action")
        allowed = {
            "closeNew": (OPEN,),
            "openCancel": (CLOSED,),
            "closeCancel": (CANCEL_OPEN,),
            "refundExpired": IN_ESCROW,
        }[action]
        candidates = [p.pid for p in m.payments.values() if p.status not in allowed]
        pid = data.draw(st.sampled_from([keccak(text="never opened"), *sorted(candidates)]), label="paymentId")
        status = m.payments[pid].status if pid in m.payments else 0
        self.rule_name = f"attack: wrong status ({action} on {STATUS_NAMES[status]})"
        error = R("InvalidPaymentStatus", pid, status)
        if action == "closeNew":
            self._expect(w.payment.closeNewPayment, (pid, data.draw(st.booleans())), w.relay, error)
        elif action == "closeCancel":
            self._expect(w.payment.closeCancelPayment, (pid, data.draw(st.booleans())), w.relay, error)
        elif action == "refundExpired":
            self._expect(w.payment.refundExpired, (pid,), w.stranger, error)
        else:
            # Signed correctly by the right owner when the payment exists: the status alone refuses it.
            owner = m.shops[m.payments[pid].shop].owner if pid in m.payments else w.owners[0]
            dl = self._deadline()
            sig = self._sign(
                owner,
                "payment",
                "CancelPayment",
                paymentId=pid,
                purchaseId="X",
                shopId=m.shops[m.payments[pid].shop].shop_id if pid in m.payments else m.shops[0].shop_id,
                account=owner,
                nonce=m.nonce("payment", owner),
                deadline=dl,
            )
            self._expect(w.payment.openCancelPayment, (pid, "X", dl, sig), w.relay, error)

    def _unauthorized_call(self, data):
        attempt = data.draw(st.sampled_from(UNAUTHORIZED_ATTEMPTS), label="attempt")
        u = data.draw(user_index, label="user")
        """What no one but the named role or contract may do (PROPERTIES.md, trust model)."""
        m, w = self.m, self.w
        self.rule_name = f"attack: unauthorized call ({attempt})"
        account, relay, stranger = w.users[u], w.relay, w.stranger
        pid = sorted(m.payments)[0] if m.payments else keccak(text="none")
        shop_id = m.shops[0].shop_id
        calls = {
            "stranger closes a payment": (w.payment.closeNewPayment, (pid, True), stranger, (stranger, RELAY_ROLE)),
            "stranger provides loyalty": (
                w.ledger.provide,
                (account, shop_id, "X", UNIT, "krw"),
                stranger,
                (stranger, PROVIDER_ROLE),
            ),
            "stranger opens a withdrawal": (
                w.shops.openWithdrawal,
                (shop_id, 1, self._deadline(), b""),
                stranger,
                (stranger, RELAY_ROLE),
            ),
            "relay moves a balance into escrow": (w.ledger.holdInEscrow, (account, POINT, 1), relay, (relay,)),
            "relay releases escrow": (w.ledger.releaseToShop, (POINT, 0, 0), relay, (relay,)),
            "relay refunds escrow": (w.ledger.refundFromEscrow, (relay, POINT, 0), relay, (relay,)),
            "relay returns a payment to escrow": (w.ledger.returnToEscrow, (POINT, 0, 0), relay, (relay,)),
            "relay records a payment for a shop": (w.shops.recordPayment, (0, UNIT), relay, (relay,)),
            "relay records a cancellation": (w.shops.recordCancellation, (0, 0), relay, (relay,)),
            "relay records a purchase reward": (w.shops.recordProvision, (shop_id, UNIT), relay, (relay,)),
            "admin moves a balance into escrow": (w.ledger.holdInEscrow, (account, POINT, 1), w.admin, (w.admin,)),
            "relay takes token fees": (w.ledger.withdrawFees, (relay, 1), relay, (relay, ADMIN_ROLE)),
            "relay takes the reserve": (w.ledger.withdrawReserve, (relay, 1), relay, (relay, ADMIN_ROLE)),
            "relay sets the fee rate": (w.payment.setFeeRate, (0,), relay, (relay, ADMIN_ROLE)),
            "relay grants loyalty": (w.ledger.grant, (account, UNIT), relay, (relay, GRANTER_ROLE)),
            "relay sets a rate": (w.rates.setRates, (["usd"], [UNIT]), relay, (relay, RATE_SETTER_ROLE)),
            "relay raises the reward cap": (w.ledger.setRewardCap, (2**95,), relay, (relay, ADMIN_ROLE)),
            "relay raises a credit limit": (
                w.shops.setCreditLimit,
                (shop_id, 10**6 * UNIT),
                relay,
                (relay, ADMIN_ROLE),
            ),
            "relay corrects shop totals": (w.shops.correctShopTotals, (shop_id, 0, 0), relay, (relay, ADMIN_ROLE)),
            "admin grants the admin role in one step": (w.payment.grantRole, (ADMIN_ROLE, relay), w.admin, ()),
        }
        if attempt in calls:
            method, args, sender, error_args = calls[attempt]
            names = {0: "AccessControlEnforcedDefaultAdminRules", 1: "UnauthorizedCaller"}
            name = names.get(len(error_args), "AccessControlUnauthorizedAccount")
            self._expect(method, args, sender, R(name, *error_args))
        elif attempt == "user switches another account":
            # A SwitchToToken signed by `account` for another account: only that account's key counts.
            victim = w.users[(u + 1) % len(w.users)]
            dl = self._deadline()
            sig = self._sign(
                account,
                "ledger",
                "SwitchToToken",
                account=victim,
                minToken=0,
                nonce=m.nonce("ledger", victim),
                deadline=dl,
            )
            self._expect(w.ledger.switchToTokenFor, (victim, 0, dl, sig), relay, R("InvalidSignature", victim))
        else:
            self._expect(
                w.ledger.provide, (account, UNKNOWN_SHOP, "X", UNIT, "krw"), relay, R("UnknownShop", UNKNOWN_SHOP)
            )

    # ================================================================ invariants

    def _fetch(self) -> View:
        w, m = self.w, self.m
        calls, decoders = [], []

        def add(method, *args):
            calls.append(method.request(*args))
            decoders.append(method.decode)

        for u in w.users:
            add(w.ledger.accountOf, u)
        for u in w.users:
            add(w.token.balanceOf, u)
        for t in (POINT, TOKEN):
            add(w.ledger.escrowOf, t)
        for t in (POINT, TOKEN):
            add(w.ledger.feesOf, t)
        add(w.ledger.reserve)
        add(w.token.balanceOf, w.ledger.address)
        for shop in m.shops:
            add(w.shops.shopOf, shop.shop_id)
        pids = sorted(m.payments)
        for pid in pids:
            add(w.payment.paymentOf, pid)
        signers = [("payment", a) for a in [*w.users, *w.owners]]
        signers += [("shops", o) for o in w.owners] + [("ledger", u) for u in w.users]
        for contract, signer in signers:
            add(getattr(w, contract).nonces, signer)
        add(w.payment.feeRate)
        add(w.payment.cancelPeriod)
        add(w.payment.escrowTimeout)
        for currency in (TOKEN_CURRENCY, "usd"):
            add(w.rates.rateOf, currency)
            add(w.rates.rateUpdatedAt, currency)
        add(w.ledger.rewardCap)
        add(w.ledger.grantCap)
        calls.append(("eth_getBlockByNumber", ["latest", False]))
        decoders.append(lambda block: int(block["timestamp"], 16))

        values = iter([decode(result) for decode, result in zip(decoders, w.rpc.batch(calls), strict=True)])
        take = lambda n: [next(values) for _ in range(n)]  # noqa: E731
        return View(
            accounts=dict(zip(w.users, take(len(w.users)), strict=True)),
            wallets=dict(zip(w.users, take(len(w.users)), strict=True)),
            escrow=tuple(take(2)),
            fees=tuple(take(2)),
            reserve=next(values),
            ledger_tokens=next(values),
            shops=take(len(m.shops)),
            payments=dict(zip(pids, take(len(pids)), strict=True)),
            nonces=dict(zip(signers, take(len(signers)), strict=True)),
            settings=tuple(take(3)),
            rates={c: tuple(take(2)) for c in (TOKEN_CURRENCY, "usd")},
            caps={"reward": tuple(next(values)), "grant": tuple(next(values))},
            ts=next(values),
        )

    @property
    def view(self) -> View:
        """The chain as of this step, fetched once per step; the previous step's stays in `prev`."""
        if self._view_step != self.steps:
            self.prev, self._view = self._view, self._fetch()
            self._view_step = self.steps
        return self._view

    @invariant()
    def p01_points_conserved(self):
        v, m = self.view, self.m
        held = sum(balance for t, balance in v.accounts.values() if t == POINT)
        redeemed = sum(p.paid for p in v.payments.values() if p.loyaltyType == POINT and p.status == CLOSED)
        assert held + v.escrow[POINT] + v.fees[POINT] + redeemed + m.converted_points == m.created_points, (
            f"P1: held {held} + escrow {v.escrow[POINT]} + fees {v.fees[POINT]} + redeemed {redeemed} "
            f"+ converted {m.converted_points} != created {m.created_points}"
        )

    @invariant()
    def p02_tokens_conserved(self):
        v, m = self.view, self.m
        held = sum(balance for t, balance in v.accounts.values() if t == TOKEN)
        accounted = held + v.escrow[TOKEN] + v.fees[TOKEN] + v.reserve
        assert v.ledger_tokens >= accounted, f"P2: ledger holds {v.ledger_tokens} < accounted {accounted}"
        assert v.ledger_tokens == accounted + m.donated, f"P2: {v.ledger_tokens} != {accounted} + donated {m.donated}"
        assert v.ledger_tokens == m.ledger_tokens, "P2: the ledger's token balance differs from the model"
        assert v.wallets == m.wallets, "P2: users' wallets differ from the model"

    @invariant()
    def p03_escrow_equals_payments_in_escrow(self):
        v = self.view
        for t in (POINT, TOKEN):
            held = sum(p.paid + p.fee for p in v.payments.values() if p.loyaltyType == t and p.status in IN_ESCROW)
            assert v.escrow[t] == held, f"P3: escrow[{t}] {v.escrow[t]} != payments in escrow {held}"

    @invariant()
    def p04_fee_account(self):
        v, m = self.view, self.m
        for t in (POINT, TOKEN):
            collected = sum(p.fee for p in v.payments.values() if p.loyaltyType == t and p.status == CLOSED)
            withdrawn = m.fees_withdrawn if t == TOKEN else 0
            assert v.fees[t] == collected - withdrawn, f"P4: fees[{t}] {v.fees[t]} != {collected} - {withdrawn}"
            assert self._fees(t) == v.fees[t]

    @invariant()
    def p05_payment_states_one_way(self):
        v, prev = self.view, self.prev
        for pid, p in v.payments.items():
            model = self.m.payments[pid]
            expected = (
                model.account,
                model.shop,
                model.loyalty_type,
                model.status,
                model.paid,
                model.fee,
                model.shop_point,
                model.fee_rate,
                model.deadline,
            )
            got = (
                p.account,
                self.w.shop_ids.index(p.shopId),
                p.loyaltyType,
                p.status,
                p.paid,
                p.fee,
                p.shopPoint,
                p.feeRate,
                p.deadline,
            )
            assert got == expected, f"P5: payment {pid.hex()} is {got}, the model expects {expected}"
            before = prev.payments.get(pid) if prev else None
            if before is None or before.status == p.status:
                continue
            assert (before.status, p.status) in TRANSITIONS, f"P5: {pid.hex()} went {before.status} -> {p.status}"
            assert before.status not in TERMINAL
            # Everything but status and deadline is fixed when the payment opens.
            fixed = ("account", "shopId", "loyaltyType", "paid", "fee", "shopPoint", "feeRate")
            assert all(getattr(before, f) == getattr(p, f) for f in fixed), f"P5: {pid.hex()} changed"
            if not (before.status == OPEN and p.status == CLOSED):
                assert before.deadline == p.deadline, f"P5: {pid.hex()} deadline moved"

    @invariant()
    def p06_shop_totals(self):
        v, prev = self.view, self.prev
        for i, (shop, model) in enumerate(zip(v.shops, self.m.shops, strict=True)):
            used = sum(p.shopPoint for p in v.payments.values() if p.status == CLOSED and p.shopId == shop.shopId)
            assert shop.usedPoint == used, f"P6: shop {i} used {shop.usedPoint} != completed payments {used}"
            assert shop.settledPoint == max(0, shop.usedPoint - shop.providedPoint), f"P6: shop {i} settled"
            totals = (shop.providedPoint, shop.usedPoint, shop.withdrawnPoint)
            assert totals == (model.provided, model.used, model.withdrawn), f"P6: shop {i} totals {totals}"
            if prev and not self.corrected:  # only the admin's correction, with its event, moves them back
                before = prev.shops[i]
                assert shop.providedPoint >= before.providedPoint, f"P6: shop {i} provided decreased"
                assert shop.withdrawnPoint >= before.withdrawnPoint, f"P6: shop {i} withdrawn decreased"
                if shop.withdrawnPoint != before.withdrawnPoint:
                    assert shop.withdrawnPoint == before.withdrawnPoint + before.withdrawAmount
                    assert shop.withdrawAmount == 0, f"P6: shop {i} withdrawal closed but still open"

    @invariant()
    def p16_operator_exposure_bounded(self):
        """No step but the admin's own raises a shop's debt (what it provided and withdrew beyond what
        its customers spent) above its credit limit: the operator's exposure to withdraw-then-cancel
        and to unearned rewards is bounded on chain."""
        v, prev = self.view, self.prev
        for i, (shop, model) in enumerate(zip(v.shops, self.m.shops, strict=True)):
            debt = max(0, shop.providedPoint + shop.withdrawnPoint + shop.withdrawAmount - shop.usedPoint)
            assert debt == model.debt(), f"P16: shop {i} debt {debt} != model {model.debt()}"
            assert shop.creditLimit == model.credit_limit, f"P16: shop {i} credit limit"
            if prev is None or self.corrected:
                continue
            b = prev.shops[i]
            debt_before = max(0, b.providedPoint + b.withdrawnPoint + b.withdrawAmount - b.usedPoint)
            if debt > debt_before:
                assert debt <= shop.creditLimit, f"P16: shop {i} debt rose to {debt} > limit {shop.creditLimit}"

    @invariant()
    def p17_caps_bounded(self):
        """What rewards and grants created in the current day is within the day's cap."""
        v, m = self.view, self.m
        for kind in ("reward", "grant"):
            cap = m.caps[kind]
            assert v.caps[kind] == (cap.limit, cap.remaining(v.ts)), f"P17: {kind} cap {v.caps[kind]}"

    @invariant()
    def p15_rebuilt_from_events(self):
        """Every balance, escrow, fee account, the reserve and every shop total, rebuilt from the
        contracts' events alone, equals the contracts' state."""
        v, r = self.view, self.rebuilt
        for account, (t, balance) in v.accounts.items():
            assert (r.types.get(account, POINT), r.balances.get(account, 0)) == (t, balance), f"P15: {account}"
        assert tuple(r.escrow) == v.escrow, f"P15: escrow {r.escrow} != {v.escrow}"
        assert tuple(r.fees) == v.fees, f"P15: fees {r.fees} != {v.fees}"
        assert r.reserve == v.reserve, f"P15: reserve {r.reserve} != {v.reserve}"
        for shop in v.shops:
            totals = [shop.providedPoint, shop.usedPoint, shop.withdrawnPoint, shop.withdrawAmount]
            assert r.shops[shop.shopId] == totals, f"P15: shop {shop.shopId.hex()} {r.shops[shop.shopId]} != {totals}"

    @invariant()
    def p07_one_withdrawal_at_a_time(self):
        v, prev = self.view, self.prev
        for i, (shop, model) in enumerate(zip(v.shops, self.m.shops, strict=True)):
            assert shop.withdrawOpen == (shop.withdrawAmount != 0), f"P7: shop {i} open flag"
            assert shop.withdrawAmount == model.open_amount, f"P7: shop {i} open amount"
            if prev and shop.withdrawAmount and not prev.shops[i].withdrawAmount:
                before = prev.shops[i]
                available = max(0, before.settledPoint - before.withdrawnPoint)
                assert shop.withdrawAmount <= available, f"P7: shop {i} opened {shop.withdrawAmount} > {available}"
            if prev and prev.shops[i].withdrawAmount and shop.withdrawAmount:
                assert shop.withdrawAmount == prev.shops[i].withdrawAmount, f"P7: shop {i} replaced an open withdrawal"

    @invariant()
    def p08_nonces_consumed_once(self):
        v, prev = self.view, self.prev
        for key, nonce in v.nonces.items():
            assert nonce == self.m.nonce(*key), f"P8: nonce of {key} is {nonce}, model {self.m.nonce(*key)}"
            if prev:
                assert nonce - prev.nonces[key] in (0, 1), f"P8: nonce of {key} jumped"

    @invariant()
    def p11_loyalty_type_one_way(self):
        v, prev = self.view, self.prev
        for account, (t, _balance) in v.accounts.items():
            assert t == self.m.types[account], f"P11: {account} has type {t}"
            if prev:
                assert (prev.accounts[account][0], t) != (TOKEN, POINT), f"P11: {account} switched back"

    @invariant()
    def p12_balances_match_model(self):
        v, m = self.view, self.m
        balances = {account: balance for account, (_t, balance) in v.accounts.items()}
        assert balances == m.balances, f"P12: balances {balances} != model {m.balances}"
        assert v.reserve == m.reserve, f"P12: reserve {v.reserve} != model {m.reserve}"
        assert v.settings == (m.fee_rate, m.cancel_period, m.escrow_timeout), "P12: settings"
        for currency, (rate, updated) in v.rates.items():
            assert (rate, updated) == (m.rates[currency], m.rate_updated[currency]), f"P12: {currency} rate"
        owners = [(shop.account, shop.pendingOwner) for shop in v.shops]
        expected = [(s.owner, s.pending_owner or ZERO_ADDRESS) for s in m.shops]
        assert owners == expected, f"P12: shop owners {owners} != {expected}"
        assert v.ts == m.latest_ts, f"P12: latest block time {v.ts} != model {m.latest_ts}"


def test_stateful__random_sequences__keep_every_invariant(world, stats):
    """PROPERTIES.md P1-P14: every invariant after every step of random operation sequences."""
    current = settings()
    extra = {}
    if (
        settings.get_current_profile_name() == "long"
        and "_min_steps" in signature(run_state_machine_as_test).parameters
    ):
        # Hypothesis ends some sequences early by design (so that it can shrink their length); the
        # long run is a search, and runs every sequence to its full length.
        extra["_min_steps"] = current.stateful_step_count - 1
    run_state_machine_as_test(lambda: LoyaltyMachine(world), settings=current, **extra)
    if settings.get_current_profile_name() in ("default", "medium", "long"):
        short = {key: STATS.outcomes[key] for key, least in REQUIRED.items() if STATS.outcomes[key] < least}
        assert not short, f"the run reached these outcomes fewer times than required ({REQUIRED}): {short}"
