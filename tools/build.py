"""Keeps Ape's build output in step with the contract sources, for tools/setup.sh and the contract tests.

The build is fresh when the checksum of ape-config.yaml and contracts/**/*.sol equals the one recorded
in .stamps/contracts when it was compiled. Otherwise every contract is compiled again, as by
`ape compile --force`: Ape's own change check looks only at the source file of the contract asked for,
so a contract whose imported file changed would keep its old bytecode. The relay's ABIs are exported
after each build (tools/export_abi.py), so the stamp never marks a build whose ABIs were not exported.

    python tools/build.py           compile if stale
    python tools/build.py --check   exit 1 if stale, compile nothing
    python tools/build.py --force   compile
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
STAMP = ROOT / ".stamps" / "contracts"
BUILD = ROOT / ".build" / "__local__.json"
# ape-solidity unpacks dependencies (OpenZeppelin) here when it compiles; not our sources.
DEPENDENCY_COPY = CONTRACTS / ".cache"


def sources(root: Path = ROOT) -> list[Path]:
    contracts = root / CONTRACTS.relative_to(ROOT)
    dependency_copy = root / DEPENDENCY_COPY.relative_to(ROOT)
    return [root / "ape-config.yaml", *sorted(p for p in contracts.rglob("*.sol") if dependency_copy not in p.parents)]


def checksum(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in sources(root):
        digest.update(f"{path.relative_to(root)}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def is_fresh() -> bool:
    return BUILD.is_file() and STAMP.is_file() and STAMP.read_text().strip() == checksum()


def build() -> None:
    """Compiles every contract in this process's Ape project, exports the ABIs, records the checksum."""
    from ape import project

    from tools.export_abi import main as export_abis

    source_sum = checksum()  # taken first: a file edited during the build leaves the build stale
    project.load_contracts(use_cache=False)
    export_abis()
    STAMP.parent.mkdir(exist_ok=True)
    STAMP.write_text(source_sum + "\n")


def build_if_stale() -> bool:
    if is_fresh():
        return False
    build()
    return True


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        return 0 if is_fresh() else 1
    if argv == ["--force"]:
        build()
    elif not argv:
        build_if_stale()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Ape's `project` is the one in the working directory; `tools.export_abi` is imported from ROOT.
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
