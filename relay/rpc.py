"""JSON-RPC to the chain node over one pool of keep-alive HTTP connections (urllib3).

The relay's hot calls (eth_call, gas estimates, raw transactions, receipts, nonces) go through
`NodeRpc` directly: a call costs a fraction of the CPU time of web3.py's request pipeline, which
formats every parameter and result through layers of middleware. web3.py itself (events, logs,
occasional reads) uses the same pool through `NodeProvider`. Errors are web3.py's own: a revert
raises ContractCustomError / ContractLogicError as web3.py would, any other error response
Web3RPCError, and a node that cannot be reached ConnectionError.

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
from web3._utils.error_formatters_utils import raise_contract_logic_error_on_revert
from web3.exceptions import Web3RPCError
from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

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

    def response(self, method: str, params: list[Any], body: bytes | None = None) -> RPCResponse:
        """The node's whole JSON-RPC response. ConnectionError if it cannot be had, TimeoutError if
        the node did not answer in time."""
        if body is None:
            body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}).encode()
        decoded: RPCResponse = self._exchange(method, body)
        return decoded

    def batch(self, method: str, params: list[list[Any]]) -> list[RPCResponse]:
        """One JSON-RPC batch request: `method` with each of `params`; the node's response to each,
        in the same order. Web3RPCError if the node does not take batch requests (some refuse
        them, or cap their size), ConnectionError / TimeoutError as for a single call."""
        ids = [next(self._ids) for _ in params]
        requests = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": p} for i, p in zip(ids, params, strict=True)
        ]
        replies = self._exchange(method, json.dumps(requests).encode())
        if not isinstance(replies, list):
            raise Web3RPCError(f"{method}: the node did not answer the batch request: {replies!r}")
        by_id: dict[Any, RPCResponse] = {r.get("id"): cast(RPCResponse, r) for r in replies if isinstance(r, dict)}
        missing: RPCResponse = {"error": {"code": -32603, "message": "no answer in the batch"}}
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

    def result(self, method: str, params: list[Any]) -> Any:
        """The result; Web3RPCError for an error response."""
        reply = self.response(method, params)
        if "error" in reply:
            raise Web3RPCError(repr(reply["error"]), rpc_response=reply)
        return reply.get("result")

    def simulation(self, method: str, params: list[Any]) -> Any:
        """The result of eth_call / eth_estimateGas; a revert raises web3.py's contract errors."""
        reply = self.response(method, params)
        if "error" in reply:
            raise_contract_logic_error_on_revert(reply)
            raise Web3RPCError(repr(reply["error"]), rpc_response=reply)
        return reply.get("result")


class NodeProvider(JSONBaseProvider):
    """A web3.py provider on a NodeRpc's connection pool."""

    def __init__(self, rpc: NodeRpc) -> None:
        super().__init__()
        self.rpc = rpc

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return self.rpc.response(method, params, body=self.encode_rpc_request(method, params))
