"""relay.rpc against a scripted node: results, error responses and reverts raised as web3.py
raises them, an unreachable node as ConnectionError, which calls are retried once when a
connection drops (reads) and which never are (sending a transaction), and the pause after a node
stops answering."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from relay.chain.rpc import NodeRpc, Reverted, RpcError
from tests.relay.conftest import _Server, free_port


class ScriptedNode:
    """Answers each JSON-RPC request with `answer(request)`: a dict to send, or None to drop the
    connection without answering."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[tuple[str, dict[str, str]]] = []  # each request's path and headers
        self.answer: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: {"result": "0x1"}
        self.http = _Server(self._handle)
        self.url = self.http.url

    def _handle(self, path: str, headers: dict[str, str], body: str) -> tuple[int, dict[str, Any]] | None:
        request = json.loads(body)
        self.requests.append(request)
        self.paths.append((path, headers))
        reply = self.answer(request)
        return None if reply is None else (200, {"jsonrpc": "2.0", "id": request["id"], **reply})


@pytest.fixture
def node() -> Iterator[ScriptedNode]:
    scripted = ScriptedNode()
    yield scripted
    scripted.http.close()


def test_result__the_node_s_result_for_the_request_sent(node):
    node.answer = lambda r: {"result": hex(int(r["params"][0], 16) + 1)}

    assert NodeRpc(node.url, 5).result("eth_getBlockByNumber", ["0x29"]) == "0x2a"
    assert [(r["method"], r["params"]) for r in node.requests] == [("eth_getBlockByNumber", ["0x29"])]


def test_url__path_and_query_reach_the_node__credentials_as_basic_auth_not_in_the_request_line(node):
    host = node.url.removeprefix("http://")
    rpc = NodeRpc(f"http://relay%40shop:p%3Ass@{host}/v3/KEY?apikey=QUERY", 5)

    assert rpc.result("eth_chainId", []) == "0x1"
    [(path, headers)] = node.paths
    assert path == "/v3/KEY?apikey=QUERY"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"relay@shop:p:ss").decode()


def test_url__without_credentials__no_authorization_header(node):
    NodeRpc(node.url, 5).result("eth_chainId", [])

    [(path, headers)] = node.paths
    assert path == "/" and "authorization" not in headers


def test_result__error_response__rpc_error_with_the_node_s_message(node):
    node.answer = lambda r: {"error": {"code": -32003, "message": "nonce too low"}}

    with pytest.raises(RpcError, match="nonce too low") as raised:
        NodeRpc(node.url, 5).result("eth_sendRawTransaction", ["0x00"])
    assert not isinstance(raised.value, Reverted)


def test_result__revert_with_custom_error__reverted_with_its_data(node):
    data = "0x8baa579f" + "00" * 32
    node.answer = lambda r: {"error": {"code": 3, "message": "execution reverted", "data": data}}

    with pytest.raises(Reverted) as raised:
        NodeRpc(node.url, 5).result("eth_call", [{"to": "0x" + "11" * 20, "data": "0x"}, "latest"])
    assert raised.value.data == bytes.fromhex(data[2:])


def test_result__revert_without_data__reverted_with_no_data(node):
    node.answer = lambda r: {"error": {"code": -32000, "message": "execution reverted"}}

    with pytest.raises(Reverted) as raised:
        NodeRpc(node.url, 5).result("eth_estimateGas", [{"to": "0x" + "11" * 20}, "pending"])
    assert raised.value.data == b""


def test_unreachable_node__connection_error():
    with pytest.raises(ConnectionError):
        NodeRpc(f"http://127.0.0.1:{free_port()}", 5).result("eth_blockNumber", [])


def test_dropped_connection__a_read_is_asked_again_once(node):
    answers = iter([None, {"result": "0x7"}])
    node.answer = lambda r: next(answers)

    assert NodeRpc(node.url, 5).result("eth_blockNumber", []) == "0x7"
    assert len(node.requests) == 2


def test_dropped_connection__a_transaction_is_never_sent_twice(node):
    node.answer = lambda r: None

    with pytest.raises(ConnectionError):
        NodeRpc(node.url, 5).result("eth_sendRawTransaction", ["0x00"])
    assert len(node.requests) == 1


