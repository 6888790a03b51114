"""Mutation testing of the contracts (`make mutate`) with slither-mutate, against the unit and property tests.

slither-mutate writes each mutant into the source file itself, so everything runs in a copy of the
working tree under var/mutate/repo (.venv and node_modules linked); the working tree is never touched.
The unmutated sources are compiled from scratch (tools/build.py --force) and must pass the tests (run once per
fingerprint, below).
For every mutant that compiles, this script's `_test` command (slither-mutate's --test-cmd) runs
the tests, failing fast, under a timeout, and records the mutant's diff and what happened. Mutants
are tried one contract at a time, in slither-mutate's default mode: once a line survives being
reverted or commented out (RR, CR), the lesser mutators skip it. The summary goes to
var/mutate/report.txt.

What makes a mutant cheaper, without changing its verdict:
- Whether a mutant compiles is settled by the compiler's analysis only, without code generation (in
  `_test`, in place of slither-mutate's full compile, which tools/slither_mutate.py turns off), and
  not at all for a mutant whose verdict is kept (below).
- One process compiles and tests. The tests run under `ape test -p tools.mutate`, and this module's
  pytest hook compiles before tests/conftest.py checks that the build is fresh (tools/build.py's
  checksum), so Ape and its plugins load once per mutant, not twice.
- Only what changed is compiled: every source whose text differs from the text Ape's build was
  compiled from (the mutated file, and the file the previous mutant changed, now restored), and every
  source importing one of them, directly or not; Ape merges their new contract types into the build.
  The other contracts' bytecode is that of their unchanged sources. Ape's own change check cannot be
  used: it looks only at a contract's own file, not at the files it imports.
- The unit tests that killed the latest mutants run first (a mutant is most often killed by a test that
  killed one on a nearby line), then the mutated contract's own test files (OWN_TESTS, TESTS_FIRST in
  tests/conftest.py), then the others; -x stops at the first failure, so most mutants die within
  seconds. The order changes no verdict: each unit test runs on a chain snapshot of its own. A mutant
  the unit tests do not kill then runs the property tests, in a session of their own (PROPERTY_TESTS).

    python tools/mutate.py --summary
    python tools/mutate.py [--list] [--timeout SECONDS] [--mutators RR,CR,ROR,...] [--from-line N] [contracts/X.sol ...]

--list checks that each mutant compiles without testing it, to count them (an upper bound: a real run skips lines
whose RR or CR mutant survived). Without files: every contracts/**/*.sol but test/ and interfaces/.
--from-line N tests only the mutants from line N on, to finish a mutator an earlier campaign tested up to
line N (with one mutator per run; the lines before count as caught, as they were in that campaign).

Every verdict (killed, survived or not compiling) is kept in docs/mutants.jsonl with the fingerprint of what decides it
(the contract sources and the contract tests): a campaign run again on the same fingerprint takes a
mutant's kept verdict instead of testing it, so a campaign of several hours can be stopped and resumed,
and the file is the record of every mutant tested on the current sources.
A campaign builds on an earlier fingerprint (its base, and that one's base, and so on) when the only
change since is new unit test files (tests/unit/test_*.py), every other deciding file as it was: a kill
or a failure to compile holds as it was (the test that killed is unchanged, and each unit test runs on a
chain snapshot of its own), and a survivor is tested again against the files added since only (all the
others passed on it already).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Several campaigns (different contracts) may run at once, each in a directory of its own.
VAR = Path(os.environ.get("MUTATE_DIR", ROOT / "var" / "mutate"))
REPO = VAR / "repo"
PRISTINE = VAR / "pristine"
SLITHER_MUTATE = ROOT / ".venv-tools" / "bin" / "slither-mutate"
SLITHER_PYTHON = ROOT / ".venv-tools" / "bin" / "python"  # runs tools/slither_mutate.py
REMAPS = "@openzeppelin/contracts=node_modules/@openzeppelin/contracts"
# A fixed Hypothesis seed, so that a mutant's verdict is reproducible. The relay tests' pytest plugins
# (schemathesis, anyio) are not loaded: they doubled the start-up of every mutant's run (5 s of CPU
# against 9 here), and the contract tests use neither.
OPTIONS = ["-x", "-q", "--hypothesis-seed=0", "-p", "no:schemathesis", "-p", "no:anyio"]
UNIT_TESTS = ["ape", "test", "tests/unit", *OPTIONS]
# The property tests (minutes) run only once the unit tests (seconds to the first failure) pass, in a
# session of their own, so the unit tests can be reordered killers-first without moving them.
PROPERTY_TESTS = ["ape", "test", "tests/properties", *OPTIONS]
LINKED = [".venv", "node_modules"]
NOT_COPIED = {".git", ".venv-tools", "var", ".build", ".stamps", ".hypothesis", "__pycache__", ".mypy_cache"}
NOT_COPIED |= {".ruff_cache", ".pytest_cache", *LINKED}
NOT_MUTATED = {"test", "interfaces", ".cache"}  # under contracts/: mocks, interfaces, Ape's dependency copy
# The verdicts of earlier campaigns, and what decides a verdict besides the mutant (see the docstring).
KEPT = ROOT / "docs" / "mutants.jsonl"
DECIDING = ["contracts/**/*.sol", "tests/*.py", "tests/unit/**/*.py", "tests/properties/**/*.py"]
DECIDING += ["tests/utils/**/*.py", "ape-config.yaml", "tools/build.py"]
BASES = "MUTATE_BASES"  # JSON: the bases (below), closest first, each with the test files added since
# slither-mutate's log line for each mutant; its strings may span lines.
VERDICT = re.compile(r"\[(\w+)\] Line (\d+): '(.*?)' ==> '(.*?)' --> (CAUGHT|UNCAUGHT|COMPILATION FAILURE)\n", re.S)


# ---------------------------------------------------------------- one mutant (slither-mutate's --test-cmd)


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Runs `cmd` in a process group of its own (ape starts anvil), killed whole on timeout."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
    )
    try:
        output, _ = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


def _verdict(code: int | None, output: str) -> tuple[str, str]:
    if code is None:
        return "timeout", output[-2000:]
    if code == 0:
        return "survived", ""
    failed = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return "killed", (failed[0] if failed else output[-2000:])


def compile_all_and_test(timeout: float) -> tuple[str, str]:
    """Compiles every contract and runs the tests in the working directory: (outcome, detail)."""
    start = time.monotonic()
    code, output = _run([sys.executable, "tools/build.py", "--force"], timeout)
    if code != 0:
        return ("timeout" if code is None else "compile-error"), output[-2000:]
    outcome, detail = _verdict(*_run(UNIT_TESTS, timeout - (time.monotonic() - start)))
    if outcome != "survived":
        return outcome, detail
    return _verdict(*_run(PROPERTY_TESTS, timeout - (time.monotonic() - start)))


# The pytest hook below writes here what it compiled ("compiled: ...") or why compiling failed.
BUILD_RESULT = "MUTATE_BUILD_RESULT"
IMPORT = re.compile(r"""^\s*import\s+(?:[^;]*?\bfrom\s+)?["']([^"']+)["']""", re.M)


def _sources(root: Path) -> dict[str, str]:
    """Every contract source under root/contracts (not Ape's dependency copy): path relative to root -> text."""
    found = (p for p in (root / "contracts").rglob("*.sol") if ".cache" not in p.relative_to(root).parts)
    return {p.relative_to(root).as_posix(): p.read_text() for p in found}


def to_compile(root: Path) -> list[str]:
    """The sources whose text differs from the text Ape's build in root was compiled from, with every
    source that imports one of them, directly or not."""
    manifest = json.loads((root / ".build" / "__local__.json").read_text()).get("sources") or {}

    def text(source: str | None) -> str:  # as Ape stores a source (ethpm-types)
        return f"{source.rstrip()}\n" if source else ""

    sources = _sources(root)
    changed = {name for name, body in sources.items() if text(body) != text((manifest.get(name) or {}).get("content"))}
    imports = {
        name: {(Path(name).parent / target).as_posix() for target in IMPORT.findall(body) if target.startswith(".")}
        for name, body in sources.items()
    }
    imports = {name: {os.path.normpath(target) for target in targets} for name, targets in imports.items()}
    while new := {name for name, targets in imports.items() if targets & changed and name not in changed}:
        changed |= new
    return sorted(changed)


def pytest_load_initial_conftests(early_config: object, parser: object, args: list[str]) -> None:
    """A mutant's run (`ape test -p tools.mutate`, BUILD_RESULT set): compiles what changed, and records
    the build's checksum as tools/build.py does, before tests/conftest.py loads and checks it."""
    result_path = os.environ.get(BUILD_RESULT)
    if not result_path:
        return
    from ape import project

    from tools import build
    from tools.export_abi import main as export_abis

    root = Path.cwd()
    names = to_compile(root)
    source_sum = build.checksum(root)
    try:
        project.load_contracts(*names, use_cache=False)
        export_abis()
    except Exception as error:  # any failure to compile is the mutant's verdict
        Path(result_path).write_text(f"compile-error: {type(error).__name__}: {error}")
        raise SystemExit(3) from None
    build.STAMP.parent.mkdir(exist_ok=True)
    build.STAMP.write_text(source_sum + "\n")
    Path(result_path).write_text("compiled: " + " ".join(names))


# Tests that killed the latest mutants (pytest node ids, latest first), run before all others.
KILLERS_FIRST = "MUTATE_KILLERS_FIRST"
KILLERS_KEPT = 30


@pytest.hookimpl(trylast=True)  # after tests/conftest.py's TESTS_FIRST order, which the stable sort keeps
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {node: i for i, node in enumerate(filter(None, os.environ.get(KILLERS_FIRST, "").split("\n")))}
    if rank:
        items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))


