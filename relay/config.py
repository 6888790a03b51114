"""Settings, from environment variables prefixed `RELAY_` (or a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", env_file=".env", extra="ignore")

    # Storage: SQLite file by default; PostgreSQL with postgresql+psycopg://user@host/db.
    database_url: str = Field(
        default=f"sqlite:///{ROOT / 'var' / 'relay.sqlite3'}",
        validation_alias=AliasChoices("RELAY_DATABASE_URL", "DATABASE_URL"),
    )

    # Chain: any JSON-RPC endpoint, and the deployment file `ape run deploy` wrote.
    rpc_url: str = "http://127.0.0.1:8545"
    deployment_file: Path = ROOT / "deployments" / "local.json"
    rpc_timeout: float = 10.0
    # Private keys of the relay signers (comma-separated). Each needs the relay roles on chain.
    signer_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    receipt_timeout: float = 30.0
    # Requests that wait for their transaction to be mined (closeNew, closeCancel, the shop
    # owner's actions) that run at once per process, in threads of their own: they cannot take
    # the threads that serve every other request, however slow the chain's blocks. Beyond this
    # many they wait their turn without a thread.
    waiting_requests: int = Field(default=100, ge=1)

    # Payment life cycle (seconds).
    payment_timeout: int = 45  # no decision after openNew / openCancel
    close_timeout: int = 600  # approved but never closed by the KIOSK: closed with a refund
    signature_ttl: int = 600  # deadline of the typed data handed to the app
    # The maxTotal the user signs for a new payment: the contract's estimate at openNew, in the
    # account's loyalty type, raised by this many basis points (rounded down). With 0 the payment
    # fails (status 10, code 3007) if rates or the fee rate rise at all before it is executed;
    # a tolerance lets it through a small move, and is all the user may be charged beyond the estimate.
    charge_tolerance_bps: int = Field(default=0, ge=0, le=10_000)
    temporary_account_ttl: int = 60

    # Callbacks to KIOSKs: retried with exponential backoff for this long.
    callback_retry_period: int = 24 * 3600
    callback_backoff_initial: float = 1.0
    callback_backoff_max: float = 3600.0
    callback_timeout: float = 10.0
    # How long a delivery attempt holds its callbacks: those of an instance that died while
    # delivering are sent again (same webhook-id) once it ends. More than callback_timeout.
    callback_lease: float = 40.0

    # Push notifications (Expo); tests point this at a local fake.
    expo_base_url: str = "https://exp.host"
    expo_access_token: SecretStr | None = None

    # PostgreSQL connections each relay process may hold (pool size + overflow). Keep
    # processes x (db_pool_size + db_max_overflow) below the server's max_connections. The pool
    # keeps enough for a busy process's request threads and background workers (about 15 at
    # once), so connections are not opened and closed under load.
    db_pool_size: int = 16
    db_max_overflow: int = 4
    # Seconds a statement waits for a row another transaction holds before its request answers
    # 503 (4003): a relay instance that froze or lost its network inside a transaction does not
    # hang the others. PostgreSQL ends such an instance's session after it has been idle in a
    # transaction for db_idle_transaction_timeout, releasing its locks; the relay itself holds a
    # transaction open across at most a couple of calls to the node (taking a signer's nonce),
    # so this is more than twice rpc_timeout.
    db_lock_timeout: float = Field(default=10.0, gt=0)
    db_idle_transaction_timeout: float = Field(default=120.0, gt=0)

    # Background workers' polling interval (seconds).
    worker_interval: float = 0.5

    # Event indexer: blocks behind the head it waits before indexing (0 on a local chain; more
    # on a public one), and the most blocks it reads per step.
    indexer_confirmations: int = 0
    indexer_batch: int = 500

    # Operator page.
    admin_user: str = "admin"
    admin_password: SecretStr | None = None

    log_level: str = "INFO"

    @field_validator("signer_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _idle_transactions_outlast_node_calls(self) -> Settings:
        if self.db_idle_transaction_timeout <= 2 * self.rpc_timeout:
            raise ValueError(
                f"db_idle_transaction_timeout ({self.db_idle_transaction_timeout} s) must be more than twice "
                f"rpc_timeout ({self.rpc_timeout} s): a transaction that takes a signer's nonce waits for the node"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        if self.callback_lease <= self.callback_timeout:
            raise ValueError(
                f"callback_lease ({self.callback_lease} s) must be longer than callback_timeout "
                f"({self.callback_timeout} s), or a slow delivery would be sent again while it runs"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
