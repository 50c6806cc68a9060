"""Decision-to-delivery latency of approval events (target: under 100 ms).

    .venv/bin/python bench/approval_latency.py [--rounds 50]

Runs a real central on loopback (built-in issuer, SQLite store), keeps carol's live event
stream (server-sent events) open, and for each round: carol requests access, bob approves over
the HTTP API, and we time from the moment bob's approve request is sent to the moment carol's
stream delivers `request.approved`. Prints p50 / p95 / max, and the same for the reviewer's
`request.created` notification.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localproxy.api import CentralClient
from tests.support.central import running_central


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[max(0, int(len(values) * 0.95) - 1)]
    return (
        f"{name:<28} n={len(values)}  p50 {statistics.median(values):6.1f} ms  "
        f"p95 {p95:6.1f} ms  max {values[-1]:6.1f} ms"
    )


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_central(Path(tmp)) as running:
            issuer = running.central.issuer
            assert issuer is not None

            def token(user: str) -> str:
                found = issuer.users.get(user)
                assert found is not None
                return issuer.minter.mint_access_token(found, ttl=3600)

            decided: list[float] = []
            created: list[float] = []
            async with (
                CentralClient(running.url, token("carol")) as carol,
                CentralClient(running.url, token("bob")) as bob,
                carol.events() as carol_events,
                bob.events() as bob_events,
            ):
                for i in range(rounds):
                    sent = time.perf_counter()
                    view = await carol.request_access("shop-db-admin", f"round {i}", 600)
                    async for event in bob_events:
                        if event.type == "request.created" and event.data.get("id") == view.id:
                            created.append((time.perf_counter() - sent) * 1000)
                            break
                    sent = time.perf_counter()
                    approving = asyncio.ensure_future(bob.approve(view.id, "ok"))
                    async for event in carol_events:
                        if event.type == "request.approved" and event.data.get("id") == view.id:
                            decided.append((time.perf_counter() - sent) * 1000)
                            break
                    await approving
                    # Expire the grant so the next request is a new one.
                    async with running.central.store.session() as s, s.begin():
                        from central.store import AccessRequest

                        row = await s.get(AccessRequest, view.id)
                        assert row is not None
                        row.status = "expired"
            print(summary("request -> reviewer event", created))
            print(summary("decision -> requester event", decided))
            print(
                f"target: decision -> delivery under 100 ms: "
                f"{'met' if max(decided) < 100 else 'NOT met'} (max {max(decided):.1f} ms)"
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(ap.parse_args().rounds))
