"""The relay's HTTP API as two clients: a shop KIOSK's, and a wallet app's that signs each action with
a local key."""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any, Self, TypeVar

import httpx
from eth_account import Account
from pydantic import BaseModel, RootModel

from loyalty_sdk import errors, models, typed_data

M = TypeVar("M", bound=BaseModel)
SIGNATURE_TTL = 120  # seconds from signing to the deadline of a message the app signs itself
SESSION_MARGIN = 60  # seconds before its expiry a session is renewed


class _Document(RootModel[dict[str, Any]]):
    pass


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client of the process, as httpx would make it (certifi's CA
    bundle, or SSL_CERT_FILE / SSL_CERT_DIR): making one loads the CA bundle, about 17 ms of CPU,
    which a KIOSK creating a client per sale would otherwise pay every time."""
    return httpx.create_ssl_context()


class _Client:
    def __init__(self, base_url: str, http: httpx.Client | None = None, timeout: float = 60.0) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout, verify=_tls())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = self.http.request(method, path, **kwargs)
        if response.status_code == 200:
            body = _json(response)
            if isinstance(body, dict) and body.get("code") == 0:
                return model.model_validate(body["data"])
        raise _error(response)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(response: httpx.Response) -> errors.LoyaltyError:
    """The exception for an answer that is not a success: the relay's error code chooses its class."""
    body = _json(response)
    body = body if isinstance(body, dict) else {}
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    text = message or f"HTTP {response.status_code}: {response.text[:200]}"
    return errors.from_answer(body.get("code"), text, response.status_code)


