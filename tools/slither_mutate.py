"""slither-mutate (run by .venv-tools' Python, where slither lives) with a cheaper check of whether a
mutant compiles.

slither-mutate compiles each mutant with crytic-compile before running the tests, which compile it
again: about 6 s of CPU per mutant through solc-js, a third of a killed mutant's cost. Whether a
mutant compiles is settled by the compiler's analysis (parsing, names, types), which runs without
code generation when no bytecode is asked for: about 1 s. A mutant that passes the analysis but
fails code generation (stack too deep) is still caught, by the test run's own compile
(tools/mutate.py records it as a compile error). The test command learns which mutator made the
mutant from MUTATE_MUTATOR.

    python tools/slither_mutate.py <slither-mutate's arguments>
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from slither.tools.mutator.__main__ import main
from slither.tools.mutator.mutators import abstract_mutator
from slither.tools.mutator.utils import testing_generated_mutant


def analyses(file_path: str, mappings: str | None = None) -> bool:
    """Whether the (mutated) source passes the compiler's analysis, with `solc` on PATH."""
    settings = {"remappings": mappings.split(",") if mappings else [], "outputSelection": {"*": {"": ["ast"]}}}
    source = {file_path: {"content": Path(file_path).read_text()}}
    request = json.dumps({"language": "Solidity", "sources": source, "settings": settings})
    run = subprocess.run(["solc", "--standard-json", "--base-path", "."], input=request, capture_output=True, text=True)
    try:
        problems = json.loads(run.stdout).get("errors", [])
    except ValueError:
        return False
    return run.returncode == 0 and not any(p.get("severity") == "error" for p in problems)


def test_patch(*args: Any, **kwargs: Any) -> int:
    """slither-mutate's test of one mutant, telling the test command which mutator made it."""
    os.environ["MUTATE_MUTATOR"] = kwargs.get("generator_name") or args[4]
    return testing_generated_mutant.test_patch(*args, **kwargs)


testing_generated_mutant.compile_generated_mutant = analyses
abstract_mutator.test_patch = test_patch

if __name__ == "__main__":
    sys.argv[0] = "slither-mutate"
    sys.exit(main())
