"""Settings, from environment variables prefixed `RELAY_` (or a `.env` file); docs/operations.md
says what each one does. Times are in seconds."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import parse
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{ROOT / 'var' / 'relay.sqlite3'}",
        validation_alias=AliasChoices("RELAY_DATABASE_URL", "DATABASE_URL"),
    )

    # Chain: a JSON-RPC endpoint, the file `ape run deploy` wrote, the relay signers' keys.
    rpc_url: str = "http://127.0.0.1:8545"
    deployment_file: Path = ROOT / "deployments" / "local.json"
    rpc_timeout: float = 10.0
    signer_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)  # comma-separated
    receipt_timeout: float = 30.0
    waiting_requests: int = Field(default=100, ge=1)  # requests waiting for a block, per process
    min_signer_balance: int = Field(default=10**16, ge=0)  # wei; /readyz fails below it (0.01 ETH)

    # Payment life cycle.
    payment_timeout: int = 45  # no decision after openNew / openCancel
    close_timeout: int = 600  # approved but never closed by the KIOSK: closed with a refund
    signature_ttl: int = 600  # deadline of the typed data handed to the app
    # How far above the estimate at openNew (basis points) the maxTotal the user signs is.
    charge_tolerance_bps: int = Field(default=0, ge=0, le=10_000)
    temporary_account_ttl: int = 60

    # Callbacks to KIOSKs: exponential backoff over the retry period; a lease outlasts an attempt.
    callback_retry_period: int = 24 * 3600
    callback_backoff_initial: float = 1.0
    callback_backoff_max: float = 3600.0
    callback_timeout: float = 10.0
    callback_lease: float = 40.0
    allow_private_callbacks: bool = False  # callback URLs at loopback/private addresses (the demo, tests)

    expo_base_url: str = "https://exp.host"
    expo_access_token: SecretStr | None = None

    # PostgreSQL: connections per process, and how long a transaction may wait for or hold locks.
    db_pool_size: int = 16
    db_max_overflow: int = 4
    db_lock_timeout: float = Field(default=10.0, gt=0)
    db_idle_transaction_timeout: float = Field(default=120.0, gt=0)

    worker_interval: float = 0.5
    indexer_confirmations: int = 0  # blocks behind the head (more on a public chain)
    indexer_batch: int = 500  # most blocks read per step

    # Shop onboarding the relay pays gas for: each new (shop id, owner) waits for an operator's approval
    # (off: anyone may register, for a private deployment); pending requests per owner and per client IP.
    shop_approval: bool = True
    shop_requests_per_owner: int = Field(default=3, ge=1)
    shop_requests_per_ip: int = Field(default=10, ge=1)
    shop_requests_pending: int = Field(default=100, ge=1)  # from every owner and address together

    # Purchase rewards, in points (18 decimals): the most one purchase, and one KIOSK or shop in a UTC
    # day, may earn; the ledger's daily reward cap bounds them all together on chain.
    reward_limit_purchase: int = Field(default=100_000 * 10**18, ge=0)
    reward_limit_kiosk_day: int = Field(default=10_000_000 * 10**18, ge=0)
    reward_limit_shop_day: int = Field(default=10_000_000 * 10**18, ge=0)

    # Rate limits in the `limits` notation ("20/minute"; "" for none), answered 429 with Retry-After.
    # Counted per process, or across relay instances in Redis (rate_limit_storage="redis://host:6379").
    rate_limit_storage: str = "memory://"
    rate_limit_client: str = "1200/minute"  # requests per client address, every endpoint
    rate_limit_kiosk: str = "300/minute"  # KIOSK actions per access key
    rate_limit_wallet: str = "20/minute"  # payments opened for one wallet; apart, actions it signs
    metrics_token: SecretStr | None = None  # if set, GET /metrics needs `Authorization: Bearer <token>`
    log_format: Literal["text", "json"] = "text"

    # The app's session tokens (Authorization: Bearer): the wallet's own view of its payments and its stream.
    app_session_ttl: int = Field(default=3600, gt=0, le=3600)

    admin_user: str = "admin"
    admin_password: SecretStr | None = None  # unset: the operator page is disabled
    log_level: str = "INFO"

    @field_validator("signer_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("rate_limit_client", "rate_limit_kiosk", "rate_limit_wallet")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value:
            try:
                parse(value)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a rate such as 20/minute: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _timeouts_fit(self) -> Settings:
        if self.db_idle_transaction_timeout <= 2 * self.rpc_timeout:
            raise ValueError(
                f"db_idle_transaction_timeout ({self.db_idle_transaction_timeout} s) must be more than twice "
                f"rpc_timeout ({self.rpc_timeout} s): a transaction that takes a signer's nonce waits for the node"
            )
        if self.callback_lease <= self.callback_timeout:
            raise ValueError(
                f"callback_lease ({self.callback_lease} s) must be longer than callback_timeout "
                f"({self.callback_timeout} s), or a slow delivery would be sent again while it runs"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
