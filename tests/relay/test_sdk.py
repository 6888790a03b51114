"""The SDK's own behaviour, apart from the endpoints it calls (which the endpoint tests cover)."""

from __future__ import annotations

import ssl

import httpx

from relay import sdk
from relay.devnet import anvil_key


def test_clients__share_one_verifying_tls_context(monkeypatch):
    made = []
    real = httpx.create_ssl_context

    def create_ssl_context(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
    sdk._tls.cache_clear()
    try:
        clients = [
            sdk.KioskClient("https://relay.example", "key"),
            sdk.AppClient("https://relay.example", anvil_key(2)),
            sdk.AppClient("https://relay.example", anvil_key(3)),
        ]
        assert len(made) == 1
        [context] = made
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        for client in clients:
            client.close()
    finally:
        sdk._tls.cache_clear()
