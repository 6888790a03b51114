"""The relay's logging, which never writes a secret of its settings, at any level: the rest of the
stack at DEBUG level (urllib3 logs each request line, with a hosted node's API key in the RPC URL)
and exception messages that quote a URL would. Each secret becomes `[redacted]`, exception text included."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from pythonjsonlogger.json import JsonFormatter

from relay.config import Settings

REDACTED = "[redacted]"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def public_url(url: str) -> str:
    """`url` as it may be shown: scheme, host and port (a hosted node's API key is in the rest)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def settings_secrets(settings: Settings) -> list[str]:
    """The signer keys, passwords and tokens, and what of the node's URL may be credentials: its password,
    path (beyond "/") and query. A database URL's path is the database's name, not a secret."""
    keys = [key.get_secret_value() for key in settings.signer_keys]
    found = keys + [key.removeprefix("0x") for key in keys]
    found += [s.get_secret_value() for s in (settings.admin_password, settings.expo_access_token) if s is not None]
    rpc = urlsplit(settings.rpc_url)
    found += [rpc.password or "", rpc.query, rpc.path if rpc.path != "/" else ""]
    return [*found, urlsplit(settings.database_url).password or ""]


class Redact(logging.Filter):
    """Replaces each of `secrets` in a record's message and exception text."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s)}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed logging call: the handler reports it when it formats
            return True
        if (scrubbed := self._scrub(message)) != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True


def configure(settings: Settings) -> None:
    """Logs to stderr at the configured level; every handler (the root's and uvicorn's) writes
        through the redacting filter, which learns the secrets of each app set up in the process; as JSON
    objects, one per line, if `log_format` is json."""
    logging.basicConfig(level=settings.log_level, format=FORMAT)
    # httpx logs each request's URL at INFO: a KIOSK's callback URL may carry its credentials.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    secrets = settings_secrets(settings)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if settings.log_format == "json":
                handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
            redact = next((f for f in handler.filters if isinstance(f, Redact)), None)
            if redact is None:
                handler.addFilter(Redact(secrets))
            else:
                redact.add(secrets)
