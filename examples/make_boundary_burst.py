"""Generate examples/boundary-burst.log, the sample for ``resilience replay`` (``make demo``).

Five minutes of Combined Log Format traffic, deterministic (fixed seed):

* background: 30 clients at 2 to 12 requests a minute each;
* a steady scraper, 198.51.100.23, at 90 requests a minute: heavy, but under
  the limit, so no policy should reject it;
* the boundary burst: 203.0.113.7 sends 100 requests in the five seconds
  before 12:02:00 and 100 more in the five seconds after it.

Against ``fixed-window:100/minute`` the burst client gets all 200 through
within ten seconds (the counter restarts at 12:02:00); the sliding log and
GCRA hold it to the limit.

``--lines N`` instead writes N lines of background-style traffic over a day
(about 20,000 clients), which is how the 1,000,000-line timing in
docs/replay.md was made.

    python examples/make_boundary_burst.py                    # the sample
    python examples/make_boundary_burst.py --lines 1000000 -o /tmp/big.log
"""

from __future__ import annotations

import argparse
import random
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2024, 3, 14, 12, 0, 0, tzinfo=UTC)
MINUTES = 5
BURST_CLIENT = "203.0.113.7"
SCRAPER = "198.51.100.23"
BOUNDARY = START + timedelta(minutes=2)

PATHS = ("/", "/api/orders", "/api/orders/{n}", "/api/items?page={n}", "/login", "/static/app.js")
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 Safari/605.1.15",
    "curl/8.5.0",
)
USERS = ("alice", "bob", "carol", "dave")


def clf_line(ip: str, user: str, when: datetime, path: str, status: int, agent: str) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    size = 0 if status == 304 else 200 + zlib.crc32(path.encode()) % 4000
    return (
        f'{ip} - {user} [{stamp}] "GET {path} HTTP/1.1" {status} {size} '
        f'"https://shop.example/" "{agent}"\n'
    )


def background(rng: random.Random) -> Iterator[tuple[float, str]]:
    clients = [f"198.51.100.{n}" for n in range(1, 21) if n != 23]
    clients += [f"192.0.2.{n}" for n in range(10, 21)]
    span = MINUTES * 60.0
    for index, ip in enumerate(clients):
        user = USERS[index % len(USERS)] if index % 3 == 0 else "-"
        agent = AGENTS[index % len(AGENTS)]
        rate = rng.uniform(2, 12) / 60.0  # requests per second
        t = rng.expovariate(rate)
        while t < span:
            path = rng.choice(PATHS).format(n=rng.randrange(1, 500))
            status = rng.choices((200, 304, 404), weights=(90, 7, 3))[0]
            yield t, clf_line(ip, user, START + timedelta(seconds=t), path, status, agent)
            t += rng.expovariate(rate)


def scraper() -> Iterator[tuple[float, str]]:
    agent = "scrapy/2.11 (+https://scrapy.org)"
    for i in range(MINUTES * 90):
        t = i * 60.0 / 90
        path = f"/api/items?page={i + 1}"
        yield t, clf_line(SCRAPER, "-", START + timedelta(seconds=t), path, 200, agent)


def burst() -> Iterator[tuple[float, str]]:
    agent = "python-requests/2.31.0"
    boundary = (BOUNDARY - START).total_seconds()
    for i in range(200):
        before = i < 100
        t = boundary - 5.0 + i * 0.05 if before else boundary + (i - 100) * 0.05
        path = f"/api/search?q=item{i}"
        yield t, clf_line(BURST_CLIENT, "-", START + timedelta(seconds=t), path, 200, agent)


def sample(seed: int) -> list[str]:
    rng = random.Random(seed)
    events = [*background(rng), *scraper(), *burst()]
    events.sort(key=lambda event: event[0])  # stable: same-second lines keep their order
    return [line for _, line in events]


def big(lines: int, seed: int) -> Iterator[str]:
    """``lines`` lines spread over one day from ~20,000 clients (for timing runs)."""
    rng = random.Random(seed)
    step = 86_400.0 / lines
    clients = [
        f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(20_000)
    ]
    weights = [1.0 / (rank + 1) for rank in range(len(clients))]  # a few heavy hitters
    picks = rng.choices(clients, weights=weights, k=lines)
    for i, ip in enumerate(picks):
        when = START + timedelta(seconds=i * step)
        path = rng.choice(PATHS).format(n=rng.randrange(1, 500))
        yield clf_line(ip, "-", when, path, 200, AGENTS[i % len(AGENTS)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o", "--output", default=str(Path(__file__).with_name("boundary-burst.log"))
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lines", type=int, default=0, help="write a big timing log instead")
    args = parser.parse_args()
    with open(args.output, "w", encoding="utf-8") as out:
        out.writelines(big(args.lines, args.seed) if args.lines else sample(args.seed))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
