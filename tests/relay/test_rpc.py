"""relay.rpc against a scripted node: results, error responses and reverts raised as web3.py
raises them, an unreachable node as ConnectionError, and which calls are retried once when a
connection drops (reads) and which never are (sending a transaction)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from relay.rpc import NodeRpc
from tests.relay.conftest import _Server, free_port


class ScriptedNode:
    """Answers each JSON-RPC request with `answer(request)`: a dict to send, or None to drop the
    connection without answering."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: {"result": "0x1"}
        self.http = _Server(self._handle)
        self.url = self.http.url

    def _handle(self, path: str, headers: dict[str, str], body: str) -> tuple[int, dict[str, Any]] | None:
        request = json.loads(body)
        self.requests.append(request)
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


def test_result__error_response__web3_rpc_error_with_the_node_s_message(node):
    node.answer = lambda r: {"error": {"code": -32003, "message": "nonce too low"}}

    with pytest.raises(Web3RPCError, match="nonce too low"):
        NodeRpc(node.url, 5).result("eth_sendRawTransaction", ["0x00"])


def test_simulation__revert_with_custom_error__contract_custom_error_with_its_data(node):
    data = "0x8baa579f" + "00" * 32
    node.answer = lambda r: {"error": {"code": 3, "message": "execution reverted", "data": data}}

    with pytest.raises(ContractCustomError) as raised:
        NodeRpc(node.url, 5).simulation("eth_call", [{"to": "0x" + "11" * 20, "data": "0x"}, "latest"])
    assert raised.value.data == data


def test_simulation__revert_without_data__contract_logic_error(node):
    node.answer = lambda r: {"error": {"code": 3, "message": "execution reverted"}}

    with pytest.raises(ContractLogicError):
        NodeRpc(node.url, 5).simulation("eth_estimateGas", [{"to": "0x" + "11" * 20}, "pending"])


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
