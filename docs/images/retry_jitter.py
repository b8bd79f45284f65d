"""Draw docs/images/retry-jitter.png: the delays each jitter mode picks, retry by retry.

Run ``python docs/images/retry_jitter.py`` (needs matplotlib, the ``plot`` extra).
"""

from __future__ import annotations

import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from resilience.retrying import Backoff

RETRIES = range(1, 11)
CLIENTS = 200


def main() -> None:
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=True)
    for ax, jitter in zip(axes, [None, "full", "equal", "decorrelated"], strict=True):
        backoff = Backoff(0.1, 10.0, 2.0, jitter=jitter, rng=random.Random(1))  # type: ignore[arg-type]
        xs: list[float] = []
        ys: list[float] = []
        rng = random.Random(2)
        for _ in range(CLIENTS):
            previous = 0.0
            for n in RETRIES:
                previous = backoff.delay(n, previous)
                xs.append(n + rng.uniform(-0.25, 0.25))
                ys.append(previous)
        ax.scatter(xs, ys, s=2, alpha=0.35)
        ax.plot(list(RETRIES), [backoff.base(n) for n in RETRIES], color="black", lw=1)
        ax.set_title(f"jitter={jitter!r}")
        ax.set_xlabel("retry")
    axes[0].set_ylabel("delay (s); line: un-jittered, capped at 10 s")
    fig.suptitle("Backoff(initial=0.1, maximum=10, multiplier=2): 200 clients' delays")
    fig.tight_layout()
    fig.savefig(Path(__file__).with_name("retry-jitter.png"), dpi=80)


if __name__ == "__main__":
    main()
