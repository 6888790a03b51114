"""Client CPU of one JSON-RPC call: relay.chain.rpc against web3.py's provider alone and against
web3.py's `w3.eth` methods, each calling a stub node (a separate process answering canned results),
so only the caller's CPU is measured.

    python -m tools.bench_rpc [--calls 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_typing import HexStr
from web3 import Web3

from relay.chain.rpc import NodeRpc

TO, TX = "0x" + "33" * 20, "0x" + "77" * 32
RECEIPT = {
    "blockHash": "0x" + "11" * 32,
    "blockNumber": "0x10",
    "contractAddress": None,
    "cumulativeGasUsed": "0x5208",
    "effectiveGasPrice": "0x3b9aca00",
    "from": "0x" + "22" * 20,
    "gasUsed": "0x5208",
    "logsBloom": "0x" + "00" * 256,
    "status": "0x1",
    "to": TO,
    "transactionHash": TX,
    "transactionIndex": "0x0",
    "type": "0x0",
    "logs": [
        {
            "address": TO,
            "topics": ["0x" + "44" * 32, "0x" + "55" * 32],
            "data": "0x" + "66" * 64,
            "blockNumber": "0x10",
            "transactionHash": TX,
            "transactionIndex": "0x0",
            "blockHash": "0x" + "11" * 32,
            "logIndex": "0x0",
            "removed": False,
        }
    ],
}


class _Node(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method = request["method"]
        result: Any = RECEIPT if method == "eth_getTransactionReceipt" else "0x1"
        if method == "eth_call":
            result = "0x" + "00" * 31 + "07"
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        ThreadingHTTPServer(("127.0.0.1", args.serve), _Node).serve_forever()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = subprocess.Popen([sys.executable, "-m", "tools.bench_rpc", "--serve", str(port)])
    try:
        for _ in range(300):  # until the node listens
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        rpc, w3, call = NodeRpc(url, 10), Web3(Web3.HTTPProvider(url)), {"to": TO, "data": "0x12345678"}
        cases: dict[str, Callable[[], Any]] = {
            "eth_call, relay.chain.rpc": lambda: rpc.result("eth_call", [call, "latest"]),
            "eth_call, web3.py provider": lambda: w3.provider.make_request("eth_call", [call, "latest"]),  # type: ignore[arg-type]
            "eth_call, web3.py w3.eth.call": lambda: w3.eth.call(
                {"to": Web3.to_checksum_address(TO), "data": HexStr("0x12345678")}
            ),
            "receipt, relay.chain.rpc": lambda: rpc.result("eth_getTransactionReceipt", [TX]),
            "receipt, web3.py provider": lambda: w3.provider.make_request("eth_getTransactionReceipt", [TX]),  # type: ignore[arg-type]
            "receipt, web3.py w3.eth": lambda: w3.eth.get_transaction_receipt(TX),  # type: ignore[arg-type]
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                start = time.process_time()
                for _ in range(args.calls):
                    fn()
                times[name].append((time.process_time() - start) / args.calls * 1e6)
        for name, spent in times.items():
            print(f"{name:32} {statistics.median(spent):6.0f} µs of CPU per call (median of {args.rounds} rounds)")
    finally:
        node.terminate()


if __name__ == "__main__":
    main()
