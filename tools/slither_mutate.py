"""slither-mutate (run by .venv-tools' Python, where slither lives), adapted to tools/mutate.py:

- its own compile of each mutant is turned off: the test command (`mutate.py _test`) checks whether
  the mutant compiles, more cheaply, and only for a mutant it has no kept verdict for; a mutant that
  does not compile is then counted as caught by slither-mutate and as not compiling by mutate.py;
- the test command learns which mutator made the mutant (MUTATE_MUTATOR).

    python tools/slither_mutate.py <slither-mutate's arguments>
"""

from __future__ import annotations

import os
import sys
from typing import Any

from slither.tools.mutator.__main__ import main
from slither.tools.mutator.mutators import abstract_mutator
from slither.tools.mutator.utils import testing_generated_mutant


def test_patch(*args: Any, **kwargs: Any) -> int:
    """slither-mutate's test of one mutant, telling the test command which mutator made it."""
    os.environ["MUTATE_MUTATOR"] = kwargs.get("generator_name") or args[4]
    return testing_generated_mutant.test_patch(*args, **kwargs)


testing_generated_mutant.compile_generated_mutant = lambda *_: True
abstract_mutator.test_patch = test_patch

if __name__ == "__main__":
    sys.argv[0] = "slither-mutate"
    sys.exit(main())
