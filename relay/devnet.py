"""`make run`: a complete local system in one command.

Starts anvil on 127.0.0.1:8545 (standard test mnemonic), deploys the contracts, creates the demo
fixture of DESIGN.md §8, registers the demo KIOSK and serves the relay on 127.0.0.1:8000 with a
SQLite database, then prints what it did. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from relay import db as database
from relay.cli import add_kiosk
from relay.config import ROOT

MNEMONIC = "test test test test test test test test test test test junk"
RPC_PORT, RELAY_PORT = 8545, 8000
DEMO_ACCESS_KEY = "demo-kiosk-access-key"
DEFAULT_CALLBACK_URL = "http://127.0.0.1:8001/callback"
VAR = ROOT / "var"

Account.enable_unaudited_hdwallet_features()


def anvil_key(index: int) -> str:
    key: bytes = Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key
    return "0x" + key.hex()


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def tool_env() -> dict[str, str]:
    """The environment the project's tools run in: the venv, node_modules/.bin, the solc front."""
    bin_dir = Path(sys.executable).parent
    return os.environ | {
        "SOLCX_BINARY_PATH": str(ROOT / ".solcx"),
        "PATH": f"{bin_dir}{os.pathsep}{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def wait_for(url: str, what: str, timeout: float = 30.0, json_body: dict[str, Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.post(url, json=json_body) if json_body else httpx.get(url)
            if response.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


def start_anvil(port: int, log: Path, accounts: int = 10, state: Path | None = None) -> subprocess.Popen[bytes]:
    """Starts anvil with the standard test mnemonic and waits until it answers. With `state`, the
    chain is loaded from that file and saved to it when anvil stops."""
    args = ["anvil", "--host", "127.0.0.1", "--port", str(port), "--mnemonic", MNEMONIC, "--accounts", str(accounts)]
    if state is not None:
        args += ["--state", str(state)]
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=tool_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    wait_for(f"http://127.0.0.1:{port}", "anvil", json_body=body)
    return process


def deploy(rpc_url: str, out: Path, relays: list[str], log: Path, demo: bool = True) -> dict[str, Any]:
    """`ape run deploy` (and the demo fixture) against `rpc_url`; returns the deployment file's data."""
    network = "ethereum:local:node" if rpc_url == f"http://127.0.0.1:{RPC_PORT}" else f"ethereum:local:{rpc_url}"
    ape = str(Path(sys.executable).parent / "ape")
    steps = [
        [ape, "run", "deploy", "--network", network, "--out", str(out), *(a for r in relays for a in ("--relay", r))]
    ]
    if demo:
        steps.append([ape, "run", "demo_data", "--network", network, "--deployment", str(out)])
    with log.open("a") as output:
        for args in steps:
            if subprocess.run(args, cwd=ROOT, env=tool_env(), stdout=output, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"`{' '.join(args)}` failed; see {log}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def relay_env(
    db_url: str, rpc_url: str, deployment_file: Path, signer_keys: list[str], **settings: Any
) -> dict[str, str]:
    """Environment for a relay process; extra keyword arguments become RELAY_* settings."""
    env = tool_env() | {
        "RELAY_DATABASE_URL": db_url,
        "RELAY_RPC_URL": rpc_url,
        "RELAY_DEPLOYMENT_FILE": str(deployment_file),
        "RELAY_SIGNER_KEYS": ",".join(signer_keys),
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",  # the demo's and the benchmarks' KIOSKs listen locally
    }
    return env | {f"RELAY_{key.upper()}": str(value) for key, value in settings.items()}


def start_relay(env: dict[str, str], port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    """Starts `loyalty serve` and waits until it answers."""
    loyalty = str(Path(sys.executable).parent / "loyalty")
    process = subprocess.Popen(
        [loyalty, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/openapi.json", "the relay")
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"the relay did not start; see {log}") from None
    return process


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    for port, what in ((RPC_PORT, "the chain"), (RELAY_PORT, "the relay")):
        if port_in_use(port):
            raise SystemExit(f"Port {port} ({what}) is already in use; stop what runs there first.")
    VAR.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print("Starting anvil on 127.0.0.1:8545 …", flush=True)
        rpc_url = f"http://127.0.0.1:{RPC_PORT}"
        processes.append(start_anvil(RPC_PORT, VAR / "anvil.log"))

        print("Deploying the contracts and the demo data …", flush=True)
        deploy_log = VAR / "deploy.log"
        deploy_log.write_text("")
        deployment_file = ROOT / "deployments" / "local.json"
        deployment = deploy(rpc_url, deployment_file, [], deploy_log)
        demo = deployment["demo"]

        for stale in VAR.glob("relay.sqlite3*"):
            stale.unlink()  # a new chain: start with an empty database
        db_url = f"sqlite:///{VAR / 'relay.sqlite3'}"
        database.upgrade(db_url)
        callback_url = os.environ.get("RELAY_DEMO_CALLBACK_URL", DEFAULT_CALLBACK_URL)
        with database.Database(db_url).session() as session:
            kiosk = add_kiosk(session, "Demo KIOSK", [demo["shopId"]], callback_url, DEMO_ACCESS_KEY)
        admin_password = secrets.token_urlsafe(12)

        print("Starting the relay on 127.0.0.1:8000 …", flush=True)
        env = relay_env(db_url, rpc_url, deployment_file, [anvil_key(0)], admin_password=admin_password)
        processes.append(start_relay(env, RELAY_PORT, VAR / "relay.log"))

        contracts = "\n".join(f"    {name:15} {address}" for name, address in deployment["contracts"].items())
        print(
            f"""
Loyalty payment system is running.

  Chain       {rpc_url}  (anvil, chain id {deployment["chainId"]})
  Contracts
{contracts}
  Demo shop   {demo["shopName"]}  shopId {demo["shopId"]}
              owner {demo["shopOwner"]} (anvil account 1)
  Users       {demo["pointUser"]}  1,000,000 points (anvil account 2)
              {demo["tokenUser"]}  10,000 THE9 tokens (anvil account 3)

  Relay       http://127.0.0.1:{RELAY_PORT}
  API docs    http://127.0.0.1:{RELAY_PORT}/docs   (OpenAPI: /openapi.json)
  KIOSK       access key {DEMO_ACCESS_KEY}
              callbacks to {callback_url}
              callback secret {kiosk.callback_secret}
  Admin       http://127.0.0.1:{RELAY_PORT}/admin  user admin  password {admin_password}

  Logs in var/ (anvil.log, deploy.log, relay.log). Try `make demo` in another terminal.
  Ctrl-C stops everything.
""",
            flush=True,
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        failed = next(process for process in processes if process.poll() is not None)
        raise SystemExit(f"`{failed.args!s}` exited with {failed.returncode}; see var/")
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    except KeyboardInterrupt:
        print("\nStopping …", flush=True)
    finally:
        stop(processes)


if __name__ == "__main__":
    main()
