"""Prometheus metrics the relay counts as it works (the standard client library's default registry);
what is read from the database and the chain at each scrape is in services/health.py."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("relay_requests", "HTTP requests answered, by route template and status", ["route", "status"])
RPC_SECONDS = Histogram(
    "relay_rpc_seconds", "JSON-RPC calls to the chain node, by method", ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
RPC_ERRORS = Counter(
    "relay_rpc_errors", "JSON-RPC calls the node did not answer, by method and kind", ["method", "kind"]
)
CALLBACK_DELAY = Histogram(
    "relay_callback_delivery_seconds", "From a callback's creation to its delivery to the KIOSK",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)  # fmt: skip
