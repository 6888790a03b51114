"""The relay's logging: its lines never carry the secrets in its settings, at any level.

The relay's own messages name no secret; what this guards against is the rest of the stack at
DEBUG level (urllib3 logs each request line, which holds a hosted node's API key when it is in the
RPC URL's path or query) and exception messages that quote a URL. Each configured secret is
replaced by `[redacted]` in every record the relay's handlers write, exception text included."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from relay.config import Settings

REDACTED = "[redacted]"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def public_url(url: str) -> str:
    """`url` as it may be shown: scheme, host and port, without credentials, path or query (a
    hosted node's API key is in one of them)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def url_secrets(url: str) -> list[str]:
    """The parts of a node's URL that may be credentials: the password, the path (beyond "/")
    and the query."""
    parts = urlsplit(url)
    found = [parts.password or "", parts.query]
    if parts.path not in ("", "/"):
        found.append(parts.path)
    return [part for part in found if part]


def settings_secrets(settings: Settings) -> list[str]:
    keys = [key.get_secret_value() for key in settings.signer_keys]
    found = keys + [key.removeprefix("0x") for key in keys]
    for secret in (settings.admin_password, settings.expo_access_token):
        if secret is not None:
            found.append(secret.get_secret_value())
    found += url_secrets(settings.rpc_url)
    # A database URL's path is the database's name (or file), not a secret; its password is.
    found.append(urlsplit(settings.database_url).password or "")
    return found


class Redact(logging.Filter):
    """Replaces each of `secrets` in a record's message and exception text."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)
        self._format_exception = logging.Formatter().formatException

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
        scrubbed = self._scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._format_exception(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True


def configure(settings: Settings) -> None:
    """Logs to stderr at the configured level; every handler (the root's and uvicorn's) writes
    through the redacting filter, which learns the secrets of each app set up in the process."""
    logging.basicConfig(level=settings.log_level, format=FORMAT)
    secrets = settings_secrets(settings)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            redact = next((f for f in handler.filters if isinstance(f, Redact)), None)
            if redact is None:
                handler.addFilter(Redact(secrets))
            else:
                redact.add(secrets)
