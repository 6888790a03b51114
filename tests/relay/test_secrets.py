"""No secret reaches the relay's log, even at DEBUG level: a relay configured with a signer key, an
RPC URL with credentials and an API key, an operator password and an Expo access token serves a
payment with its callback and a push the push service refuses, a wrong access key and the
operator page; then its log is searched for every secret it was given or handed out."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from loyalty_sdk import AppClient
from relay import logs
from relay.config import Settings
from relay.devnet import anvil_key
from relay.models import KioskClient
from tests.relay.checks import sqlite_only
from tests.relay.conftest import (
    POINT_USER,
    SIGNERS,
    UNIT,
    CallbackReceiver,
    FakeExpo,
    KioskAccount,
    RelayProcess,
    wait_until,
)


@pytest.fixture(scope="module")
def configured() -> dict[str, str]:
    return {
        "signer": anvil_key(SIGNERS["spare"]),
        "rpc_password": f"rpcpass{secrets.token_hex(8)}",
        "rpc_api_key": f"rpckey{secrets.token_hex(8)}",
        "admin_password": f"admin{secrets.token_hex(8)}",
        "expo_token": f"expo{secrets.token_hex(8)}",
    }


@pytest.fixture(scope="module")
def secret_relay(anvil: str, configured: dict[str, str], start_relay: Callable[..., RelayProcess]) -> RelayProcess:
    host = anvil.removeprefix("http://")
    return start_relay(
        "secrets",
        signer=SIGNERS["spare"],
        rpc_url=f"http://relay:{configured['rpc_password']}@{host}/?apikey={configured['rpc_api_key']}",
        admin_password=configured["admin_password"],
        expo_access_token=configured["expo_token"],
        log_level="DEBUG",
    )


def test_no_secret_in_the_log_at_debug_level(
    secret_relay: RelayProcess,
    configured: dict[str, str],
    make_kiosk: Callable[..., KioskAccount],
    callbacks: CallbackReceiver,
    expo: FakeExpo,
    shop_id: str,
) -> None:
    kiosk = make_kiosk(secret_relay, [shop_id])
    url_token = f"urltoken{secrets.token_hex(8)}"  # a KIOSK's callback URL may carry its own credentials
    with secret_relay.db().session() as session:
        session.execute(
            update(KioskClient)
            .where(KioskClient.id == kiosk.id)
            .values(callback_url=KioskClient.callback_url + f"?token={url_token}")
        )
    user = AppClient(secret_relay.url, anvil_key(POINT_USER))
    push_token = f"ExponentPushToken[{secrets.token_hex(11)}]"
    expo.unregistered.add(push_token)
    user.register_push_token(push_token)

    opened = kiosk.client.open_new(f"S-{secrets.token_hex(4)}", 10 * UNIT, "krw", shop_id, user.address)
    user.approve(opened.paymentId)
    assert kiosk.client.close_new(opened.paymentId).paymentStatus == 4
    callbacks.wait_for(opened.paymentId)
    wait_until(lambda: any(m["to"] == push_token for m in expo.messages))
    wrong_key = httpx.post(
        f"{secret_relay.url}/v1/payment/openNew",
        json={
            "accessKey": kiosk.access_key[:-1] + ("0" if kiosk.access_key[-1] != "0" else "1"),
            "purchaseId": "S-x",
            "amount": "1",
            "currency": "krw",
            "shopId": shop_id,
            "account": user.address,
        },
    )
    assert wrong_key.status_code == 401
    assert httpx.get(f"{secret_relay.url}/admin", auth=("admin", "wrong")).status_code == 401
    assert httpx.get(f"{secret_relay.url}/admin", auth=("admin", configured["admin_password"])).status_code == 200
    secret_relay.stop()  # every line written

    assert secret_relay.log is not None
    text = secret_relay.log.read_text()
    handed_out: dict[str, Any] = {
        "access key": kiosk.access_key,
        "callback secret": kiosk.secret,
        "push token": push_token,
        "callback URL token": url_token,
        "signer key (no 0x)": configured["signer"].removeprefix("0x"),
    }
    found = [name for name, value in (configured | handed_out).items() if value in text]
    assert found == []
    # What was said instead: DEBUG lines of the HTTP stack, with the RPC API key redacted, and
    # the refused push with a hint of its token.
    assert "DEBUG urllib3" in text and "[redacted]" in text
    assert f"push to {push_token[:22]}… failed" in text


def test_redact__secret_in_arguments_and_in_an_exception_s_text_replaced() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.Redact(["s3cret-key"]))
    logger = logging.Logger("redact-test")
    logger.addHandler(handler)

    logger.warning("calling %s", "http://node/?apikey=s3cret-key")
    try:
        raise ValueError("refused: s3cret-key")
    except ValueError:
        logger.exception("failed")

    logger.warning("malformed %s %s", "one argument")  # reported by logging, not raised here

    written = out.getvalue()
    assert "s3cret-key" not in written
    assert "calling http://node/?apikey=[redacted]" in written
    assert "ValueError: refused: [redacted]" in written


def test_settings_secrets__keys_passwords_and_the_node_url_s_credentials__not_the_database_name() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://relay:dbpass@db.internal/relay_prod",
        rpc_url="https://node.example/v3/NODEKEY?token=QUERYTOKEN",
        signer_keys="0x" + "ab" * 32,
        admin_password="adminpass",
    )

    found = logs.settings_secrets(settings)

    assert {"dbpass", "/v3/NODEKEY", "token=QUERYTOKEN", "ab" * 32, "0x" + "ab" * 32, "adminpass"} <= set(found)
    assert not any("relay_prod" in secret for secret in found)


def test_public_url__scheme_host_and_port_only() -> None:
    assert logs.public_url("https://user:pw@node.example:8545/v3/KEY?apikey=Q") == "https://node.example:8545"
    assert logs.public_url("http://[::1]:8545/") == "http://[::1]:8545"


@sqlite_only
def test_sqlite_database__created_readable_by_its_owner_only(relay) -> None:
    path = Path(relay.db_url.split("///", 1)[1])
    assert path.stat().st_mode & 0o777 == 0o600