def unmutated_run() -> float | None:
    """Compiles the unmutated sources from scratch and runs the tests on them, once per fingerprint
    (an earlier campaign's pass is kept): the seconds the tests took, None if they fail."""
    fingerprint = os.environ["MUTATE_FINGERPRINT"]
    kept = _kept()
    passed = next((r for r in kept if r["fingerprint"] == fingerprint and r["outcome"] == "unmutated passed"), None)
    print(
        f"Unmutated run: {shlex.join(UNIT_TESTS)}, then {shlex.join(PROPERTY_TESTS)}"
        + (" (passed before: compiling only)" if passed else ""),
        flush=True,
    )
    start = time.monotonic()
    if passed is not None:
        code, output = _run([sys.executable, "tools/build.py", "--force"], 3600)
        outcome, detail = ("survived", "") if code == 0 else ("compile-error", output[-2000:])
    else:
        outcome, detail = compile_all_and_test(timeout=3600)
    if outcome != "survived":
        print(f"The unmutated contracts do not pass ({outcome}):\n{detail}", file=sys.stderr)
        return None
    if passed is not None:
        return float(passed["seconds"])
    seconds = time.monotonic() - start
    with KEPT.open("a") as out:
        out.write(json.dumps({"fingerprint": fingerprint, "outcome": "unmutated passed", "seconds": seconds}) + "\n")
    return seconds


