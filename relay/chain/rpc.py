"""JSON-RPC to the chain node over one pool of keep-alive HTTP connections (urllib3): a call costs
a fraction of the CPU of web3.py's request pipeline, which formats every parameter and result
through layers of middleware.

A node that cannot be reached raises ConnectionError, one that does not answer in time
TimeoutError; an error response raises RpcError, or Reverted with the revert data for a call that
a contract refused.

A node that stops answering (it accepts connections but hangs) would hold every request that calls
it for the whole timeout. After a call times out the node is not asked again for a pause: calls
fail at once with ConnectionError; when the pause is over one call probes the node while the others
still fail at once, and its answer ends the pause (or its timeout starts a new one). The first pause
is short (a single slow call should not turn requests away for long) and each timeout in a row
doubles it, up to PAUSE_AFTER_TIMEOUT: a node that keeps hanging is probed less and less often.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import requests
import urllib3

HEADERS = {"Content-Type": "application/json"}
# Sending a transaction twice is not harmless (the second answer is an error): it is never retried.
NOT_RETRIED = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
# Longest pause after a timeout (seconds); shorter if the timeout itself is shorter.
PAUSE_AFTER_TIMEOUT = 5.0
# The pause after a first timeout (seconds); doubled by each further timeout in a row.
FIRST_PAUSE = 0.5
# Calls whose time grows with what they ask for: their timeout says the query was too big (the
# indexer's block range), not that the node hangs, so it starts no pause.
SIZED_BY_REQUEST = frozenset({"eth_getLogs"})

Response = dict[str, Any]


class RpcError(Exception):
    """The node answered with an error."""

    def __init__(self, error: Any) -> None:
        super().__init__(repr(error))
        self.error = error


class Reverted(RpcError):
    """A call a contract refused; `data` is the revert data (a custom error), possibly empty."""

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        data = error.get("data") if isinstance(error, dict) else None
        data = data.get("data") if isinstance(data, dict) else data  # some nodes nest it
        self.data = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""


def _is_revert(error: Any) -> bool:
    return isinstance(error, dict) and (error.get("code") == 3 or "revert" in str(error.get("message", "")).lower())


class NodeRpc:
    def __init__(
        self,
        url: str,
        timeout: float,
        pool_size: int = 64,
        pause: float | None = None,
        first_pause: float = FIRST_PAUSE,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.pause = min(timeout, PAUSE_AFTER_TIMEOUT) if pause is None else pause  # the longest
        self.first_pause = min(first_pause, self.pause)
        self._state = threading.Lock()
        self._paused_until = 0.0  # after a timeout: until when the node is not asked
        self._timeouts = 0  # timeouts in a row, with no answer in between
        self._probing = False  # the pause is over and one call is asking the node
        parts = urlsplit(url)
        # Proxy and CA settings from the environment, as requests (and so web3.py) would read them.
        environment = requests.Session().merge_environment_settings(url, {}, None, None, None)
        proxy = environment["proxies"].get(parts.scheme)
        verify = environment["verify"]
        options: dict[str, Any] = {
            "maxsize": pool_size,
            "timeout": urllib3.Timeout(total=timeout),
            "retries": False,
            "headers": HEADERS,
        }
        if parts.scheme == "https":
            if isinstance(verify, str):
                options["ca_certs"] = verify
            elif verify is False:
                options["cert_reqs"] = "CERT_NONE"
        # Without a proxy, the one host's connection pool itself (a PoolManager would parse the
        # URL and look the pool up on every call).
        self._http: urllib3.ProxyManager | urllib3.HTTPConnectionPool = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.connection_from_url(url, **options)
        )
        # The path and query go to the node as given (a hosted node's API key is in one of
        # them); credentials in the URL are sent as HTTP Basic authentication, as web3.py's
        # provider (requests) sends them, never in the request line.
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}" if proxy else path
        self._headers = dict(HEADERS)
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers |= urllib3.util.make_headers(basic_auth=credentials)
        self._ids = itertools.count(1)

    def result(self, method: str, params: list[Any]) -> Any:
        """The call's result; RpcError (Reverted for a contract's refusal) for an error response."""
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}).encode()
        reply: Response = self._exchange(method, body)
        if "error" in reply:
            raise Reverted(reply["error"]) if _is_revert(reply["error"]) else RpcError(reply["error"])
        return reply.get("result")

    def batch(self, method: str, params: list[list[Any]]) -> list[Response]:
        """One JSON-RPC batch request: `method` with each of `params`; the node's response to each,
        in the same order. RpcError if the node does not take batch requests (some refuse them,
        or cap their size), ConnectionError / TimeoutError as for a single call."""
        ids = [next(self._ids) for _ in params]
        requests = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": p} for i, p in zip(ids, params, strict=True)
        ]
        replies = self._exchange(method, json.dumps(requests).encode())
        if not isinstance(replies, list):
            raise RpcError(f"{method}: the node did not answer the batch request: {replies!r}")
        by_id: dict[Any, Response] = {r.get("id"): cast(Response, r) for r in replies if isinstance(r, dict)}
        missing: Response = {"error": {"code": -32603, "message": "no answer in the batch"}}
        return [by_id.get(i, missing) for i in ids]

    def _exchange(self, method: str, body: bytes) -> Any:
        """POSTs a request body and returns the decoded JSON answer."""
        probe = self._admit(method)
        timed_out = False
        try:
            reply = self._send(method, body)
        except TimeoutError:
            timed_out = method not in SIZED_BY_REQUEST
            raise
        finally:
            self._settle(probe, timed_out)
        if reply.status >= 500 or reply.status in (404, 405):
            raise ConnectionError(f"{method}: HTTP {reply.status} from the node")
        try:
            return json.loads(reply.data)
        except ValueError as exc:
            raise ConnectionError(f"{method}: the node's answer is not JSON (HTTP {reply.status})") from exc

    def _send(self, method: str, body: bytes) -> urllib3.BaseHTTPResponse:
        """POSTs the request. A read survives one dropped keep-alive connection; a timeout or a
        refused connection is not retried (TimeoutError / ConnectionError)."""
        retries = 0 if method in NOT_RETRIED else 1
        while True:
            try:
                return self._http.urlopen("POST", self._target, body=body, headers=self._headers)
            except urllib3.exceptions.NewConnectionError as exc:  # refused, unknown host (a TimeoutError subclass)
                raise ConnectionError(f"{method}: {exc}") from exc
            except urllib3.exceptions.TimeoutError as exc:
                raise TimeoutError(f"{method}: the node did not answer within {self.timeout} s") from exc
            except urllib3.exceptions.ProtocolError as exc:
                if not retries:
                    raise ConnectionError(f"{method}: {exc}") from exc
                retries -= 1
            except urllib3.exceptions.HTTPError as exc:
                raise ConnectionError(f"{method}: {exc}") from exc

    def _admit(self, method: str) -> bool:
        """Lets a call through unless the node is paused; returns whether it is the probe."""
        with self._state:
            if not self._paused_until:
                return False
            left = self._paused_until - time.monotonic()
            if left > 0 or self._probing:
                wait = f"for {left:.1f} s" if left > 0 else "until a call in flight is answered"
                raise ConnectionError(f"{method}: the node did not answer in time; not asked again {wait}")
            self._probing = True
            return True

    def _settle(self, probe: bool, timed_out: bool) -> None:
        with self._state:
            if probe:
                self._probing = False
            if timed_out:
                self._timeouts += 1
                pause = min(self.first_pause * 2 ** min(self._timeouts - 1, 16), self.pause)
                self._paused_until = time.monotonic() + pause
            elif not self._probing:  # the node answered, and no probe is out to decide instead
                self._paused_until = 0.0
                self._timeouts = 0
