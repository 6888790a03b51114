# Two commands do everything (see README.md):
#   make run    local chain + contracts + demo data + relay on http://127.0.0.1:8000
#   make test   linters, contract tests and relay tests
SHELL := /bin/bash
export SOLCX_BINARY_PATH := $(CURDIR)/.solcx
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup test lint test-contracts test-relay properties gas mutate run demo bench e2e clean

setup:
	@tools/setup.sh

# slither (slither.config.json) fails on any finding: fix it, or justify it where it is with
# `// slither-disable-next-line <detector>` and the reason. It analyses contracts/*.sol and all they
# import (OpenZeppelin and contracts/test/ mocks filtered out). Excluded detector, style only:
# naming-convention (solhint checks names; it flags EIP-2612's DOMAIN_SEPARATOR() and constant getters).
lint: setup
	ruff check .
	ruff format --check .
	mypy  # the packages in pyproject.toml: relay, bench, loyalty_sdk (sdk/)
	npx --no-install solhint --max-warnings 0 'contracts/**/*.sol'
	npx --no-install prettier --check 'contracts/**/*.sol'
	.venv-tools/bin/slither contracts

test-contracts: setup
	ape test tests/unit tests/properties

test: lint test-contracts test-relay

# The long property run: >= 1,000 random sequences x 50 steps (reports counts and time).
properties: setup
	HYPOTHESIS_PROFILE=long ape test tests/properties -s

# Gas per operation on anvil, written to GAS.md; fails over budget.
gas: setup
	ape run gas_table --network ethereum:local:foundry

# Mutation testing of the contracts against the unit and property tests (hours; not part of `make test`),
# in a copy under var/mutate/; summary in var/mutate/report.txt. ARGS="--list" only counts the mutants;
# ARGS="contracts/CurrencyRate.sol" mutates one contract; see tools/mutate.py.
mutate: setup
	python tools/mutate.py $(ARGS)

clean:
	rm -rf .build .stamps contracts/.cache

# The demo system: anvil + contracts + demo data + relay on http://127.0.0.1:8000 (Ctrl-C stops it).
run: setup
	loyalty devnet

# Flows 1.1-1.4 against `make run`, as a KIOSK and the app would (run in a second terminal).
demo: setup
	loyalty demo

# Relay tests: real relay processes on anvil, SQLite and PostgreSQL (plain pytest, not Ape's runner).
test-relay: setup
	@tools/setup.sh --browser
	pytest -p no:ape_test --confcutdir=tests/relay tests/relay

# Benchmarks (not part of `make test`): gas, throughput against direct web3.py and scaling over
# relay workers, work per payment, read latency; summary in var/bench-results.txt. ARGS=--quick: smaller runs.
bench: setup
	python -m bench.run_all $(ARGS)

# The end-to-end suite (not part of `make test`; needs PostgreSQL): the relay killed at every step of
# the flows, callback endpoint, chain node and PostgreSQL down, two instances on one database, a load
# soak, API fuzzing; figures in var/e2e-results.txt. ARGS=--quick: fewer trials, shorter runs.
e2e: setup
	pytest -p no:ape_test --confcutdir=tests/e2e tests/e2e $(ARGS)