class KioskClient(_Client):
    """What a shop KIOSK does (spec §3). Amounts are integers with 18 decimals."""

    def __init__(self, base_url: str, access_key: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.access_key = access_key

    def balance(self, account: str) -> models.Balance:
        return self._request(models.Balance, "GET", "/v1/payment/user/balance", params={"account": account})

    def info(self, account: str, amount: int, currency: str) -> models.PaymentInfo:
        params = {"account": account, "amount": str(amount), "currency": currency}
        return self._request(models.PaymentInfo, "GET", "/v1/payment/info", params=params)

    def _sale(self, purchase_id: str, amount: int, currency: str, shop_id: str, account: str) -> dict[str, str]:
        return {
            "accessKey": self.access_key,
            "purchaseId": purchase_id,
            "amount": str(amount),
            "currency": currency,
            "shopId": shop_id,
            "account": account,
        }

    def open_new(
        self, purchase_id: str, amount: int, currency: str, shop_id: str, account: str
    ) -> models.OpenNewResult:
        """Opens a payment for the user (wallet or temporary address) to approve in the app."""
        body = self._sale(purchase_id, amount, currency, shop_id, account)
        return self._request(models.OpenNewResult, "POST", "/v1/payment/openNew", json=body)

    def close_new(self, payment_id: str, confirm: bool = True) -> models.CloseNewResult:
        """Completes an approved payment, or refunds it (`confirm=False`)."""
        body = {"accessKey": self.access_key, "paymentId": payment_id, "confirm": confirm}
        return self._request(models.CloseNewResult, "POST", "/v1/payment/closeNew", json=body)

    def open_cancel(self, payment_id: str) -> models.OpenCancelResult:
        """Asks the shop owner to cancel a completed payment."""
        body = {"accessKey": self.access_key, "paymentId": payment_id}
        return self._request(models.OpenCancelResult, "POST", "/v1/payment/openCancel", json=body)

    def close_cancel(self, payment_id: str, confirm: bool = True) -> models.CloseCancelResult:
        """Refunds the user of an approved cancel, or keeps the payment (`confirm=False`)."""
        body = {"accessKey": self.access_key, "paymentId": payment_id, "confirm": confirm}
        return self._request(models.CloseCancelResult, "POST", "/v1/payment/closeCancel", json=body)

    def report_purchase(
        self, purchase_id: str, amount: int, currency: str, shop_id: str, account: str
    ) -> models.Purchase:
        """Reports a purchase paid without loyalty; its reward is credited after the shop's wait time."""
        body = self._sale(purchase_id, amount, currency, shop_id, account)
        return self._request(models.Purchase, "POST", "/v1/payment/purchase", json=body)

    def purchase(self, shop_id: str, purchase_id: str) -> models.Purchase:
        params = {"shopId": shop_id, "purchaseId": purchase_id}
        headers = {"Authorization": f"Bearer {self.access_key}"}
        return self._request(models.Purchase, "GET", "/v1/payment/purchase", params=params, headers=headers)

    def item(self, payment_id: str) -> models.Item:
        """A payment as it stands (a KIOSK without a callback endpoint polls this)."""
        return self._request(models.Item, "GET", "/v1/payment/item", params={"paymentId": payment_id})

    def shop_info(self, shop_id: str) -> models.ShopInfo:
        return self._request(models.ShopInfo, "GET", "/v1/payment/shop/info", params={"shopId": shop_id})

    def shop_withdrawal(self, shop_id: str) -> models.ShopWithdrawal:
        return self._request(models.ShopWithdrawal, "GET", "/v1/payment/shop/withdrawal", params={"shopId": shop_id})


class AppClient(_Client):
    """A wallet in the mobile app: a user approving payments, or a shop owner approving cancels and
    managing the shop."""

    def __init__(self, base_url: str, private_key: str | bytes, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.account = Account.from_key(private_key)
        self._chain: models.ChainInfo | None = None
        self._session: models.AppSession | None = None  # the token is kept in memory only
        self._last_deadline = 0

    @property
    def address(self) -> str:
        return str(self.account.address)

    def sign(self, typed: dict[str, Any]) -> str:
        return typed_data.sign(self.account.key, typed)

    def chain(self) -> models.ChainInfo:
        if self._chain is None:
            self._chain = self._request(models.ChainInfo, "GET", "/v1/payment/chain")
        return self._chain

    def item(self, payment_id: str) -> models.Item:
        """The payment. One opened through a temporary address names the wallet, and carries the
        typed data to sign, only for the wallet's session (a cancel's, for the shop owner's): a
        session is opened when an answer may be such a payment's."""
        params = {"paymentId": payment_id}
        live = self._session is not None and self._session.expiresAt - SESSION_MARGIN > time.time()
        try:
            found = self._request(models.Item, "GET", "/v1/payment/item", params=params, headers=self._auth(live))
        except errors.InvalidSession:  # ended on the relay's side
            self._session, live = None, False
            found = self._request(models.Item, "GET", "/v1/payment/item", params=params)
        if not live and found.typedData is None and found.account.lower() != self.address.lower():
            found = self._request(models.Item, "GET", "/v1/payment/item", params=params, headers=self.auth_headers())
        return found

    def _decision(self, payment_id: str, action: str) -> tuple[models.Item, dict[str, Any]]:
        item = self.item(payment_id)
        if item.typedData is None:
            raise errors.InvalidStatus(f"Payment {payment_id} has no pending decision (status {item.paymentStatus}).")
        typed: dict[str, Any] = getattr(item.typedData, action)
        if typed["message"]["account"].lower() != self.address.lower():
            raise errors.InvalidSignature(f"This decision belongs to {typed['message']['account']}.")
        return item, typed

    def approve(self, payment_id: str) -> models.TxResult:
        """Approves the pending payment (as its user) or cancel (as the shop owner): signs the typed
        data the relay serves for it."""
        item, typed = self._decision(payment_id, "confirm")
        path = "/v1/payment/create/confirm" if item.paymentStatus == 1 else "/v1/payment/cancel/confirm"
        body = {"paymentId": payment_id, "signature": self.sign(typed)}
        return self._request(models.TxResult, "POST", path, json=body)

    def deny(self, payment_id: str) -> models.Payment:
        item, typed = self._decision(payment_id, "deny")
        path = "/v1/payment/create/deny" if item.paymentStatus == 1 else "/v1/payment/cancel/deny"
        body = {"paymentId": payment_id, "signature": self.sign(typed)}
        return self._request(models.Payment, "POST", path, json=body)

    def _signed(self, primary_type: str, **message: Any) -> tuple[int, str]:
        """A deadline and the wallet's signature of a message the app originates. The relay accepts
        each signed message once and a deadline at most 5 minutes ahead: the deadline is 2 minutes
        ahead, and after the last one this client signed (two messages in one second differ)."""
        deadline = self._last_deadline = max(int(time.time()) + SIGNATURE_TTL, self._last_deadline + 1)
        domain = self.chain().domains["payment"]
        typed = typed_data.build(primary_type, domain, {"account": self.address, "deadline": deadline, **message})
        return deadline, self.sign(typed)

    def temporary_account(self) -> models.TemporaryAccount:
        """A short-lived, single-use address for the payment QR code."""
        deadline, signature = self._signed("TemporaryAccount")
        body = {"account": self.address, "deadline": deadline, "signature": signature}
        return self._request(models.TemporaryAccount, "POST", "/v1/payment/account/temporary", json=body)

    def register_push_token(self, token: str) -> models.PushToken:
        deadline, signature = self._signed("RegisterPushToken", token=token)
        body = {"account": self.address, "token": token, "deadline": deadline, "signature": signature}
        return self._request(models.PushToken, "POST", "/v1/payment/push/token", json=body)

    def session(self) -> models.AppSession:
        """Opens a session of the wallet (a signed AppSession): a token for its own view of payments
        opened through temporary addresses, and for its notification stream."""
        deadline, signature = self._signed("AppSession")
        body = {"account": self.address, "deadline": deadline, "signature": signature}
        self._session = self._request(models.AppSession, "POST", "/v1/payment/account/session", json=body)
        return self._session

    def end_session(self) -> None:
        """Ends the wallet's session, if one is live, on the relay too (logging out)."""
        if self._session is not None and self._session.expiresAt > time.time():
            headers = {"Authorization": f"Bearer {self._session.token}"}
            self._request(models.SessionEnded, "DELETE", "/v1/payment/account/session", headers=headers)
        self._session = None

    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer` with the wallet's session token, opening a session if none is live."""
        return self._auth(True)

    def _auth(self, needed: bool) -> dict[str, str]:
        if not needed:
            return {}
        if self._session is None or self._session.expiresAt - SESSION_MARGIN <= time.time():
            self.session()
        assert self._session is not None
        return {"Authorization": f"Bearer {self._session.token}"}

    def notifications(self, after: int | None = None) -> Iterator[models.Notification]:
        """The wallet's notifications as they come (server-sent events), after the one with id
        `after` if given (at most the relay's 100 latest back), until the session ends or the caller
        stops iterating."""
        headers = self.auth_headers() | ({"Last-Event-ID": str(after)} if after is not None else {})
        with self.http.stream("GET", "/v1/payment/events", headers=headers) as reply:
            if reply.status_code != 200:
                reply.read()
                raise _error(reply)
            fields: dict[str, list[str]] = {}
            for line in reply.iter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields.setdefault(name, []).append(value.removeprefix(" "))
                    continue
                if "event" in fields:  # else a keep-alive comment
                    yield models.Notification(
                        id=int(fields["id"][-1]), event=fields["event"][-1], data=json.loads("\n".join(fields["data"]))
                    )
                fields = {}

    # ----------------------------------------------------------------- as a shop owner

    def _shop_action(self, action: str, path: str, **fields: Any) -> models.ShopTx:
        params = {"action": action, **{k: str(v) if isinstance(v, int) else v for k, v in fields.items()}}
        typed = self._request(_Document, "GET", "/v1/payment/shop/typedData", params=params).root
        if typed["message"]["account"].lower() != self.address.lower():
            raise errors.InvalidSignature(f"This shop belongs to {typed['message']['account']}.")
        body = {**fields, "deadline": int(typed["message"]["deadline"]), "signature": self.sign(typed)}
        if "amount" in body:
            body["amount"] = str(body["amount"])
        return self._request(models.ShopTx, "POST", path, json=body)

    def add_shop(self, shop_id: str, name: str, provide_wait_time: int, provide_percent: int) -> models.ShopTx:
        return self._shop_action(
            "AddShop",
            "/v1/payment/shop/add",
            shopId=shop_id,
            name=name,
            provideWaitTime=provide_wait_time,
            providePercent=provide_percent,
            account=self.address,
        )

    def update_shop(self, shop_id: str, name: str, provide_wait_time: int, provide_percent: int) -> models.ShopTx:
        return self._shop_action(
            "UpdateShop",
            "/v1/payment/shop/update",
            shopId=shop_id,
            name=name,
            provideWaitTime=provide_wait_time,
            providePercent=provide_percent,
        )

    def open_withdrawal(self, shop_id: str, amount: int) -> models.ShopTx:
        return self._shop_action("OpenWithdrawal", "/v1/payment/shop/withdrawal/open", shopId=shop_id, amount=amount)

    def close_withdrawal(self, shop_id: str) -> models.ShopTx:
        return self._shop_action("CloseWithdrawal", "/v1/payment/shop/withdrawal/close", shopId=shop_id)
