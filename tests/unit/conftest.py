"""Unit-test set-up: chain isolation done once, and speed-ups of Ape's transaction handling.

Ape snapshots the chain per fixture scope; a session fixture that changes the chain and is first
requested after a module snapshot forces a costly "rebase" (re-running module fixtures). So those
(deployment, the shared shop, the impersonated senders' gas money) are set up before the first test.

`admin` and `relay` are overridden here with the same accounts sent through the node (they only
send transactions), two trace look-ups Ape makes per transaction are switched off, and requests
stops reading proxy settings for the local node: together they roughly halve the time of the suite.
Nothing here changes what a transaction does."""

import os

import ape
import ape_ethereum.provider as ape_provider
import pytest
from ape_ethereum.ecosystem import Ethereum
from ape_ethereum.trace import Trace
from eth_pydantic_types import HexBytes


@pytest.fixture(scope="session", autouse=True)
def _session_fixtures_first(system, shop_id, as_controller, as_ledger):
    """The session fixtures that change the chain (marked chain_isolation=True)."""


@pytest.fixture(scope="session", autouse=True)
def _local_rpc_without_proxy_lookups(chain):
    """requests reads the proxy settings from the environment again for every JSON-RPC request
    (about a sixth of the suite's CPU time); the node is local, so switch that off."""
    provider = chain.provider.web3.provider
    if manager := getattr(provider, "_request_session_manager", None):
        manager.cache_and_return_session(provider.endpoint_uri).trust_env = False


def _sent_by_node(account):
    """`account` as an impersonated sender: the node signs its transactions. Ape otherwise signs
    each one in pure-Python ECDSA and recovers the signer again, nearly half the time of a local
    transaction. Only for accounts that send transactions and never sign a message."""
    return ape.accounts.test_accounts.impersonate_account(account.address)


@ape.fixture(scope="session", chain_isolation=False)
def admin(accounts):
    return _sent_by_node(accounts[0])


@ape.fixture(scope="session", chain_isolation=False)
def relay(accounts):
    return _sent_by_node(accounts[1])


@ape.fixture(scope="session", chain_isolation=False)
def point_payer(accounts):
    """A user who pays with points (funded by the modules that use it)."""
    return accounts[6]


@ape.fixture(scope="session", chain_isolation=False)
def token_payer(accounts):
    """A user who pays with tokens (funded by the modules that use it)."""
    return accounts[7]


@pytest.fixture(autouse=True)
def _no_trace_rendering(monkeypatch):
    """Two per-transaction costs of ape-foundry that these tests do not need: it renders the whole
    call trace of every reverted transaction (up to a second each; most tests revert on purpose, and
    the error is still decoded and reported), and it fetches the trace of every successful one to
    print Solidity console.log lines (the contracts have none). Set TEST_TRACES=1 to get both back."""
    if not os.environ.get("TEST_TRACES"):
        monkeypatch.setattr(Trace, "show", lambda self, *args, **kwargs: None)
        monkeypatch.setattr(ape_provider, "_post_send_transaction", lambda txn, receipt: None)


@pytest.fixture(autouse=True)
def _decode_bubbled_errors_by_abi(monkeypatch, system):
    """An error raised by a contract the called one calls into (the ledger's InsufficientBalance
    under openNewPayment) is not in the called contract's ABI. Ape then walks the opcode-level
    trace of the transaction to find the contract that reverted last, 2-3 seconds per revert. The
    system's contracts are known, so look the selector up in their ABIs instead; the result is the
    same error, bound to the contract that declares it."""
    original = Ethereum.decode_custom_error
    contracts = [system.ledger, system.shops, system.rates, system.token, system.payment]

    def decode_custom_error(self, data, address, **kwargs):
        selector = HexBytes(data)[:4]
        try:
            called = self.chain_manager.contracts.instance_at(address)
        except Exception:
            called = None
        if called is None or selector not in called.contract_type.errors:
            for contract in contracts:
                if selector in contract.contract_type.errors:
                    return original(self, data, contract.address, **kwargs)
        return original(self, data, address, **kwargs)

    monkeypatch.setattr(Ethereum, "decode_custom_error", decode_custom_error)
