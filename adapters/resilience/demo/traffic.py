"""The traffic generator: well-behaved clients on two plans, one abusive client, and payers.

- ``free-ana``, ``free-bo`` (free plan) and ``paid-cy``, ``paid-di`` (paid
  plan) read their balance at a steady pace, honour ``Retry-After``, and pay:
  every payment carries an ``Idempotency-Key`` and is retried with the *same*
  key after a timeout, a 409 (still running), a 503 or a lost connection,
  until it is confirmed (or the run's grace period ends);
- ``free-mallory`` hammers ``GET /balance`` from several loops at once and
  ignores every ``Retry-After``.

Pacing and amounts come from a ``random.Random`` seeded per client, so a run
sends the same requests in the same order up to the machine's timing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from resilience.demo.metrics import Metrics, classify

__all__ = ["Payment", "Traffic"]

POST_TIMEOUT = 0.5  # seconds: shorter than a slow charge, so clients do time out and retry
GET_TIMEOUT = 2.0
ABUSIVE_LOOPS = 4


@dataclass
class Payment:
    key: str
    client: str
    amount: int
    attempts: int = 0
    confirmed: bool = False
    replayed: bool = False


class Traffic:
    """Runs the clients against ``base_url`` for ``duration`` seconds, then lets payers finish."""

    def __init__(
        self,
        base_url: str,
        metrics: Metrics,
        now: Callable[[], float],
        duration: float,
        seed: int,
        grace: float = 4.0,
    ) -> None:
        self.base_url = base_url
        self.metrics = metrics
        self.now = now
        self.duration = duration
        self.deadline = duration + grace  # payers keep retrying unfinished payments until then
        self.seed = seed
        self.payments: dict[str, Payment] = {}
        self.policies: dict[str, str] = {}  # client -> the RateLimit-Policy its answers carried
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(self.base_url, connector=connector) as session:
            self._session = session
            tasks = [
                self._browse("free-ana", 2.0),
                self._browse("free-bo", 2.0),
                self._browse("paid-cy", 8.0),
                self._browse("paid-di", 8.0),
                self._pay("free-ana", 1.4),
                self._pay("free-bo", 1.6),
                self._pay("paid-cy", 0.3),
                self._pay("paid-cy", 0.3, lane=2),
                self._pay("paid-di", 0.3),
                self._pay("paid-di", 0.3, lane=2),
                *(self._abuse("free-mallory", lane) for lane in range(ABUSIVE_LOOPS)),
            ]
            async with asyncio.TaskGroup() as group:
                for coroutine in tasks:
                    group.create_task(coroutine)

    def _rng(self, client: str, lane: int) -> random.Random:
        return random.Random(f"{self.seed}-{client}-{lane}")

    async def _request(
        self,
        client: str,
        method: str,
        path: str,
        timeout: float,
        payload: dict[str, int] | None = None,
        key: str | None = None,
    ) -> tuple[str, float, float]:
        """One request: ``(outcome, Retry-After seconds or 0, latency)``; recorded in metrics."""
        assert self._session is not None
        headers = {"X-API-Key": client}
        if key is not None:
            headers["Idempotency-Key"] = key
        started = self.now()
        retry_after = 0.0
        try:
            async with self._session.request(
                method,
                path,
                headers=headers,
                json=payload,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                await resp.read()
                outcome = classify(resp.status, resp.headers.get("Idempotent-Replayed") == "true")
                policy = resp.headers.get("RateLimit-Policy")
                if policy is not None:
                    self.policies.setdefault(client, policy)
                value = resp.headers.get("Retry-After", "")
                retry_after = float(value) if value.isdigit() else 0.0
        except (TimeoutError, aiohttp.ClientError):
            outcome = "timeout"
        ended = self.now()
        self.metrics.record(ended, client, method, outcome, ended - started)
        return outcome, retry_after, ended - started

    async def _browse(self, client: str, rate: float) -> None:
        rng = self._rng(client, 0)
        while self.now() < self.duration:
            outcome, retry_after, latency = await self._request(
                client, "GET", "/balance", GET_TIMEOUT
            )
            pause = rng.expovariate(rate)
            if outcome in ("429", "503") and retry_after:  # well-behaved: wait as told
                pause = max(pause, retry_after)
            await asyncio.sleep(max(0.0, pause - latency))

    async def _abuse(self, client: str, lane: int) -> None:
        rng = self._rng(client, lane)
        while self.now() < self.duration:
            await self._request(client, "GET", "/balance", GET_TIMEOUT)
            await asyncio.sleep(0.05 + 0.1 * rng.random())  # never mind Retry-After

    async def _pay(self, client: str, interval: float, lane: int = 1) -> None:
        rng = self._rng(client, lane)
        number = 0
        while self.now() < self.duration:
            number += 1
            amount = 950 + rng.randrange(50) if rng.random() < 0.12 else 5 + rng.randrange(200)
            payment = Payment(
                f"pay-{client}-{lane}-{number}-{rng.getrandbits(32):08x}", client, amount
            )
            self.payments[payment.key] = payment
            await self._settle(payment, rng)
            await asyncio.sleep(rng.expovariate(1.0 / interval))

    async def _settle(self, payment: Payment, rng: random.Random) -> None:
        """Send one payment until it is confirmed, always with the same key."""
        backoff = 0.15
        while self.now() < self.deadline:
            payment.attempts += 1
            outcome, retry_after, _ = await self._request(
                payment.client,
                "POST",
                "/charges",
                POST_TIMEOUT,
                payload={"amount": payment.amount},
                key=payment.key,
            )
            if outcome in ("2xx", "replayed"):
                payment.confirmed = True
                payment.replayed = outcome == "replayed"
                return
            if outcome in ("4xx", "5xx"):
                return  # a request the API will never accept: retrying cannot help
            wait = retry_after if outcome in ("429", "409") and retry_after else backoff
            await asyncio.sleep(min(wait, 1.0) * (0.5 + rng.random()))
            backoff = min(backoff * 2, 0.8)
