"""The end-to-end suite: the whole system under faults and load, checked on the chain and in the
database. The relay is killed at every step of flows 1.1 and 1.3; the KIOSK's callback endpoint,
the chain node and PostgreSQL go down; two relay instances share one database; 50 KIOSKs soak it;
Schemathesis fuzzes its HTTP API. Everything runs on a throwaway system (bench.harness: anvil, the
contracts, relay processes on PostgreSQL), reached as clients and operators reach it.

    make e2e                   # about 10 minutes; not part of `make test`
    make e2e ARGS=--quick      # fewer trials and shorter runs

The figures (redeliveries, callback delays, request counts) are printed at the end and written to
var/e2e-results.txt."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from bench.harness import POSTGRES_ADMIN_URL, ROOT, System, system

RESULTS = ROOT / "var" / "e2e-results.txt"
FIGURES: list[tuple[str, str]] = []

# Examples Schemathesis generates per operation of the API (tests/e2e/test_fuzz_api.py).
settings.register_profile("e2e", max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("e2e-quick", max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true", help="fewer trials and shorter runs (a smoke test)")


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("e2e-quick" if config.getoption("--quick") else "e2e")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    width = max(len(name) for name, _ in FIGURES)
    lines = [f"{name:<{width}}  {value}" for name, value in FIGURES]
    terminalreporter.section("end-to-end figures")
    for line in lines:
        terminalreporter.write_line(line)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick"))


@pytest.fixture(scope="session")
def figure() -> Callable[[str, str], None]:
    """Records a figure for the summary: what was measured, and its value."""

    def add(name: str, value: str) -> None:
        FIGURES.append((name, value))

    return add


@pytest.fixture(scope="session")
def bench() -> Iterator[System]:
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"the end-to-end suite needs PostgreSQL at {POSTGRES_ADMIN_URL} (trust auth): {exc}")
    with system() as created:
        yield created


@pytest.fixture(scope="module", autouse=True)
def fresh_chain(bench: System) -> Iterator[None]:
    """Each module on the chain as deployed: anvil slows down as blocks accumulate, and the soak's
    figures should not depend on what ran before it."""
    with bench.fresh_chain():
        yield
