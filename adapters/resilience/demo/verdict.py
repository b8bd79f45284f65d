"""The verdict, computed from the upstreams' own ledger and what the clients saw.

The clients' view alone could hide a double charge (a retry that succeeded
after a first attempt that also went through), so the ledger the payments
origins keep is the judge: charges executed must equal the distinct
idempotency keys among them, and every payment a client saw confirmed must
appear there exactly once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from resilience.claimcheck import ClaimCheck
from resilience.demo.metrics import Metrics
from resilience.demo.origins import Ledger
from resilience.demo.scenario import Phase
from resilience.demo.traffic import Payment

__all__ = ["ABUSIVE", "MAX_ABUSIVE_SHARE", "Check", "Verdict", "judge", "redeem_all"]

ABUSIVE = "free-mallory"
MAX_ABUSIVE_SHARE = 0.25  # of the requests served; it sends over half of all requests


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    charges: int
    distinct_keys: int
    received: int
    payments: int
    confirmed: int
    replayed: int
    retried: int
    served_in_outage: int
    abusive_sent_share: float
    abusive_served_share: float
    server_errors: int
    tickets: int
    tickets_intact: int
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)


async def redeem_all(claim_check: ClaimCheck, tickets: list[tuple[bytes, str]]) -> int:
    """How many ticketed receipts redeem to exactly the bytes the origin produced."""
    intact = 0
    for raw, digest in tickets:
        try:
            payload = await claim_check.aredeem(raw)
        except Exception:
            continue
        intact += hashlib.sha256(payload).hexdigest() == digest
    return intact


def judge(
    ledger: Ledger,
    payments: dict[str, Payment],
    metrics: Metrics,
    outage: Phase,
    tickets: int,
    tickets_intact: int,
) -> Verdict:
    per_key = Counter(charge.key for charge in ledger.charges)
    confirmed = [p for p in payments.values() if p.confirmed]
    charged_once = sum(per_key[f"{p.client}:{p.key}"] == 1 for p in confirmed)
    served = [s for s in metrics.samples if s.outcome in ("2xx", "replayed")]
    in_outage = sum(outage.start <= s.t < outage.end for s in served)
    abusive_sent = sum(s.client == ABUSIVE for s in metrics.samples)
    abusive_served = sum(s.client == ABUSIVE for s in served)
    errors = sum(s.outcome == "5xx" for s in metrics.samples)
    verdict = Verdict(
        charges=len(ledger.charges),
        distinct_keys=len(per_key),
        received=sum(ledger.received.values()),
        payments=len(payments),
        confirmed=len(confirmed),
        replayed=sum(s.outcome == "replayed" for s in metrics.samples),
        retried=sum(p.attempts > 1 for p in payments.values()),
        served_in_outage=in_outage,
        abusive_sent_share=abusive_sent / max(1, len(metrics.samples)),
        abusive_served_share=abusive_served / max(1, len(served)),
        server_errors=errors,
        tickets=tickets,
        tickets_intact=tickets_intact,
    )
    v = verdict
    v.checks = [
        Check(
            "no payment charged twice",
            v.charges == v.distinct_keys,
            f"charges executed {v.charges} {'==' if v.charges == v.distinct_keys else '!='} "
            f"distinct idempotency keys {v.distinct_keys}",
        ),
        Check(
            "every confirmed payment charged exactly once",
            charged_once == v.confirmed and v.confirmed > 0,
            f"{charged_once} of {v.confirmed} confirmed payments found once in the ledger",
        ),
        Check("no 500s", errors == 0, f"{errors} responses 5xx other than 503"),
        Check(
            "served during the primary's outage",
            in_outage > 0,
            f"{in_outage} requests answered 2xx between {outage.start:.1f}s and {outage.end:.1f}s",
        ),
        Check(
            "abusive client contained",
            v.abusive_served_share <= MAX_ABUSIVE_SHARE,
            f"{ABUSIVE} sent {v.abusive_sent_share:.0%} of requests, got "
            f"{v.abusive_served_share:.0%} of those served (bound {MAX_ABUSIVE_SHARE:.0%})",
        ),
        Check(
            "large receipts intact through the claim check",
            tickets_intact == tickets,
            f"{tickets_intact} of {tickets} ticketed receipts redeemed byte for byte",
        ),
    ]
    return verdict
