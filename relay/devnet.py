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

import httpx
from eth_account import Account

from relay import db as database
from relay import kiosks
from relay.config import ROOT

MNEMONIC = "test test test test test test test test test test test junk"
RPC_PORT, RELAY_PORT = 8545, 8000
DEMO_ACCESS_KEY = "demo-kiosk-access-key"
DEFAULT_CALLBACK_URL = "http://127.0.0.1:8001/callback"
VAR = ROOT / "var"

Account.enable_unaudited_hdwallet_features()


def anvil_key(index: int) -> str:
    return "0x" + Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(url: str, what: str, timeout: float = 30.0, json_body: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.post(url, json=json_body) if json_body else httpx.get(url)
            if response.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start within {timeout:.0f} s")


def _run(args: list[str], log: Path, env: dict[str, str]) -> None:
    with log.open("a") as out:
        result = subprocess.run(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed; see {log}")


def main() -> None:
    for port, what in ((RPC_PORT, "the chain"), (RELAY_PORT, "the relay")):
        if _port_in_use(port):
            raise SystemExit(f"Port {port} ({what}) is already in use; stop what runs there first.")
    VAR.mkdir(exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "SOLCX_BINARY_PATH": str(ROOT / ".solcx"),
        "PATH": f"{bin_dir}{os.pathsep}{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    processes: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print("Starting anvil on 127.0.0.1:8545 …", flush=True)
        anvil_log = (VAR / "anvil.log").open("w")
        processes.append(
            subprocess.Popen(
                ["anvil", "--host", "127.0.0.1", "--port", str(RPC_PORT), "--mnemonic", MNEMONIC],
                cwd=ROOT,
                env=env,
                stdout=anvil_log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_for(
            f"http://127.0.0.1:{RPC_PORT}",
            "anvil",
            json_body={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        )

        print("Deploying the contracts and the demo data …", flush=True)
        deploy_log = VAR / "deploy.log"
        deploy_log.write_text("")
        ape = str(bin_dir / "ape")
        _run([ape, "run", "deploy", "--network", "ethereum:local:node"], deploy_log, env)
        _run([ape, "run", "demo_data", "--network", "ethereum:local:node"], deploy_log, env)
        deployment = json.loads((ROOT / "deployments" / "local.json").read_text())
        demo = deployment["demo"]

        db_file = VAR / "relay.sqlite3"
        for stale in VAR.glob("relay.sqlite3*"):
            stale.unlink()  # a new chain: start with an empty database
        db_url = f"sqlite:///{db_file}"
        database.upgrade(db_url)
        callback_url = os.environ.get("RELAY_DEMO_CALLBACK_URL", DEFAULT_CALLBACK_URL)
        with database.Database(db_url).session() as session:
            kiosk = kiosks.add(session, "Demo KIOSK", [demo["shopId"]], callback_url, DEMO_ACCESS_KEY)
        admin_password = secrets.token_urlsafe(12)

        print("Starting the relay on 127.0.0.1:8000 …", flush=True)
        relay_env = env | {
            "RELAY_DATABASE_URL": db_url,
            "RELAY_RPC_URL": f"http://127.0.0.1:{RPC_PORT}",
            "RELAY_DEPLOYMENT_FILE": str(ROOT / "deployments" / "local.json"),
            "RELAY_SIGNER_KEYS": anvil_key(0),
            "RELAY_ADMIN_PASSWORD": admin_password,
        }
        relay_log = (VAR / "relay.log").open("w")
        processes.append(
            subprocess.Popen(
                [str(bin_dir / "loyalty"), "serve", "--host", "127.0.0.1", "--port", str(RELAY_PORT)],
                cwd=ROOT,
                env=relay_env,
                stdout=relay_log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_for(f"http://127.0.0.1:{RELAY_PORT}/openapi.json", "the relay")

        contracts = "\n".join(f"    {name:15} {address}" for name, address in deployment["contracts"].items())
        print(
            f"""
Loyalty payment system is running.

  Chain       http://127.0.0.1:{RPC_PORT}  (anvil, chain id {deployment["chainId"]})
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
        raise SystemExit(f"`{' '.join(map(str, failed.args))}` exited with {failed.returncode}; see var/")
    except KeyboardInterrupt:
        print("\nStopping …", flush=True)
    finally:
        stop()


if __name__ == "__main__":
    main()
