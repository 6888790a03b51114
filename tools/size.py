"""The relay's size against DESIGN.md §11: the core (relay/ without the SDK, the CLI, the dev
tools and the migrations) at most 3,500 lines, no module over 400, no class over 300.

    python tools/size.py [--check]      # --check exits 1 if a budget is exceeded
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_CORE = {"relay/sdk.py", "relay/cli.py", "relay/devnet.py", "relay/demo.py"}
CORE, MODULE, CLASS = 3_500, 400, 300


def main() -> int:
    modules = sorted(
        p for p in (ROOT / "relay").rglob("*.py")
        if "migrations" not in p.parts and str(p.relative_to(ROOT)) not in NOT_CORE
    )  # fmt: skip
    total, over = 0, []
    for path in modules:
        source = path.read_text()
        lines = len(source.splitlines())
        total += lines
        name = str(path.relative_to(ROOT))
        print(f"{lines:6} {name}")
        if lines > MODULE:
            over.append(f"{name}: {lines} lines > {MODULE}")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and (size := (node.end_lineno or 0) - node.lineno + 1) > CLASS:
                over.append(f"{name}: class {node.name} has {size} lines > {CLASS}")
    print(f"{total:6} relay core (budget {CORE})")
    if total > CORE:
        over.append(f"relay core: {total} lines > {CORE}")
    for problem in over:
        print("over budget:", problem)
    return 1 if over and "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
