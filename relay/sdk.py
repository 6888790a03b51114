"""Python SDK for the relay's HTTP API (the spec's "DMS-SDK"): a KIOSK client and a wallet (app)
client that signs every action with a local key.

    kiosk = KioskClient("http://127.0.0.1:8000", "demo-kiosk-access-key")
    wallet = AppClient("http://127.0.0.1:8000", private_key)
    payment = kiosk.open_new("P000001", 10 * 10**18, "krw", shop_id, wallet.address)
    wallet.approve(payment.paymentId)

Errors come back as the relay's own exception classes (relay.errors), chosen by error code.
"""

from __future__ import annotations

import functools
import ssl
import time
from typing import Any, TypeVar

import httpx
from eth_account import Account
from pydantic import BaseModel, RootModel

from relay import errors, typed_data
from relay.api import schemas

M = TypeVar("M", bound=BaseModel)
_BY_CODE = {cls.code: cls for cls in errors.ERRORS}


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

    def _request(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = self.http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            raise errors.RelayError(f"HTTP {response.status_code}: {response.text[:200]}") from None
        if response.status_code != 200 or body.get("code") != 0:
            error = _BY_CODE.get(body.get("code"), errors.RelayError)
            raise error(body.get("error", {}).get("message", response.text[:200]))
        return model.model_validate(body["data"])


class KioskClient(_Client):
    """What a shop KIOSK does (spec §3)."""

    def __init__(self, base_url: str, access_key: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.access_key = access_key

    def balance(self, account: str) -> schemas.Balance:
        return self._request(schemas.Balance, "GET", "/v1/payment/user/balance", params={"account": account})

    def info(self, account: str, amount: int, currency: str) -> schemas.PaymentInfo:
        params = {"account": account, "amount": str(amount), "currency": currency}
        return self._request(schemas.PaymentInfo, "GET", "/v1/payment/info", params=params)

    def open_new(
        self, purchase_id: str, amount: int, currency: str, shop_id: str, account: str
    ) -> schemas.OpenNewResult:
        body = {
            "accessKey": self.access_key,
            "purchaseId": purchase_id,
            "amount": str(amount),
            "currency": currency,
            "shopId": shop_id,
            "account": account,
        }
        return self._request(schemas.OpenNewResult, "POST", "/v1/payment/openNew", json=body)

    def close_new(self, payment_id: str, confirm: bool = True) -> schemas.CloseNewResult:
        body = {"accessKey": self.access_key, "paymentId": payment_id, "confirm": confirm}
        return self._request(schemas.CloseNewResult, "POST", "/v1/payment/closeNew", json=body)

    def open_cancel(self, payment_id: str) -> schemas.OpenCancelResult:
        body = {"accessKey": self.access_key, "paymentId": payment_id}
        return self._request(schemas.OpenCancelResult, "POST", "/v1/payment/openCancel", json=body)

    def close_cancel(self, payment_id: str, confirm: bool = True) -> schemas.CloseCancelResult:
        body = {"accessKey": self.access_key, "paymentId": payment_id, "confirm": confirm}
        return self._request(schemas.CloseCancelResult, "POST", "/v1/payment/closeCancel", json=body)

    def report_purchase(
        self, purchase_id: str, amount: int, currency: str, shop_id: str, account: str
    ) -> schemas.PurchaseResult:
        """Reports a purchase paid without loyalty; its reward is credited after the shop's wait time."""
        body = {
            "accessKey": self.access_key,
            "purchaseId": purchase_id,
            "amount": str(amount),
            "currency": currency,
            "shopId": shop_id,
            "account": account,
        }
        return self._request(schemas.PurchaseResult, "POST", "/v1/payment/purchase", json=body)

    def purchase(self, shop_id: str, purchase_id: str) -> schemas.PurchaseResult:
        params = {"shopId": shop_id, "purchaseId": purchase_id}
        return self._request(schemas.PurchaseResult, "GET", "/v1/payment/purchase", params=params)

    def shop_info(self, shop_id: str) -> schemas.ShopInfo:
        return self._request(schemas.ShopInfo, "GET", "/v1/payment/shop/info", params={"shopId": shop_id})

    def shop_withdrawal(self, shop_id: str) -> schemas.ShopWithdrawal:
        return self._request(schemas.ShopWithdrawal, "GET", "/v1/payment/shop/withdrawal", params={"shopId": shop_id})


class AppClient(_Client):
    """A wallet in the mobile app: a user approving payments, or a shop owner approving cancels."""

    def __init__(self, base_url: str, private_key: str | bytes, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.account = Account.from_key(private_key)
        self._chain: schemas.ChainInfo | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def sign(self, typed: dict[str, Any]) -> str:
        return typed_data.sign(self.account.key, typed)

    def chain(self) -> schemas.ChainInfo:
        if self._chain is None:
            self._chain = self._request(schemas.ChainInfo, "GET", "/v1/payment/chain")
        return self._chain

    def item(self, payment_id: str) -> schemas.ItemResult:
        return self._request(schemas.ItemResult, "GET", "/v1/payment/item", params={"paymentId": payment_id})

    def _decide(self, payment_id: str, action: str) -> schemas.ItemResult:
        item = self.item(payment_id)
        if item.typedData is None:
            raise errors.InvalidStatus(f"Payment {payment_id} has no pending decision (status {item.paymentStatus}).")
        typed = getattr(item.typedData, action)
        if typed["message"]["account"].lower() != self.address.lower():
            raise errors.InvalidSignature(f"This decision belongs to {typed['message']['account']}.")
        return item

    def approve(self, payment_id: str) -> schemas.TxResult:
        """Approves the pending payment (as its user) or cancel (as the shop owner)."""
        item = self._decide(payment_id, "confirm")
        assert item.typedData is not None
        path = "/v1/payment/create/confirm" if item.paymentStatus == 1 else "/v1/payment/cancel/confirm"
        body = {"paymentId": payment_id, "signature": self.sign(item.typedData.confirm)}
        return self._request(schemas.TxResult, "POST", path, json=body)

    def deny(self, payment_id: str) -> schemas.PaymentBase:
        item = self._decide(payment_id, "deny")
        assert item.typedData is not None
        path = "/v1/payment/create/deny" if item.paymentStatus == 1 else "/v1/payment/cancel/deny"
        body = {"paymentId": payment_id, "signature": self.sign(item.typedData.deny)}
        return self._request(schemas.PaymentBase, "POST", path, json=body)

    def _signed(self, primary_type: str, ttl: int = 300, **message: Any) -> tuple[int, str]:
        deadline = int(time.time()) + ttl
        typed = typed_data.build(
            primary_type, self.chain().domains["payment"], {"account": self.address, "deadline": deadline, **message}
        )
        return deadline, self.sign(typed)

    def temporary_account(self) -> schemas.TemporaryAccountResult:
        deadline, signature = self._signed("TemporaryAccount")
        body = {"account": self.address, "deadline": deadline, "signature": signature}
        return self._request(schemas.TemporaryAccountResult, "POST", "/v1/payment/account/temporary", json=body)

    def register_push_token(self, token: str) -> schemas.PushTokenResult:
        deadline, signature = self._signed("RegisterPushToken", token=token)
        body = {"account": self.address, "token": token, "deadline": deadline, "signature": signature}
        return self._request(schemas.PushTokenResult, "POST", "/v1/payment/push/token", json=body)

    # ----------------------------------------------------------------- as a shop owner

    def _shop_action(self, action: str, path: str, **fields: Any) -> schemas.ShopTx:
        params = {"action": action, **{k: str(v) if isinstance(v, int) else v for k, v in fields.items()}}
        typed = self._request(_Document, "GET", "/v1/payment/shop/typedData", params=params).root
        if typed["message"]["account"].lower() != self.address.lower():
            raise errors.InvalidSignature(f"This shop belongs to {typed['message']['account']}.")
        body = {**fields, "deadline": int(typed["message"]["deadline"]), "signature": self.sign(typed)}
        if "amount" in body:
            body["amount"] = str(body["amount"])
        return self._request(schemas.ShopTx, "POST", path, json=body)

    def add_shop(self, shop_id: str, name: str, provide_wait_time: int, provide_percent: int) -> schemas.ShopTx:
        return self._shop_action(
            "AddShop",
            "/v1/payment/shop/add",
            shopId=shop_id,
            name=name,
            provideWaitTime=provide_wait_time,
            providePercent=provide_percent,
            account=self.address,
        )

    def update_shop(self, shop_id: str, name: str, provide_wait_time: int, provide_percent: int) -> schemas.ShopTx:
        return self._shop_action(
            "UpdateShop",
            "/v1/payment/shop/update",
            shopId=shop_id,
            name=name,
            provideWaitTime=provide_wait_time,
            providePercent=provide_percent,
        )

    def open_withdrawal(self, shop_id: str, amount: int) -> schemas.ShopTx:
        return self._shop_action("OpenWithdrawal", "/v1/payment/shop/withdrawal/open", shopId=shop_id, amount=amount)

    def close_withdrawal(self, shop_id: str) -> schemas.ShopTx:
        return self._shop_action("CloseWithdrawal", "/v1/payment/shop/withdrawal/close", shopId=shop_id)

    def stream_params(self, ttl: int = 3600) -> dict[str, Any]:
        """Query parameters for GET /v1/payment/events (the live notification stream)."""
        deadline, signature = self._signed("NotificationStream", ttl=ttl)
        return {"account": self.address, "deadline": deadline, "signature": signature}
