"""Mutation testing of the contracts (`make mutate`) with slither-mutate, against the unit and property tests.

slither-mutate writes each mutant into the source file itself, so everything runs in a copy of the
working tree under var/mutate/repo (.venv and node_modules linked); the working tree is never touched.
For every mutant that compiles, this script's `_test` command (slither-mutate's --test-cmd) compiles
all contracts again (tools/build.py --force) and runs the tests, failing fast, under a timeout; it
records the mutant's diff and what happened. Mutants are tried one contract at a time, in
slither-mutate's default mode: once a line survives being reverted or commented out (RR, CR), the
lesser mutators skip it. The summary goes to var/mutate/report.txt.

    python tools/mutate.py [--list] [--timeout SECONDS] [--mutators RR,CR,ROR,...] [contracts/X.sol ...]

--list compiles each mutant without testing it, to count them (an upper bound: a real run skips lines
whose RR or CR mutant survived). Without files: every contracts/**/*.sol but test/ and interfaces/.
"""

from __future__ import annotations

import argparse
import difflib
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

ROOT = Path(__file__).resolve().parent.parent
# Several campaigns (different contracts) may run at once, each in a directory of its own.
VAR = Path(os.environ.get("MUTATE_DIR", ROOT / "var" / "mutate"))
REPO = VAR / "repo"
PRISTINE = VAR / "pristine"
SLITHER_MUTATE = ROOT / ".venv-tools" / "bin" / "slither-mutate"
REMAPS = "@openzeppelin/contracts=node_modules/@openzeppelin/contracts"
# A fixed Hypothesis seed, so that a mutant's verdict is reproducible.
TESTS = ["ape", "test", "tests/unit", "tests/properties", "-x", "-q", "--hypothesis-seed=0"]
LINKED = [".venv", "node_modules"]
NOT_COPIED = {".git", ".venv-tools", "var", ".build", ".stamps", ".hypothesis", "__pycache__", ".mypy_cache"}
NOT_COPIED |= {".ruff_cache", ".pytest_cache", *LINKED}
NOT_MUTATED = {"test", "interfaces", ".cache"}  # under contracts/: mocks, interfaces, Ape's dependency copy
# slither-mutate's log line for each mutant; its strings may span lines.
VERDICT = re.compile(r"\[(\w+)\] Line (\d+): '(.*?)' ==> '(.*?)' --> (CAUGHT|UNCAUGHT|COMPILATION FAILURE)\n", re.S)


# ---------------------------------------------------------------- one mutant (slither-mutate's --test-cmd)


def _run(cmd: list[str], timeout: float) -> tuple[int | None, str]:
    """Runs `cmd` in a process group of its own (ape starts anvil), killed whole on timeout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


def compile_and_test(timeout: float) -> tuple[str, str]:
    """Compiles every contract and runs the tests in the working directory: (outcome, detail)."""
    start = time.monotonic()
    code, output = _run([sys.executable, "tools/build.py", "--force"], timeout)
    if code != 0:
        return ("timeout" if code is None else "compile-error"), output[-2000:]
    code, output = _run(TESTS, timeout - (time.monotonic() - start))
    if code is None:
        return "timeout", output[-2000:]
    if code == 0:
        return "survived", ""
    failed = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return "killed", (failed[0] if failed else output[-2000:])


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
        outcome, detail = ("listed", "") if args.list else compile_and_test(args.timeout)
        file, line, diff = changed
        record = dict(file=file, line=line, diff=diff, outcome=outcome, detail=detail)
    record["seconds"] = time.monotonic() - start
    with args.results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    return 0 if record["outcome"] in ("survived", "unchanged") else 1


# ---------------------------------------------------------------- the campaign


@dataclass
class Mutant:
    mutator: str
    line: int
    old: str
    new: str
    # killed, survived, timeout, compile-error (by ape), no-compile (by slither-mutate), unchanged, listed
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
    return dict(os.environ, PATH=path, SOLCX_BINARY_PATH=str(REPO / ".solcx"), TESTS_FIRST=OWN_TESTS.get(name, ""))


def mutate(file: str, timeout: float, mutators: str | None, listing: bool) -> Contract:
    name = Path(file).stem
    results = VAR / f"{name}.results.jsonl"
    test_cmd = [sys.executable, str(ROOT / "tools" / "mutate.py"), "_test", "--results", str(results)]
    test_cmd += ["--timeout", str(timeout), *(["--list"] if listing else [])]
    cmd = [str(SLITHER_MUTATE), file, "--test-cmd", shlex.join(test_cmd), "-v"]
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
    contract = Contract(file, seconds=time.monotonic() - start)
    if proc.returncode:
        contract.problems.append(f"slither-mutate exited with {proc.returncode} (see {log_path})")
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
    columns = ["mutants", "no compile", "identical", "compiling"]
    if not listing:
        columns += ["killed", "timed out", "survived", "kill rate", "minutes", "s/test"]
    out = [*header, "", _row("contract", columns)]
    for label, mutants, seconds in rows:
        n = Counter(m.outcome for m in mutants)
        tested = n["killed"] + n["timeout"] + n["survived"]
        cells: list[object] = [len(mutants), n["no-compile"] + n["compile-error"], n["unchanged"], tested + n["listed"]]
        if not listing:
            rate = f"{100 * (n['killed'] + n['timeout']) / tested:.1f}%" if tested else "-"
            per_test = f"{sum(m.seconds for m in mutants if m.outcome != 'unchanged') / tested:.1f}" if tested else "-"
            cells += [n["killed"], n["timeout"], n["survived"], rate, f"{seconds / 60:.0f}", per_test]
        out.append(_row(label, cells))
    out.append("")
    out.append("identical: slither-mutate's mutant equals the source (not tested).")
    if not listing:
        out.append("kill rate = (killed + timed out) / compiling; s/test = compile and tests per compiling mutant.")
    out += ["", "Compiling mutants per mutator:"]
    for c in contracts:
        n = Counter(m.mutator for m in c.mutants if m.outcome not in ("no-compile", "compile-error", "unchanged"))
        out.append(f"  {Path(c.file).stem}: " + (", ".join(f"{k} {v}" for k, v in sorted(n.items())) or "-"))
    out += ["", "Not compiling (killed by the compiler), per mutator: as slither-mutate compiles / only under ape"]
    for c in contracts:
        for label, outcome in [("slither-mutate", "no-compile"), ("ape compile", "compile-error")]:
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
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 3x the unmutated run, >= 120)")
    parser.add_argument("--mutators", help="slither-mutate's --mutators-to-run, e.g. RR,CR,ROR")
    args = parser.parse_args(argv)
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
        print(f"Unmutated run: {shlex.join(TESTS)}", flush=True)
        start = time.monotonic()
        os.chdir(REPO)
        os.environ.update(environment())
        outcome, detail = compile_and_test(timeout=3600)
        baseline = time.monotonic() - start
        if outcome != "survived":
            print(f"The unmutated contracts do not pass ({outcome}):\n{detail}", file=sys.stderr)
            return 1
        timeout = args.timeout or max(120.0, 3 * baseline)
        header.append(f"Per mutant: tools/build.py --force, then {shlex.join(TESTS)}; timeout {timeout:.0f} s.")
        header.append(f"Unmutated: {baseline:.0f} s.")
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
