"""Every operation stays within its gas budget (see GAS.md and scripts/_gas.py)."""

import pytest

from scripts._gas import BUDGETS, measure


@pytest.fixture
def measured(system, relay, shop_owner, user):
    return measure(system, relay, shop_owner, user)


def test_gas__every_operation__within_budget(measured):
    over = {op: (gas, BUDGETS[op]) for op, gas in measured.items() if gas > BUDGETS[op]}
    assert set(measured) == set(BUDGETS)
    assert not over, f"over budget (used, budget): {over}"
