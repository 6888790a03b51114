"""Two relay instances sharing one PostgreSQL database: background work (timeouts, refunds of
unclosed payments, callbacks) is done once, whichever instance gets there first."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from relay.models import Callback, Payment
from relay.models import PaymentStatus as S
from tests.relay.conftest import SIGNERS, UNIT, in_process, wait_until


@pytest.fixture(scope="module")
def pair(start_relay, new_database):
    db_url = new_database("postgresql")
    settings = {"payment_timeout": 2, "close_timeout": 3}
    first = start_relay("instance-a", signer=SIGNERS["timeouts"], db_url=db_url, **settings)
    second = start_relay("instance-b", signer=SIGNERS["spare"], db_url=db_url, **settings)
    yield first, second
    first.stop()
    second.stop()


def test_two_instances__timeouts_and_refunds_of_unclosed_payments__happen_once(
    pair, make_kiosk, new_wallet, shop_id, callbacks
):
    first, second = pair
    kiosk = make_kiosk(first, [shop_id])
    undecided = kiosk.client.open_new(
        f"U-{secrets.token_hex(4)}", 10 * UNIT, "krw", shop_id, new_wallet(first, 100 * UNIT).address
    )
    wallet = new_wallet(second, 100 * UNIT)
    unclosed = kiosk.client.open_new(f"C-{secrets.token_hex(4)}", 10 * UNIT, "krw", shop_id, wallet.address)
    wallet.approve(unclosed.paymentId)  # through the other instance; nobody closes it

    db = first.db()

    def final() -> bool:
        with db.session() as session:
            a, b = session.get(Payment, undecided.paymentId), session.get(Payment, unclosed.paymentId)
            return a.status == S.TIMEOUT and b.status == S.REFUNDED and b.chain_op is None

    wait_until(final, timeout=60)
    with db.session() as session:
        codes = sorted(
            (payment_id == unclosed.paymentId, type_, code)
            for payment_id, type_, code in session.execute(
                select(Callback.payment_id, Callback.type, Callback.code).where(
                    Callback.payment_id.in_([undecided.paymentId, unclosed.paymentId])
                )
            )
        )
    # One timeout for the undecided payment; for the unclosed one its approval and one timeout.
    assert codes == [(False, "create", 2000), (True, "create", 0), (True, "create", 2000)]
    assert int(kiosk.client.balance(wallet.address).balance) == 100 * UNIT
    deliveries = wait_until(
        lambda: len(callbacks.for_payment(unclosed.paymentId)) >= 2 and callbacks.for_payment(unclosed.paymentId)
    )
    assert len({d.id for d in deliveries}) == len(deliveries) == 2


def test_claim__payment_already_claimed_by_another_instance__not_claimed_again(
    pair, make_kiosk, new_wallet, shop_id, anvil, deployment
):
    """The race of two instances' timeout workers, made deterministic: between selecting an
    unclosed payment and claiming it, the other instance claims it first."""
    from sqlalchemy import func, update

    from relay.models import ChainOp
    from relay.services.timeouts import Timeouts

    first, _ = pair
    kiosk = make_kiosk(first, [shop_id])
    wallet = new_wallet(first, 100 * UNIT)
    opened = kiosk.client.open_new(f"R-{secrets.token_hex(4)}", 10 * UNIT, "krw", shop_id, wallet.address)
    wallet.approve(opened.paymentId)
    db = first.db()
    with db.session() as session:  # what the other instance's claim leaves behind
        session.execute(update(Payment).where(Payment.payment_id == opened.paymentId).values(chain_op=ChainOp.REFUND))
        before = session.execute(select(func.count()).select_from(Callback)).scalar_one()
    with in_process(first, anvil, deployment, None) as local:
        with db.session() as session:
            stale = session.get(Payment, opened.paymentId)
        stale.chain_op = None  # as the first instance read it, before the other claimed its refund
        assert Timeouts(local.db, local.ops.settings, local.ops)._close_unclosed(stale) == 0

    with db.session() as session:
        assert session.execute(select(func.count()).select_from(Callback)).scalar_one() == before
        assert session.get(Payment, opened.paymentId).chain_op == ChainOp.REFUND


def test_indexer__two_instances_take_their_first_step_together__no_duplicate_cursor(new_database, anvil, deployment):
    """Instances started together both find no indexer cursor: while one has inserted it (not yet
    committed), the other must wait and go on, not fail with a duplicate key."""
    import threading

    from relay import db as database
    from relay.chain import Chain
    from relay.models import IndexerCursor
    from relay.services.indexer import CURSOR, Indexer

    url = new_database("postgresql")
    database.upgrade(url)
    db = database.Database(url)
    inserted, release = threading.Event(), threading.Event()

    def first_instance() -> None:
        with db.session() as session:
            session.add(IndexerCursor(name=CURSOR, next_block=0))
            session.flush()
            inserted.set()
            release.wait(10)

    try:
        other = threading.Thread(target=first_instance)
        other.start()
        assert inserted.wait(10)
        threading.Timer(1.0, release.set).start()  # the first instance commits a moment later
        indexer = Indexer(db, Chain(anvil, deployment["path"], [], 5), start_block=0, confirmations=0)

        assert indexer.run_once() >= 0

        other.join(10)
        with db.session() as session:
            assert session.get(IndexerCursor, CURSOR).next_block > 0
    finally:
        release.set()
        db.engine.dispose()
