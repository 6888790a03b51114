"""Shop onboarding as the relay asks for it: the owner's first registration of a shop waits for the
operator's approval; the operator approves it (here, as `loyalty shop approve` does); the owner
sends it again and it is sent."""

from __future__ import annotations

from typing import Any

import pytest

from loyalty_sdk import AppClient, LoyaltyError, models
from relay.services import shops

PENDING = 3012


def approve(relay: Any, shop_id: str) -> None:
    """The operator's approval of the pending registration of `shop_id` on `relay`'s database."""
    db = relay.db()
    try:
        with db.session() as session:
            assert shops.decide(session, shop_id, True, "test operator"), f"no pending registration of {shop_id}"
    finally:
        db.engine.dispose()


def add_approved_shop(relay: Any, owner: AppClient, shop_id: str, *settings: Any) -> models.ShopTx:
    """Registers a shop through `relay` as its owner: asked, approved by the operator, sent again."""
    with pytest.raises(LoyaltyError) as pending:
        owner.add_shop(shop_id, *settings)
    assert pending.value.code == PENDING, pending.value.message
    approve(relay, shop_id)
    return owner.add_shop(shop_id, *settings)
