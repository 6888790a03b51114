"""The state machine's model: what the chain should hold after each step, computed independently
of the contracts (integer arithmetic as in the contracts' NatSpec, rounding down)."""

from __future__ import annotations

from dataclasses import dataclass, field

UNIT = 10**18
POINT, TOKEN = 0, 1
NONE, OPEN, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED = range(6)
STATUS_NAMES = ("None", "Open", "Closed", "Refunded", "CancelOpen", "Cancelled")
IN_ESCROW = (OPEN, CANCEL_OPEN)
TERMINAL = (REFUNDED, CANCELLED)
# ILoyaltyPayment's docstring: every allowed change of a payment's status.
TRANSITIONS = {
    (NONE, OPEN),  # openNewPayment
    (OPEN, CLOSED),  # closeNewPayment(confirm)
    (OPEN, REFUNDED),  # closeNewPayment(refuse), refundExpired
    (CLOSED, CANCEL_OPEN),  # openCancelPayment
    (CANCEL_OPEN, CANCELLED),  # closeCancelPayment(confirm), refundExpired
    (CANCEL_OPEN, CLOSED),  # closeCancelPayment(refuse)
}
FEE_DENOMINATOR = 10_000
PERCENT_DENOMINATOR = 10_000
TOKEN_CURRENCY = "the9"
DAY = 86_400
RATE_UPDATE_INTERVAL = 3_600
MAX_RATE_CHANGE = 1_000  # basis points


@dataclass
class Payment:
    pid: bytes
    purchase_id: str
    account: str
    shop: int
    loyalty_type: int
    paid: int
    fee: int
    shop_point: int
    fee_rate: int
    deadline: int
    status: int = OPEN

    @property
    def total(self) -> int:
        return self.paid + self.fee


@dataclass
class Shop:
    shop_id: bytes
    owner: str
    percent: int
    credit_limit: int
    provided: int = 0
    used: int = 0
    withdrawn: int = 0
    open_amount: int = 0  # non-zero while a withdrawal is open
    pending_owner: str | None = None

    @property
    def settled(self) -> int:
        return max(0, self.used - self.provided)

    @property
    def available(self) -> int:
        return max(0, self.settled - self.withdrawn)

    def debt(self, provided: int | None = None, used: int | None = None) -> int:
        """What the shop owes the operator (IShopRegistry): provided, withdrawn and open withdrawals
        beyond what its customers spent; optionally with another provided or used total."""
        owed = (self.provided if provided is None else provided) + self.withdrawn + self.open_amount
        return max(0, owed - (self.used if used is None else used))


@dataclass
class Cap:
    """Ledger's per-day cap: the limit and what the window `window` (day number) has used."""

    limit: int
    used: int = 0
    window: int = -1

    def remaining(self, ts: int) -> int:
        used = self.used if self.window == ts // DAY else 0
        return max(0, self.limit - used)

    def use(self, ts: int, amount: int) -> None:
        self.used = (self.used if self.window == ts // DAY else 0) + amount
        self.window = ts // DAY


@dataclass
class Model:
    """Ghost state. Balances are in each account's loyalty type; `created_points` and
    `converted_points` are the ghost counters of the points conservation law (PROPERTIES.md P1)."""

    latest_ts: int
    rates: dict[str, int]
    fee_rate: int
    cancel_period: int
    escrow_timeout: int
    rate_updated: dict[str, int]  # when each currency's rate was last set
    caps: dict[str, Cap]  # "reward" and "grant"
    types: dict[str, int]
    balances: dict[str, int]
    wallets: dict[str, int]  # users' own ERC-20 balances
    reserve: int
    ledger_tokens: int  # expected token.balanceOf(ledger)
    shops: list[Shop]
    next_ts: int = 0
    donated: int = 0  # tokens sent straight to the ledger, outside its accounting
    created_points: int = 0
    converted_points: int = 0
    fees_withdrawn: int = 0  # token fees taken out by the admin
    payments: dict[bytes, Payment] = field(default_factory=dict)
    nonces: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_ts = self.latest_ts + 1

    # ---------------------------------------------------------------- time

    def mined(self) -> int:
        """A transaction was mined in the next block (anvil runs with a 1 s block interval)."""
        self.latest_ts = self.next_ts
        self.next_ts = self.latest_ts + 1
        return self.latest_ts

    # ---------------------------------------------------------------- rates (CurrencyRate)

    def rate(self, currency: str) -> int | None:
        return UNIT if currency == "point" else self.rates.get(currency)

    def rate_error(self, currency: str, value: int) -> tuple | None:
        """CurrencyRate._setRate's refusal of `value` at the next block, as (error, *args), or None."""
        current = self.rates[currency]
        next_update = self.rate_updated[currency] + RATE_UPDATE_INTERVAL
        if value == 0 or value >= 2**192:
            return ("InvalidRate", currency)
        if self.next_ts < next_update:
            return ("RateUpdateTooSoon", currency, next_update)
        if abs(value - current) * 10_000 > current * MAX_RATE_CHANGE:
            return ("RateChangeTooLarge", currency, current, value)
        return None

    def to_point(self, amount: int, currency: str) -> int:
        return amount * self.rate(currency) // UNIT

    def to_token(self, amount: int, currency: str) -> int:
        if currency == TOKEN_CURRENCY:
            return amount
        return amount * self.rate(currency) // self.rates[TOKEN_CURRENCY]

    def point_to_token(self, points: int) -> int:
        return points * UNIT // self.rates[TOKEN_CURRENCY]

    def quote(self, loyalty_type: int, amount: int, currency: str) -> tuple[int, int, int]:
        """(paid, fee, shopPoint) as LoyaltyPayment._quote computes them."""
        shop_point = self.to_point(amount, currency)
        paid = shop_point if loyalty_type == POINT else self.to_token(amount, currency)
        return paid, paid * self.fee_rate // FEE_DENOMINATOR, shop_point

    # ---------------------------------------------------------------- queries

    def nonce(self, contract: str, signer: str) -> int:
        return self.nonces.get((contract, signer), 0)

    def use_nonce(self, contract: str, signer: str) -> None:
        self.nonces[(contract, signer)] = self.nonce(contract, signer) + 1

    def in_status(self, *statuses: int) -> list[Payment]:
        return [p for p in self.payments.values() if p.status in statuses]

    def escrow_expiry(self, p: Payment) -> int:
        """When refundExpired starts to accept the payment (exclusive bound)."""
        return p.deadline if p.status == OPEN else p.deadline + self.escrow_timeout
