"""Hypothesis profiles, the property tests' own deployment, and the run counters.

Profiles (select with HYPOTHESIS_PROFILE): `default` runs in `make test` (about two minutes,
derandomized so every run takes the same paths, and checked to reach every rule a minimum number of
times); `medium` takes a few minutes; `long` (`make properties`) runs >= 1,000 random sequences of
50 steps.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from ape import chain
from hypothesis import HealthCheck, settings

from scripts._system import UNIT, deploy_system
from tests.properties._events import EventDecoder, Rebuilt
from tests.properties._rpc import Contract, Rpc
from tests.utils.signing import deadline, sign

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("default", max_examples=200, stateful_step_count=50, derandomize=True, **_COMMON)
settings.register_profile("medium", max_examples=100, stateful_step_count=50, **_COMMON)
settings.register_profile("long", max_examples=1_000, stateful_step_count=50, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# What the deployment sets up before any sequence starts (the model starts from the same numbers).
RESERVE = 1_000_000 * UNIT  # tokens in the foundation reserve
WALLET = 20_000 * UNIT  # tokens in each user's own wallet, for deposits
TOKEN_USER_DEPOSIT = 500 * UNIT  # the last user starts as a token account with this balance
STARTING_POINTS = 30_000 * UNIT  # granted to each of the other users
SHOP_PERCENTS = (100, 2_500)  # purchase rewards of 1 % and 25 %
CREDIT_LIMITS = (5_000 * UNIT, 3_000 * UNIT)  # each shop's credit limit
REWARD_CAP = 2_000 * UNIT  # purchase rewards per day
GRANT_CAP = 60_000 * UNIT  # grants per day
DAY = 86_400


# ---------------------------------------------------------------- run counters


@dataclass
class Stats:
    sequences: int = 0
    steps: int = 0
    seconds: float = 0.0
    lengths: Counter = field(default_factory=Counter)  # steps per sequence -> sequences
    outcomes: Counter = field(default_factory=Counter)

    def outcome(self, rule: str, result: str) -> None:
        self.outcomes[f"{rule}: {result}"] += 1


STATS = Stats()


def pytest_terminal_summary(terminalreporter) -> None:
    if not STATS.sequences:
        return
    write = terminalreporter.write_line
    profile = settings.get_current_profile_name()
    rate = STATS.steps / STATS.seconds if STATS.seconds else 0.0
    terminalreporter.section(f"property runs (Hypothesis profile '{profile}')")
    full = settings().stateful_step_count
    write(
        f"{STATS.sequences} sequences, {STATS.steps} steps, {STATS.seconds:.1f} s "
        f"({rate:.1f} steps/s, invariants checked after every step)"
    )
    write(
        f"{STATS.lengths[full]} sequences ran all {full} steps; "
        f"steps per sequence: {dict(sorted(STATS.lengths.items()))}"
    )
    write("outcomes per rule (ok = the transaction succeeded; otherwise the expected revert):")
    for key in sorted(STATS.outcomes):
        write(f"  {key:<58} {STATS.outcomes[key]:>8}")


# ---------------------------------------------------------------- the system under test


@dataclass
class World:
    """A system deployed for the property tests alone, so the model knows every account in it."""

    rpc: Rpc
    token: Contract
    rates: Contract
    shops: Contract
    ledger: Contract
    payment: Contract
    chain_id: int
    admin: str
    relay: str
    stranger: str
    treasury: str
    users: list[str]
    owners: list[str]
    keys: dict[str, str]
    shop_ids: list[bytes]
    token_users: list[str]
    decoder: EventDecoder
    rebuilt: Rebuilt  # the state rebuilt from every event up to the start of each sequence


@pytest.fixture(scope="module")
def world(accounts, admin, relay):
    owners = [accounts[2], accounts[7]]
    users = [accounts[3], accounts[4], accounts[5], accounts[6]]
    stranger, treasury = accounts[9], accounts[8]
    # The set-up runs at the same time of day, one second per block, whatever ran before it in the
    # session: the derandomized sequences then take the same paths in any test order (a rate set
    # within the hour before the sequences start would otherwise make their first update too soon).
    chain.pending_timestamp = (chain.pending_timestamp // DAY + 1) * DAY
    chain.provider.make_request("anvil_setBlockTimestampInterval", [1])
    start_block = chain.blocks.head.number
    system = deploy_system(admin, [relay])
    token, ledger, shops = system.token, system.ledger, system.shops

    token.approve(ledger, 2**256 - 1, sender=admin)
    ledger.fundReserve(RESERVE, sender=admin)
    for u in users:
        token.transfer(u, WALLET, sender=admin)
        token.approve(ledger, 2**256 - 1, sender=u)
    shop_ids = []
    for i, (owner, percent) in enumerate(zip(owners, SHOP_PERCENTS, strict=True)):
        shop_id = bytes([i + 1]) * 32
        dl = deadline()
        fields = dict(shopId=shop_id, name=f"Shop {i}", provideWaitTime=0, providePercent=percent)
        sig = sign(owner, shops, "AddShop", **fields, account=owner.address, nonce=0, deadline=dl)
        shops.addShop(shop_id, f"Shop {i}", 0, percent, owner, dl, sig, sender=relay)
        shop_ids.append(shop_id)
    token_user = users[-1]
    for u in users[:-1]:
        ledger.grant(u, STARTING_POINTS, sender=admin)
    ledger.switchToToken(0, sender=token_user)
    ledger.deposit(token_user, TOKEN_USER_DEPOSIT, sender=token_user)
    for shop_id, limit in zip(shop_ids, CREDIT_LIMITS, strict=True):
        shops.setCreditLimit(shop_id, limit, sender=admin)
    ledger.setRewardCap(REWARD_CAP, sender=admin)
    ledger.setGrantCap(GRANT_CAP, sender=admin)
    chain.provider.make_request("anvil_removeBlockTimestampInterval", [])
    # Sequences start on a new UTC day: nothing of it is used by the set-up's grants.
    chain.pending_timestamp = (chain.pending_timestamp // DAY + 1) * DAY
    chain.mine()

    rpc = Rpc(chain.provider.uri)
    decoder = EventDecoder(list(system.contracts().values()))
    rebuilt = Rebuilt()
    logs = rpc.request(
        "eth_getLogs", [{"fromBlock": hex(start_block), "toBlock": "latest", "address": decoder.addresses}]
    )
    for log in logs:
        if (event := decoder.decode(log)) is not None:
            rebuilt.apply(*event)
    return World(
        rpc=rpc,
        token=Contract(rpc, token),
        rates=Contract(rpc, system.rates),
        shops=Contract(rpc, shops),
        ledger=Contract(rpc, ledger),
        payment=Contract(rpc, system.payment),
        chain_id=chain.chain_id,
        admin=admin.address,
        relay=relay.address,
        stranger=stranger.address,
        treasury=treasury.address,
        users=[u.address for u in users],
        owners=[o.address for o in owners],
        keys={a.address: a.private_key for a in [*users, *owners, stranger]},
        shop_ids=shop_ids,
        token_users=[token_user.address],
        decoder=decoder,
        rebuilt=rebuilt,
    )


@pytest.fixture
def stats():
    start = time.perf_counter()
    yield STATS
    STATS.seconds += time.perf_counter() - start
