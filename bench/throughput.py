"""Complete payments per second through the relay (openNew -> approve -> closeNew over HTTP, signed
by the wallet) against the same two transactions sent straight from web3.py to the same anvil,
in alternating batches so that both sides see the machine in the same state.

    python -m bench.throughput [--payments 200] [--clients 8] [--workers 1 2 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import urllib3
from eth_account import Account

from bench.harness import SIGNER_INDEXES, UNIT, Receiver, System, contract, cpu_seconds, system, wait_until
from relay import typed_data
from relay.devnet import anvil_key

AMOUNT = 10 * UNIT
MAX_TOTAL = AMOUNT + AMOUNT * 500 // 10_000  # krw at 1 point, and the 5 % fee
TARGET_RATIO = 0.8
# The relay leaves the node alone for 0.5 s after a call times out (RELAY_RPC_TIMEOUT, documented):
# a relay continued after SIGSTOP is given twice that before it is measured (see `paused`).
RESUMED_SETTLE = 2 * 0.5
JSON_HEADERS = {"Content-Type": "application/json"}


def direct(bench: System, user_keys: list[str], payments: int, clients: int) -> float:
    """The baseline: each client thread signs the user's NewPayment and sends openNewPayment and
    closeNewPayment from its own relay key, waiting for each receipt."""
    w3 = bench.w3()
    payment = contract(w3, bench.deployment, "LoyaltyPayment")
    domain = typed_data.domain(typed_data.PAYMENT_DOMAIN, bench.deployment["chainId"], payment.address)
    gas_price = w3.eth.gas_price

    def client(index: int, count: int) -> None:
        signer = Account.from_key(anvil_key(SIGNER_INDEXES[index]))
        nonce = int(w3.eth.get_transaction_count(signer.address))
        user = Account.from_key(user_keys[index])
        user_nonce = payment.functions.nonces(user.address).call()

        def send(fn: Any) -> None:
            nonlocal nonce
            tx = fn.build_transaction(
                {
                    "from": signer.address,
                    "nonce": nonce,
                    "gas": 400_000,
                    "gasPrice": gas_price,
                    "chainId": domain["chainId"],
                }
            )
            nonce += 1
            tx_hash = w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)
            assert w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)["status"] == 1

        for _ in range(count):
            payment_id = "0x" + secrets.token_hex(32)
            deadline = int(time.time()) + 600
            message = {
                "paymentId": payment_id,
                "purchaseId": payment_id[:18],
                "amount": AMOUNT,
                "currency": "krw",
                "shopId": bench.shop_id,
                "account": user.address,
                "loyaltyType": 0,
                "maxTotal": MAX_TOTAL,
                "nonce": user_nonce,
                "deadline": deadline,
            }
            signature = typed_data.sign(user.key, typed_data.build("NewPayment", domain, message))
            user_nonce += 1
            data = (
                payment_id,
                message["purchaseId"],
                AMOUNT,
                "krw",
                bench.shop_id,
                user.address,
                0,
                MAX_TOTAL,
                deadline,
            )
            send(payment.functions.openNewPayment(data, signature))
            send(payment.functions.closeNewPayment(payment_id, True))

    return _run(clients, payments, client)


class Shopper:
    """One KIOSK and one wallet paying through the relay over one keep-alive connection, as
    loyalty_sdk's KioskClient and AppClient do (the same requests, the wallet signing the typed data
    the relay hands it) but with a lighter HTTP client (urllib3) and no validation of the answers
    beyond their code: the load generator shares the machine with the relay, and on a real
    deployment its work is done by the KIOSKs and phones. The SDK spent about twice the CPU per
    request (httpx, pydantic)."""

    def __init__(self, url: str, access_key: str, user_key: str) -> None:
        self.http = urllib3.connection_from_url(url, maxsize=1, retries=False, timeout=60.0)
        self.access_key = access_key
        self.user = Account.from_key(user_key)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        reply = self.http.urlopen(method, path, body=data, headers=JSON_HEADERS)
        answer = json.loads(reply.data)
        if reply.status != 200 or answer.get("code") != 0:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status}: {answer}")
        result: dict[str, Any] = answer["data"]
        return result

    def pay(self, shop_id: str) -> dict[str, Any]:
        """openNew, the wallet's approval (item, then create/confirm), closeNew; the payment as
        closeNew answers it."""
        opened = self._call(
            "POST",
            "/v1/payment/openNew",
            {
                "accessKey": self.access_key,
                "purchaseId": f"B-{secrets.token_hex(6)}",
                "amount": str(AMOUNT),
                "currency": "krw",
                "shopId": shop_id,
                "account": self.user.address,
            },
        )
        payment_id = opened["paymentId"]
        typed = self._call("GET", f"/v1/payment/item?paymentId={payment_id}")["typedData"]["confirm"]
        if typed["message"]["account"].lower() != self.user.address.lower():
            raise RuntimeError(f"payment {payment_id} is not for {self.user.address}: {typed['message']}")
        signature = typed_data.sign(self.user.key, typed)
        self._call("POST", "/v1/payment/create/confirm", {"paymentId": payment_id, "signature": signature})
        return self._call(
            "POST", "/v1/payment/closeNew", {"accessKey": self.access_key, "paymentId": payment_id, "confirm": True}
        )


def through_relay(url: str, access_key: str, shop_id: str, user_keys: list[str], payments: int, clients: int) -> float:
    def client(index: int, count: int) -> None:
        shopper = Shopper(url, access_key, user_keys[index])
        for _ in range(count):
            status = shopper.pay(shop_id)["paymentStatus"]
            if status != 4:
                raise RuntimeError(f"a payment ended in status {status}, not 4 (completed)")

    return _run(clients, payments, client)


def _run(clients: int, payments: int, client: Any) -> float:
    per_client = [payments // clients + (i < payments % clients) for i in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def run(index: int) -> None:
        barrier.wait()
        try:
            client(index, per_client[index])
        except BaseException as exc:  # reported below
            errors.append(exc)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(run, i) for i in range(clients)]
        barrier.wait()
        start = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return payments / elapsed


def measure(
    payments: int, clients: int, workers: list[int], signers: int, rounds: int = 3, callbacks: bool = False
) -> list[dict[str, Any]]:
    """One row per relay worker count: payments/s both ways, their ratio, and the CPU time each
    part of the system spent per payment (ms).

    The KIOSK has no callback URL (it polls, and the relay queues no callback for it) unless
    `callbacks`: then the relay delivers each approval's callback to a receiver in this process
    (its CPU counted with the load generator's), and the row checks that every one arrived.

    Each row starts from the freshly deployed chain (anvil's state is reverted to a snapshot taken
    after deployment): anvil slows down as blocks accumulate (`python -m bench.chain_drift`), so
    rows measured one after another on one growing chain would not compare. On it, direct and
    relay batches alternate, starting and ending with a direct batch (`rounds` relay batches,
    `rounds + 1` direct ones), and each ratio compares a relay batch with the mean of the direct
    batches just before and just after it: a drift of the chain's or the machine's speed that is
    steady over the three batches cancels out, where a comparison with the batch before only
    would count the slowdown over one batch against the relay. The row reports the medians and
    the range. The relay is stopped (SIGSTOP) during direct batches so that its background workers
    take no CPU from the baseline."""
    rows = []
    with system() as bench:
        for count in workers:
            with bench.fresh_chain():
                rows.append(_row(bench, count, payments, clients, signers, rounds, callbacks))
    return rows


def _row(
    bench: System, count: int, payments: int, clients: int, signers: int, rounds: int, callbacks: bool
) -> dict[str, Any]:
    anvil = bench.processes[0].pid
    direct_users = bench.fund_users(clients, 1_000_000 * UNIT)
    direct(bench, direct_users, clients * 2, clients)  # warm-up
    users = bench.fund_users(clients, 1_000_000 * UNIT)
    url, db_url, process = bench.start_relay(workers=count, signers=SIGNER_INDEXES[:signers])
    receiver = Receiver() if callbacks else None
    access_key = bench.add_kiosk(db_url, receiver.url if receiver else None)
    through_relay(url, access_key, bench.shop_id, users, clients * 2, clients)  # warm-up
    direct_rates: list[float] = []
    relay_rates: list[float] = []
    direct_cpu: dict[str, float] = {}
    relay_cpu: dict[str, float] = {}

    def direct_batch() -> None:
        before = cpu_seconds({"anvil": [anvil]})
        with paused(process.pid):
            direct_rates.append(direct(bench, direct_users, payments, clients))
            after = cpu_seconds({"anvil": [anvil]})
        _add(direct_cpu, _per_payment(before, after, payments * (rounds + 1)))

    direct_batch()
    for _ in range(rounds):
        groups = {"anvil": [anvil], "relay": [process.pid]}
        before = cpu_seconds(groups)
        relay_rates.append(through_relay(url, access_key, bench.shop_id, users, payments, clients))
        _add(relay_cpu, _per_payment(before, cpu_seconds(groups), payments * rounds))
        direct_batch()
    if receiver is not None:
        expected = clients * 2 + payments * rounds  # one approval callback per payment
        try:
            with contextlib.suppress(AssertionError):  # reported below
                wait_until(lambda: len(receiver.deliveries) >= expected, 30)
        finally:
            receiver.close()
        ids = [webhook_id for _, webhook_id, _ in receiver.deliveries]
        if len(ids) != expected or len(set(ids)) != expected:
            raise RuntimeError(f"{len(ids)} callbacks delivered ({len(set(ids))} ids), {expected} expected")
    process.terminate()
    process.wait(15)
    ratios = bracketed_ratios(relay_rates, direct_rates)
    return {
        "workers": count,
        "direct": statistics.median(direct_rates),
        "relay": statistics.median(relay_rates),
        "ratio": statistics.median(ratios),
        "ratios": (min(ratios), max(ratios)),
        "direct_cpu": direct_cpu,
        "relay_cpu": relay_cpu,
        "callbacks": callbacks,
    }


def bracketed_ratios(relay_rates: list[float], direct_rates: list[float]) -> list[float]:
    """Each relay batch's rate over the mean rate of the direct batches run just before and just
    after it (`direct_rates` has one more entry than `relay_rates`)."""
    if len(direct_rates) != len(relay_rates) + 1:
        raise ValueError("every relay batch needs a direct batch before and after it")
    return [
        r / ((before + after) / 2)
        for r, before, after in zip(relay_rates, direct_rates[:-1], direct_rates[1:], strict=True)
    ]


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """The process and its children stopped (SIGSTOP) for the duration, then continued, and left
    RESUMED_SETTLE seconds to settle: a call to the node it had under way when it was stopped
    (a background worker's) has outlived its timeout by then, and the relay gives the node a
    pause in which its requests answer 503."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        time.sleep(RESUMED_SETTLE)


def _per_payment(before: dict[str, float], after: dict[str, float], payments: int) -> dict[str, float]:
    return {name: (after[name] - before[name]) * 1000 / payments for name in after}


def _add(total: dict[str, float], part: dict[str, float]) -> None:
    for name, value in part.items():
        total[name] = total.get(name, 0.0) + value


def render(rows: list[dict[str, Any]]) -> str:
    header = f"{'relay workers':>13} {'direct web3 (payments/s)':>25} {'relay (payments/s)':>19} {'relay/direct':>13}"
    lines = [header + f" {'range':>11}"]
    lines += [
        f"{r['workers']:>13} {r['direct']:>25.1f} {r['relay']:>19.1f} {r['ratio']:>13.2f}"
        f" {r['ratios'][0]:>5.2f}-{r['ratios'][1]:.2f}"
        for r in rows
    ]
    if any(r.get("callbacks") for r in rows):
        lines.append("the relay delivered a callback to the KIOSK for every approval")
    else:
        lines.append("the KIOSK polls (no callback URL, so no callbacks); with callbacks: --callbacks")
    best = max(rows, key=lambda r: r["ratio"])
    verdict = "met" if best["ratio"] >= TARGET_RATIO else "NOT MET"
    best_of = f"best median {best['ratio']:.2f}, {best['workers']} worker(s)"
    lines.append(f"target relay/direct >= {TARGET_RATIO}: {verdict} ({best_of})")
    # What the target asks of the whole relay path when every process shares the machine's cores.
    cores = psutil.cpu_count() or 1
    needed = TARGET_RATIO * best["direct"]
    budget = cores * 1000 / needed
    used = sum(best["relay_cpu"].values())
    busy = best["relay"] * used / 1000 / cores  # share of the cores the relay path kept busy
    lines.append(
        f"{TARGET_RATIO} x {best['direct']:.1f} direct/s = {needed:.1f} payments/s leaves at most {budget:.1f} ms"
        f" of CPU per payment on {cores} cores; the relay path used {used:.1f} (the relay itself"
        f" {best['relay_cpu'].get('relay', 0.0):.1f}), with the cores {busy:.0%} busy at {best['relay']:.1f}/s"
    )
    lines.append("")
    lines.append("CPU time per complete payment (ms), by process:")
    parts = ["client", "relay", "postgres", "anvil"]
    lines.append(f"{'':>22}" + "".join(f"{p:>10}" for p in parts) + f"{'total':>10}")

    def cpu_line(label: str, cpu: dict[str, float]) -> str:
        cells = "".join(f"{cpu.get(p, 0.0):>10.1f}" for p in parts)
        return f"{label:>22}{cells}{sum(cpu.get(p, 0.0) for p in parts):>10.1f}"

    for r in rows:
        lines.append(cpu_line(f"direct, {r['workers']}-worker row", r["direct_cpu"]))
        lines.append(cpu_line(f"relay, {r['workers']} worker(s)", r["relay_cpu"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--signers", type=int, default=4, help="relay signer keys")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct and relay batches")
    parser.add_argument(
        "--callbacks", action="store_true", help="the KIOSK has a callback URL: the relay delivers every callback"
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= len(SIGNER_INDEXES):
        parser.error(f"--clients must be 1-{len(SIGNER_INDEXES)}: each direct client sends from its own key")
    if not 1 <= args.signers <= len(SIGNER_INDEXES):
        parser.error(f"--signers must be 1-{len(SIGNER_INDEXES)}")
    rows = measure(args.payments, args.clients, args.workers, args.signers, args.rounds, args.callbacks)
    setup = (
        f"{args.rounds} rounds of {args.payments} payments each way, {args.clients} concurrent clients, "
        f"{args.signers} signer keys"
    )
    print(f"\nComplete payments/s ({setup})")
    print(render(rows))


if __name__ == "__main__":
    main()
