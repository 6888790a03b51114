"""Writes the ABIs of the deployed contracts from Ape's build output to relay/abi/ (committed, so the
relay and its SDK run without the contract toolchain; tests/relay/test_abi.py checks they match)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ["LoyaltyToken", "CurrencyRate", "ShopRegistry", "Ledger", "LoyaltyPayment"]


def compiled_abis() -> dict[str, list]:
    build = json.loads((ROOT / ".build" / "__local__.json").read_text())
    return {name: build["contractTypes"][name]["abi"] for name in CONTRACTS}


def main() -> int:
    out = ROOT / "relay" / "abi"
    out.mkdir(exist_ok=True)
    for name, abi in compiled_abis().items():
        (out / f"{name}.json").write_text(json.dumps(abi, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