def compile_and_test(timeout: float, tests: list[str] | None = None) -> tuple[str, str]:
    """Compiles what the mutant changed and runs the unit tests in the working directory (the copy), in one
    process, then, if they pass, the property tests in another: (outcome, detail). With `tests`, runs only
    those (a survivor of the base, on which all the others passed)."""
    start = time.monotonic()
    result = VAR / "build-result.txt"
    result.unlink(missing_ok=True)
    killers_path = VAR / "killers.txt"
    killers = killers_path.read_text().splitlines() if killers_path.exists() else []
    env = dict(os.environ, PYTHONPATH=str(Path.cwd()), **{BUILD_RESULT: str(result), KILLERS_FIRST: "\n".join(killers)})
    unit = UNIT_TESTS if tests is None else [*UNIT_TESTS[:2], *tests, *OPTIONS]
    code, output = _run([*unit[:2], "-p", "tools.mutate", *unit[2:]], timeout, env)
    built = result.read_text() if result.exists() else ""
    if built.startswith("compile-error"):
        return "compile-error", built[-2000:]
    if not built.startswith("compiled:"):
        return ("timeout" if code is None else "error"), f"the build hook did not run\n{output[-2000:]}"
    outcome, detail = _verdict(code, output)
    if outcome == "survived" and tests is None:
        return _verdict(*_run(PROPERTY_TESTS, timeout - (time.monotonic() - start)))
    if outcome == "killed" and detail.startswith("FAILED "):
        killer = detail.removeprefix("FAILED ").split(" - ", 1)[0]
        killers = [killer, *(k for k in killers if k != killer)][:KILLERS_KEPT]
        killers_path.write_text("".join(f"{k}\n" for k in killers))
    return outcome, detail