def _hangs(seconds: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        time.sleep(seconds)
        return {"result": "0x1"}

    return answer


# Failing without asking the node: well under the 0.3 s a call that asks it waits, with room for a
# busy machine's scheduling.
AT_ONCE = 0.15


def _timed(fn: Callable[[], Any]) -> tuple[type[BaseException] | None, float]:
    start = time.monotonic()
    try:
        fn()
    except (ConnectionError, TimeoutError) as exc:
        return type(exc), time.monotonic() - start
    return None, time.monotonic() - start


def test_node_not_answering__a_read_times_out_once_and_is_not_asked_again(node):
    node.answer = _hangs(1.5)
    rpc = NodeRpc(node.url, 0.4)

    error, took = _timed(lambda: rpc.result("eth_blockNumber", []))
    assert error is TimeoutError and took < 0.75  # one timeout, not one per attempt
    assert len(node.requests) == 1


def test_node_not_answering__calls_fail_at_once_until_a_probe_is_answered(node):
    node.answer = _hangs(1.0)
    rpc = NodeRpc(node.url, 0.3, pause=0.6)
    assert _timed(lambda: rpc.result("eth_blockNumber", []))[0] is TimeoutError

    # Paused: every call fails at once without asking the node, sends included.
    for method in ("eth_blockNumber", "eth_call", "eth_sendRawTransaction"):
        error, took = _timed(lambda m=method: rpc.result(m, []))
        assert error is ConnectionError and took < AT_ONCE
    assert len(node.requests) == 1

    # Pause over, node still hanging: one call probes it; the others fail at once meanwhile.
    time.sleep(0.7)
    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(_timed, lambda: rpc.result("eth_blockNumber", []))
        time.sleep(0.1)
        error, took = _timed(lambda: rpc.result("eth_blockNumber", []))
        assert error is ConnectionError and took < AT_ONCE
        assert probe.result()[0] is TimeoutError
    assert len(node.requests) == 2

    # The node answers again: after the new pause the probe's answer ends it for every call.
    node.answer = lambda r: {"result": "0x2"}
    assert _timed(lambda: rpc.result("eth_blockNumber", []))[0] is ConnectionError
    time.sleep(0.7)
    assert [rpc.result("eth_blockNumber", []) for _ in range(3)] == ["0x2"] * 3
    assert len(node.requests) == 5


def test_node_refusing_connections__not_paused():
    """A node that is down answers at once (connection refused): nothing to wait for, no pause."""
    rpc = NodeRpc(f"http://127.0.0.1:{free_port()}", 5, pause=60)
    for _ in range(2):
        with pytest.raises(ConnectionError) as refused:
            rpc.result("eth_blockNumber", [])
        assert "not asked again" not in str(refused.value)


def test_get_logs_timing_out__starts_no_pause(node):
    """eth_getLogs takes as long as the block range asked for: its timeout says the range was too
    big, not that the node hangs."""
    node.answer = lambda r: _hangs(1.0)(r) if r["method"] == "eth_getLogs" else {"result": "0x3"}
    rpc = NodeRpc(node.url, 0.3)

    assert _timed(lambda: rpc.result("eth_getLogs", [{}]))[0] is TimeoutError
    assert rpc.result("eth_blockNumber", []) == "0x3"


def test_pause_starts_short_and_doubles_while_the_node_keeps_timing_out(node):
    """A single slow call turns calls away only briefly; a node that keeps hanging is probed less
    and less often; an answer starts the count again."""
    hang = True
    node.answer = lambda r: _hangs(0.6)(r) if hang else {"result": "0x4"}
    rpc = NodeRpc(node.url, 0.2, pause=1.6, first_pause=0.2)

    def pause() -> float:
        """How long calls fail at once after a timeout, until one probes the node (and times out)."""
        start = time.monotonic()
        while True:
            began = time.monotonic()
            error, _ = _timed(lambda: rpc.result("eth_blockNumber", []))
            if error is TimeoutError:
                return began - start
            assert error is ConnectionError and began - start < 3
            time.sleep(0.01)

    assert _timed(lambda: rpc.result("eth_blockNumber", []))[0] is TimeoutError
    pauses = [pause() for _ in range(4)]
    assert 0.15 < pauses[0] < 0.35
    assert 0.35 < pauses[1] < 0.6
    assert 0.75 < pauses[2] < 1.0
    assert 1.55 < pauses[3] < 1.8  # the longest pause

    hang = False
    time.sleep(1.7)
    assert rpc.result("eth_blockNumber", []) == "0x4"
    hang = True
    assert _timed(lambda: rpc.result("eth_blockNumber", []))[0] is TimeoutError
    assert 0.15 < pause() < 0.35
