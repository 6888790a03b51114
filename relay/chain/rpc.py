"""JSON-RPC to the chain node over one pool of keep-alive HTTP connections (urllib3). Kept over
web3.py: an eth_call costs 0.37 ms of client CPU here, 1.0 ms through web3.py's provider and 5.3 ms
through `w3.eth.call` (`python -m tools.bench_rpc`, docs/benchmarks.md).

An unreachable node raises ConnectionError, a slow one TimeoutError, an error response RpcError
(Reverted for a contract's refusal). After a timeout calls fail at once (ConnectionError) for a
pause, which doubles with each timeout in a row; then one call probes the node, and its answer
ends the pause."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3

from relay.metrics import RPC_ERRORS, RPC_SECONDS

NOT_RETRIED = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})  # a second send is an error
PAUSE_AFTER_TIMEOUT = 5.0  # the longest pause (seconds), shorter if the timeout itself is
FIRST_PAUSE = 0.5
# Its timeout says the query (the indexer's block range) was too big, not that the node hangs.
SIZED_BY_REQUEST = frozenset({"eth_getLogs"})


class RpcError(Exception):
    """The node answered with an error."""

    def __init__(self, error: Any) -> None:
        super().__init__(repr(error))
        self.error = error


class Reverted(RpcError):
    """A call a contract refused; `data` is the revert data (a custom error), possibly empty."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error)
        data = error.get("data")
        data = data.get("data") if isinstance(data, dict) else data  # some nodes nest it
        self.data = bytes.fromhex(data[2:]) if isinstance(data, str) and data.startswith("0x") else b""


class NodeRpc:
    def __init__(self, url: str, timeout: float, pause: float | None = None, first_pause: float = FIRST_PAUSE):
        self.timeout = timeout
        self.pause = min(timeout, PAUSE_AFTER_TIMEOUT) if pause is None else pause
        self.first_pause = min(first_pause, self.pause)
        self._state = threading.Lock()
        self._paused_until = 0.0
        self._timeouts = 0  # in a row, with no answer in between
        self._probing = False  # the pause is over and one call is asking the node
        self._ids = itertools.count(1)
        parts = urlsplit(url)
        # Proxy and CA bundle from the environment, as requests (and so web3.py) reads them.
        settings = requests.Session().merge_environment_settings(url, {}, None, None, None)
        proxy, verify = settings["proxies"].get(parts.scheme), settings["verify"]
        options: dict[str, Any] = {"maxsize": 64, "timeout": urllib3.Timeout(total=timeout), "retries": False}
        if parts.scheme == "https" and verify is not True:
            options |= {"ca_certs": verify} if isinstance(verify, str) else {"cert_reqs": "CERT_NONE"}
        self._http = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.connection_from_url(url, **options)
        # The path and query (where a hosted node's API key is) as given; the URL's credentials as
        # HTTP Basic authentication, as web3.py sends them, never in the request line.
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}" if proxy else path
        self._headers = {"Content-Type": "application/json"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers |= urllib3.util.make_headers(basic_auth=credentials)

    def result(self, method: str, params: list[Any]) -> Any:
        """The call's result; RpcError (Reverted for a contract's refusal) for an error response."""
        reply = self._exchange(method, {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        error = reply.get("error")
        if error is None:
            return reply.get("result")
        revert = isinstance(error, dict) and (error.get("code") == 3 or "revert" in str(error.get("message")).lower())
        raise Reverted(error) if revert else RpcError(error)

    def batch(self, method: str, params: list[list[Any]]) -> list[dict[str, Any]]:
        """One batch request of `method` with each of `params`: the node's responses, in order.
        RpcError if the node does not take batch requests (some refuse them or cap their size)."""
        requests = [{"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": p} for p in params]
        replies = self._exchange(method, requests)
        if not isinstance(replies, list):
            raise RpcError(f"{method}: the node did not answer the batch request: {replies!r}")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        missing = {"error": {"code": -32603, "message": "no answer in the batch"}}
        return [by_id.get(r["id"], missing) for r in requests]

    def _exchange(self, method: str, request: Any) -> Any:
        """POSTs a request; the decoded JSON answer. A read survives one dropped keep-alive connection."""
        start = time.perf_counter()
        try:
            return self._post(method, request)
        except (ConnectionError, TimeoutError) as exc:
            RPC_ERRORS.labels(method, type(exc).__name__).inc()
            raise
        finally:
            RPC_SECONDS.labels(method).observe(time.perf_counter() - start)

    def _post(self, method: str, request: Any) -> Any:
        probe, timed_out = self._admit(method), False
        body = json.dumps(request).encode()
        try:
            for attempt in itertools.count():
                try:
                    reply = self._http.urlopen("POST", self._target, body=body, headers=self._headers)
                    break
                except urllib3.exceptions.NewConnectionError as exc:  # refused (a TimeoutError subclass)
                    raise ConnectionError(f"{method}: {exc}") from exc
                except urllib3.exceptions.TimeoutError as exc:
                    timed_out = method not in SIZED_BY_REQUEST
                    raise TimeoutError(f"{method}: the node did not answer within {self.timeout} s") from exc
                except urllib3.exceptions.HTTPError as exc:
                    dropped = isinstance(exc, urllib3.exceptions.ProtocolError)
                    if not dropped or attempt or method in NOT_RETRIED:
                        raise ConnectionError(f"{method}: {exc}") from exc
        finally:
            self._settle(probe, timed_out)
        if reply.status >= 500 or reply.status in (404, 405):
            raise ConnectionError(f"{method}: HTTP {reply.status} from the node")
        try:
            return json.loads(reply.data)
        except ValueError as exc:
            raise ConnectionError(f"{method}: the node's answer is not JSON (HTTP {reply.status})") from exc

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