def mutation() -> tuple[str, int, str] | None:
    """The mutated file (relative to the repository), its first changed line and the diff."""
    for original in sorted(PRISTINE.rglob("*.sol")):
        rel = original.relative_to(PRISTINE)
        before = original.read_text().splitlines(keepends=True)
        after = (Path("contracts") / rel).read_text().splitlines(keepends=True)
        if before != after:
            line = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), len(before))
            name = f"contracts/{rel}"
            return name, line + 1, "".join(difflib.unified_diff(before, after, f"a/{name}", f"b/{name}", n=0))
    return None


def fingerprint(root: Path) -> str:
    files = sorted({p for pattern in DECIDING for p in root.glob(pattern) if ".cache" not in p.parts})
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def deciding_files(root: Path) -> dict[str, str]:
    """Each file that decides a verdict (DECIDING), relative to root -> the SHA-256 of its bytes."""
    files = sorted({p for pattern in DECIDING for p in root.glob(pattern) if ".cache" not in p.parts})
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def base_of(files: dict[str, str], kept: list[dict[str, Any]]) -> tuple[str, list[str]] | None:
    """The closest earlier fingerprint whose deciding files are all in `files` as they were, with only unit
    test files added: (that fingerprint, the added files)."""
    bases = []
    for record in kept:
        if record["outcome"] == "files" and all(files.get(path) == sha for path, sha in record["files"].items()):
            added = sorted(set(files) - set(record["files"]))
            if added and all(re.fullmatch(r"tests/unit/test_\w+\.py", path) for path in added):
                bases.append((record["fingerprint"], added))
    return min(bases, key=lambda base: len(base[1]), default=None)


def bases_of(files: dict[str, str], kept: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The base of `files`, its base, and so on: (fingerprint, the test files added since it) each."""
    chain, base_files = [], files
    while base := base_of(base_files, kept):
        base_files = next(r["files"] for r in kept if r["outcome"] == "files" and r["fingerprint"] == base[0])
        chain.append((base[0], sorted(set(files) - set(base_files))))
    return chain


def kept_verdict(file: str, line_no: int, diff: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The verdict an earlier campaign gave this mutant on the same fingerprint, or else on the closest base
    that has one, with the test files added since that base (none for the same fingerprint)."""
    change = _change(diff)
    found = {
        record["fingerprint"]: record
        for record in _kept(Path(os.environ.get("MUTATE_KEPT", KEPT)))
        if (record.get("file"), record.get("line"), record.get("change")) == (file, line_no, change)
    }
    chain = [(os.environ["MUTATE_FINGERPRINT"], []), *json.loads(os.environ.get(BASES) or "[]")]
    return next(((found[fp], added) for fp, added in chain if fp in found), (None, []))


def _kept(path: Path = KEPT) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def verdicts(root: Path = ROOT) -> tuple[list[str], list[dict[str, Any]]]:
    """The fingerprint of root's sources and tests followed by its bases, and the kept verdict of each mutant
    on them: the current fingerprint's, or else its base's (a base's survivor may be killed by the tests
    added since: a lower bound until a campaign on the current fingerprint tests it against them)."""
    kept = _kept()
    chain = [fingerprint(root), *(fp for fp, _ in bases_of(deciding_files(root), kept))]
    found: dict[tuple[str, int, str], dict[str, Any]] = {}
    for fp in reversed(chain):
        found.update({(r["file"], r["line"], r["change"]): r for r in kept if r["fingerprint"] == fp and r.get("file")})
    return chain, list(found.values())


def summary() -> str:
    """The kept verdicts on the working tree's sources and tests, per contract and mutator, in Markdown,
    and each survivor."""
    chain, kept = verdicts()
    bases = f" (where it has no verdict: of its bases, closest first, {', '.join(chain[1:])})"
    current = chain[0] + (bases if chain[1:] else "")
    counts = Counter((Path(r["file"]).stem, r.get("mutator") or "?", r["outcome"]) for r in kept)
    rows = sorted({(contract, mutator) for contract, mutator, _ in counts})
    out = [f"Kept verdicts for fingerprint {current} ({KEPT.relative_to(ROOT)}):", ""]
    out += [
        "| contract | mutator | did not compile | tested | killed | survived | kill rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, keys in [*((f"{c} | {m}", [(c, m)]) for c, m in rows), ("**total** |", rows)]:
        killed = sum(counts[(*key, "killed")] for key in keys)
        survived = sum(counts[(*key, "survived")] for key in keys)
        failed = sum(counts[(*key, "no-compile")] for key in keys)
        rate = f"{100 * killed / (killed + survived):.1f} %" if killed + survived else "-"
        out.append(f"| {label} | {failed} | {killed + survived} | {killed} | {survived} | {rate} |")
    out += ["", "Survivors:"]
    for r in kept:
        if r["outcome"] == "survived":
            out += [
                f"  {r['file']}:{r['line']} [{r.get('mutator') or '?'}]",
                *("    " + c for c in r["change"].splitlines()),
            ]
    return "\n".join(out) + "\n"


def _change(diff: str) -> str:
    """A diff's changed lines without its file names and line numbers."""
    return "".join(
        line for line in diff.splitlines(keepends=True) if line[:1] in "+-" and not line.startswith(("+++ ", "--- "))
    )


def analysis_error(file: str) -> str | None:
    """The first error of the compiler's analysis (parsing, names, types) of the mutated source, with
    `solc` on PATH; None if there is none. Without code generation, which the test run's compile does
    anyway, it costs a quarter of a full compile (3.7 s of CPU against 6.3 through solc-js here); a
    mutant that fails only in code generation (stack too deep) is a compile error of the test run."""
    settings = {"remappings": [REMAPS], "outputSelection": {"*": {"": ["ast"]}}}
    request = json.dumps(
        {"language": "Solidity", "sources": {file: {"content": Path(file).read_text()}}, "settings": settings}
    )
    run = subprocess.run(["solc", "--standard-json", "--base-path", "."], input=request, capture_output=True, text=True)
    try:
        errors = [e for e in json.loads(run.stdout).get("errors", []) if e.get("severity") == "error"]
    except ValueError:
        return f"solc answered no JSON: {run.stderr[-500:]}"
    return errors[0].get("formattedMessage", "error")[:2000] if errors else None


def test_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mutate.py _test")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    start = time.monotonic()
    changed = mutation()
    if changed is None:
        # slither-mutate's own first run, of the unmutated tests (the driver ran them already), or a
        # mutant identical to the source (LIR turns `0` into `0`): the tests pass as they are.
        record: dict[str, object] = dict(outcome="unchanged")
    else:
        file, line, diff = changed
        kept, added = (None, []) if args.list else kept_verdict(file, line, diff)
        inherited = kept is not None and kept["fingerprint"] != os.environ["MUTATE_FINGERPRINT"]
        if line < int(os.environ.get("MUTATE_FROM_LINE", 0)):
            outcome, detail = "skipped", "before --from-line: tested by an earlier campaign"
        elif kept is not None and not (inherited and kept["outcome"] == "survived"):
            outcome, detail = str(kept["outcome"]), f"kept from {kept['fingerprint']}: {kept['detail']}"
        elif kept is not None:
            outcome, detail = compile_and_test(args.timeout, added)
        elif (problem := analysis_error(file)) is not None:
            outcome, detail = "no-compile", problem
        else:
            outcome, detail = ("listed", "") if args.list else compile_and_test(args.timeout)
        record = dict(file=file, line=line, diff=diff, outcome=outcome, detail=detail)
        if (kept is None or inherited) and outcome in ("killed", "survived", "no-compile"):
            first = detail.splitlines()[0][:300] if detail else ""
            mutator = os.environ.get("MUTATE_MUTATOR", "")
            fields = dict(file=file, line=line, mutator=mutator, change=_change(diff), outcome=outcome, detail=first)
            kept_record = {"fingerprint": os.environ["MUTATE_FINGERPRINT"], **fields}
            with Path(os.environ.get("MUTATE_KEPT", KEPT)).open("a") as out:
                out.write(json.dumps(kept_record) + "\n")
    record["seconds"] = time.monotonic() - start
    with args.results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    # A skipped mutant counts as caught, as it was in the earlier campaign (--from-line).
    return 0 if record["outcome"] in ("survived", "unchanged") else 1


# ---------------------------------------------------------------- the campaign


@dataclass
class Mutant:
    mutator: str
    line: int
    old: str
    new: str
    # killed, survived, timeout, compile-error (by ape), no-compile (by the analysis), unchanged, listed, skipped,
    # error (the run compiled nothing: no verdict)
    outcome: str
    file: str = ""
    diff: str = ""
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Contract:
    file: str
    mutants: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def prepare() -> None:
    """A fresh copy of the working tree (uncommitted changes included) and of its contracts/ as they are."""
    shutil.rmtree(VAR, ignore_errors=True)

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {"__pycache__"} & set(names)
        if Path(directory) == ROOT:
            skip |= NOT_COPIED & set(names)
        if Path(directory) == ROOT / "contracts":
            skip |= {".cache"} & set(names)
        return skip

    shutil.copytree(ROOT, REPO, symlinks=True, ignore=ignore)
    for name in LINKED:
        (REPO / name).symlink_to(ROOT / name)
    shutil.copytree(REPO / "contracts", PRISTINE)
    current = os.environ["MUTATE_FINGERPRINT"] = fingerprint(REPO)  # of the copy, which the campaign tests
    files, kept = deciding_files(REPO), _kept()
    if not any(r["outcome"] == "files" and r["fingerprint"] == current for r in kept):
        with KEPT.open("a") as out:
            out.write(json.dumps({"fingerprint": current, "outcome": "files", "files": files}) + "\n")
    os.environ[BASES] = json.dumps(bases_of(files, kept))
    # slither-mutate checks that a mutant compiles with crytic-compile's default, `solc` on PATH.
    (VAR / "bin").mkdir()
    (VAR / "bin" / "solc").symlink_to(REPO / "tools" / "solc.js")


# Each contract's own tests, run first (tests/conftest.py, TESTS_FIRST): most mutants fail them at once.
OWN_TESTS = {
    "CurrencyRate": "test_currency_rate.py",
    "Ledger": "test_ledger.py",
    "LoyaltyPayment": "test_payment.py,test_payment_flows.py",
    "ShopRegistry": "test_shop_registry.py,test_withdrawals.py",
    "SignedActions": "test_signatures.py",
    "LoyaltyToken": "test_loyalty_token.py",
}


def environment(name: str = "") -> dict[str, str]:
    path = os.pathsep.join([str(VAR / "bin"), str(REPO / ".venv" / "bin"), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, SOLCX_BINARY_PATH=str(REPO / ".solcx"), MUTATE_DIR=str(VAR))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # pytest keeps the modules it rewrites between runs
    env["MUTATE_KEPT"] = str(KEPT)
    return dict(env, TESTS_FIRST=OWN_TESTS.get(name, ""))


def mutate(file: str, timeout: float, mutators: str | None, listing: bool) -> Contract:
    name = Path(file).stem
    results = VAR / f"{name}.results.jsonl"
    # The copy's own script: editing tools/mutate.py during a campaign does not change how it tests.
    test_cmd = [sys.executable, str(REPO / "tools" / "mutate.py"), "_test", "--results", str(results)]
    test_cmd += ["--timeout", str(timeout), *(["--list"] if listing else [])]
    cmd = [
        str(SLITHER_PYTHON),
        str(REPO / "tools" / "slither_mutate.py"),
        file,
        "--test-cmd",
        shlex.join(test_cmd),
        "-v",
    ]
    # slither-mutate's own timeout only kills the shell it starts; ours (in `_test`) comes first.
    cmd += ["--timeout", str(int(timeout) + 300), "--output-dir", str(VAR / "campaign" / name)]
    cmd += ["--solc", "tools/solc.js", "--solc-remaps", REMAPS, *(["--mutators-to-run", mutators] if mutators else [])]
    start = time.monotonic()
    log_path = VAR / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=environment(name), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            log.write(line)
            log.flush()
            if "-->" in line:
                print(f"  {name}: {line.split('Slither-Mutate:', 1)[-1].strip()}"[:160], flush=True)
        proc.wait()
    return collect(file, time.monotonic() - start, proc.returncode)


def collect(file: str, seconds: float, returncode: int | None = None) -> Contract:
    """The verdicts of one contract's campaign, from slither-mutate's log and the `_test` records (also of
    a campaign still running or stopped: `python -c 'from tools.mutate import ...'`)."""
    name = Path(file).stem
    results, log_path = VAR / f"{name}.results.jsonl", VAR / f"{name}.log"
    contract = Contract(file, seconds=seconds)
    if returncode:
        contract.problems.append(f"slither-mutate exited with {returncode} (see {log_path})")
    text = log_path.read_text()
    for problem in ("Cannot find contracts in file", "Test suite fails", "ERROR:Slither-Mutate"):
        if problem in text:
            contract.problems.append(f"slither-mutate: {problem!r} (see {log_path})")
    records = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if records and records[0]["outcome"] == "unchanged":
        records.pop(0)  # slither-mutate's first run, of the unmutated tests
    for mutator, line_no, old, new, verdict in VERDICT.findall(text):
        mutant = Mutant(mutator, int(line_no), old, new, "no-compile", file)
        if verdict != "COMPILATION FAILURE":
            if not records:
                contract.problems.append(f"no test record for {mutator} line {line_no}")
                continue
            record = records.pop(0)
            mutant.outcome, mutant.seconds = record["outcome"], record["seconds"]
            in_step = (verdict == "UNCAUGHT") == (mutant.outcome in ("survived", "unchanged"))
            if mutant.outcome != "unchanged":
                # slither-mutate names a statement's first line; the diff, the first line that changed.
                in_step = in_step and mutant.line <= record["line"] <= mutant.line + old.count("\n")
                mutant.line, mutant.diff, mutant.detail = record["line"], record["diff"], record["detail"]
            if not in_step:
                contract.problems.append(f"test record out of step at {mutator} line {line_no}")
            if mutant.outcome == "error":
                contract.problems.append(f"{mutator} line {mutant.line}: {mutant.detail[:300]}")
        contract.mutants.append(mutant)
    if records:
        contract.problems.append(f"{len(records)} test records without a slither-mutate verdict")
    return contract


# ---------------------------------------------------------------- the report


def _row(label: str, cells: Sequence[object]) -> str:
    return f"{label:<16}" + "".join(f"{c!s:>11}" for c in cells)


def report(contracts: list[Contract], header: list[str], listing: bool) -> str:
    rows = [(Path(c.file).stem, c.mutants, c.seconds) for c in contracts]
    rows.append(("total", [m for c in contracts for m in c.mutants], sum(c.seconds for c in contracts)))
    columns = ["mutants", "no compile", "identical", "skipped", "compiling"]
    if not listing:
        columns += ["killed", "timed out", "survived", "kill rate", "minutes", "s/test"]
    out = [*header, "", _row("contract", columns)]
    for label, mutants, seconds in rows:
        n = Counter(m.outcome for m in mutants)
        tested = n["killed"] + n["timeout"] + n["survived"]
        cells: list[object] = [len(mutants), n["no-compile"] + n["compile-error"], n["unchanged"], n["skipped"]]
        cells.append(tested + n["listed"])
        if not listing:
            rate = f"{100 * (n['killed'] + n['timeout']) / tested:.1f}%" if tested else "-"
            seconds_tested = sum(m.seconds for m in mutants if m.outcome not in ("unchanged", "skipped"))
            per_test = f"{seconds_tested / tested:.1f}" if tested else "-"
            cells += [n["killed"], n["timeout"], n["survived"], rate, f"{seconds / 60:.0f}", per_test]
        out.append(_row(label, cells))
    out.append("")
    out.append("identical: slither-mutate's mutant equals the source (not tested); skipped: before --from-line.")
    if not listing:
        out.append("kill rate = (killed + timed out) / compiling; s/test = compile and tests per compiling mutant.")
    out += ["", "Compiling mutants per mutator:"]
    for c in contracts:
        untested = ("no-compile", "compile-error", "unchanged", "skipped")
        n = Counter(m.mutator for m in c.mutants if m.outcome not in untested)
        out.append(f"  {Path(c.file).stem}: " + (", ".join(f"{k} {v}" for k, v in sorted(n.items())) or "-"))
    out += ["", "Not compiling (killed by the compiler), per mutator: by the analysis / only under ape"]
    for c in contracts:
        for label, outcome in [("analysis", "no-compile"), ("ape compile", "compile-error")]:
            n = Counter(m.mutator for m in c.mutants if m.outcome == outcome)
            out.append(
                f"  {Path(c.file).stem} ({label}): " + (", ".join(f"{k} {v}" for k, v in sorted(n.items())) or "-")
            )
    for title, outcome in [("Timed out", "timeout"), ("Survivors", "survived")]:
        found = [m for c in contracts for m in c.mutants if m.outcome == outcome]
        if not listing:
            out += ["", f"{title} ({len(found)}):"]
        for m in found:
            out += ["", f"{m.file}:{m.line} [{m.mutator}]", m.diff.rstrip()]
    out += ["", "Each mutant that did not compile:"]
    for c in contracts:
        for m in c.mutants:
            if m.outcome in ("no-compile", "compile-error"):
                change = f"'{m.old}' ==> '{m.new}'".replace("\n", " ")
                out.append(f"  {c.file}:{m.line} [{m.mutator}] {change}"[:160])
    problems = [f"{Path(c.file).stem}: {p}" for c in contracts for p in c.problems]
    if problems:
        out += ["", "Problems:", *problems]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["_test"]:
        return test_command(argv[1:])
    parser = argparse.ArgumentParser(
        prog="mutate.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("files", nargs="*", help="contract sources (default: all but contracts/test and interfaces)")
    parser.add_argument("--list", action="store_true", help="count the mutants that compile; test none")
    parser.add_argument("--summary", action="store_true", help="the kept verdicts on the current sources and tests")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 3x the unmutated run, >= 120)")
    parser.add_argument("--mutators", help="slither-mutate's --mutators-to-run, e.g. RR,CR,ROR")
    parser.add_argument(
        "--from-line", type=int, default=0, help="test only mutants from this line on (the others: an earlier campaign)"
    )
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(), end="")
        return 0
    os.environ["MUTATE_FROM_LINE"] = str(args.from_line)
    if not SLITHER_MUTATE.exists():
        print("slither-mutate is missing: run `make setup`", file=sys.stderr)
        return 2
    contracts_dir = ROOT / "contracts"
    sources = [Path(f).resolve() for f in args.files] or [
        p for p in sorted(contracts_dir.rglob("*.sol")) if p.relative_to(contracts_dir).parts[0] not in NOT_MUTATED
    ]
    if outside := [str(p) for p in sources if contracts_dir not in p.parents or not p.is_file()]:
        print(f"not a source in {contracts_dir}: {', '.join(outside)}", file=sys.stderr)
        return 2
    # Relative: slither-mutate, in the copy, mutates the copy's file.
    files = [p.relative_to(ROOT).as_posix() for p in sources]
    prepare()
    started = time.strftime("%Y-%m-%d %H:%M")
    header = [f"Mutation testing with slither-mutate, {started}; sources copied to {REPO.relative_to(ROOT)}"]
    timeout = 0.0
    if args.list:
        header.append("Listing: each mutant compiled, none tested.")
    else:
        os.chdir(REPO)
        os.environ.update(environment())
        baseline = unmutated_run()
        if baseline is None:
            return 1
        timeout = args.timeout or max(120.0, 3 * baseline)
        per_mutant = shlex.join([*UNIT_TESTS[:2], "-p", "tools.mutate", *UNIT_TESTS[2:]])
        per_mutant += f", then {shlex.join(PROPERTY_TESTS)}"
        header.append(f"Per mutant: {per_mutant}, compiling what changed; timeout {timeout:.0f} s.")
        header.append(f"Unmutated: {baseline:.0f} s.")
        for base, added in json.loads(os.environ[BASES]):
            header.append(f"Builds on fingerprint {base}; tests added since: {' '.join(added)}.")
    contracts: list[Contract] = []
    text = report(contracts, header, args.list)
    for file in files:
        print(f"{file}:", flush=True)
        contracts.append(mutate(file, timeout, args.mutators, args.list))
        text = report(contracts, header, args.list)
        (VAR / "report.txt").write_text(text)
    print("\n" + text, end="")
    print(f"(written to {(VAR / 'report.txt').relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
