"""Access requests and approvals over the HTTP API, with two users and the live event stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from localproxy.api import CentralClient, CentralError
from localproxy.contract import AccessRequestView, CommandReviewView
from tests.central.api.test_app import token_for
from tests.central.api.test_events import sse, wait_subscribed
from tests.central.approvals.test_service import CAROL, EXTRA_ROLES, EXTRA_USERS
from tests.support.central import ROLES, USERS, Running, running_central


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_central(
        tmp_path, identity={"users": USERS + EXTRA_USERS}, roles=ROLES + EXTRA_ROLES
    ) as running:
        yield running


class Stream:
    """One user's open /api/events stream; `next()` gives the next (type, event JSON)."""

    def __init__(self, events: AsyncIterator[tuple[str, str]]) -> None:
        self._events = events

    async def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        kind, data = await asyncio.wait_for(anext(self._events), timeout)
        return kind, json.loads(data)


async def open_streams(stack: AsyncExitStack, central: Running, *users: str) -> dict[str, Stream]:
    http = await stack.enter_async_context(httpx.AsyncClient(base_url=central.url, timeout=10))
    streams = {}
    for user in users:
        headers = {"Authorization": f"Bearer {token_for(central, user)}"}
        resp = await stack.enter_async_context(http.stream("GET", "/api/events", headers=headers))
        events = sse(resp)
        assert (await anext(events))[0] == "hello"
        await wait_subscribed(central, user)
        streams[user] = Stream(events)
    return streams


def client(central: Running, user: str) -> CentralClient:
    return CentralClient(central.url, token_for(central, user))


async def call(
    central: Running, user: str, method: str, path: str, body: Any = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token_for(central, user)}"}
    async with httpx.AsyncClient(base_url=central.url, timeout=10) as http:
        return await http.request(method, f"/api{path}", json=body, headers=headers)


async def access(central: Running, user: str, resource: str) -> dict[str, Any]:
    resp = await call(central, user, "GET", "/resources")
    assert resp.status_code == 200
    (found,) = [r for r in resp.json() if r["name"] == resource]
    return dict(found)


async def test_request_approve_flow_with_live_events(central: Running) -> None:
    assert (await access(central, "carol", "shop-db-admin"))["access"] == "requestable"
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, central, "carol", "bob", "alice")

        resp = await call(
            central,
            "carol",
            "POST",
            "/requests",
            {"resource": "shop-db-admin", "reason": "incident 123", "duration": "30m"},
        )
        assert resp.status_code == 200, resp.text
        created = resp.json()
        rid = created["id"]
        assert (created["kind"], created["status"], created["duration"]) == (
            "access",
            "pending",
            1800,
        )
        for user in ("carol", "bob"):  # the requester and the reviewer (by group) hear it
            kind, event = await streams[user].next()
            assert kind == "request.created" and event["data"]["id"] == rid
            assert event["data"]["reason"] == "incident 123"

        state = await access(central, "carol", "shop-db-admin")
        assert (state["access"], state["request_id"]) == ("pending", rid)

        # Inbox: bob sees it; carol and alice do not.
        inbox = await call(central, "bob", "GET", "/approvals")
        assert [i["id"] for i in inbox.json()] == [rid]
        assert (await call(central, "alice", "GET", "/approvals")).json() == []
        assert (await call(central, "carol", "GET", "/approvals")).json() == []
        mine = await call(central, "carol", "GET", "/requests")
        assert [i["id"] for i in mine.json()] == [rid]
        assert (await call(central, "bob", "GET", f"/approvals/{rid}")).status_code == 200
        assert (await call(central, "carol", "GET", f"/approvals/{rid}")).status_code == 200
        hidden = await call(central, "alice", "GET", f"/approvals/{rid}")
        assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"

        # Refusals: own request, not a reviewer.
        own = await call(central, "carol", "POST", f"/approvals/{rid}/approve", {})
        assert own.status_code == 403
        assert own.json() == {
            "error": "self_approval",
            "reason": "nobody approves their own request",
        }
        outsider = await call(central, "alice", "POST", f"/approvals/{rid}/approve")
        assert outsider.status_code == 403 and outsider.json()["error"] == "not_reviewer"

        started = time.monotonic()
        resp = await call(
            central, "bob", "POST", f"/approvals/{rid}/approve", {"comment": "go ahead"}
        )
        assert resp.status_code == 200, resp.text
        approved = resp.json()
        assert (approved["status"], approved["decided_by"], approved["comment"]) == (
            "approved",
            "bob",
            "go ahead",
        )
        for user in ("carol", "bob"):
            kind, event = await streams[user].next()
            assert kind == "request.approved" and event["data"]["status"] == "approved"
        assert time.monotonic() - started < 2.0

        # Alice heard nothing of it: the next thing on her stream is this ping.
        central.central.events.publish(["alice"], "ping", {})
        assert (await streams["alice"].next())[0] == "ping"

    state = await access(central, "carol", "shop-db-admin")
    assert (state["access"], state["request_id"]) == ("granted", rid)
    assert state["granted_until"] == approved["expires_at"]
    expires = datetime.fromisoformat(approved["expires_at"])
    decided = datetime.fromisoformat(approved["decided_at"])
    assert expires - decided == timedelta(minutes=30)

    again = await call(central, "bob", "POST", f"/approvals/{rid}/approve")
    assert again.status_code == 409 and again.json()["error"] == "not_pending"

    # The grant ends: the resource is requestable again, and everyone concerned hears it.
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, central, "carol", "bob")
        changed = await central.central.approvals.sweep(expires + timedelta(seconds=1))
        assert changed == 1
        for user in ("carol", "bob"):
            kind, event = await streams[user].next()
            assert kind == "grant.expired" and event["data"]["id"] == rid
    assert (await access(central, "carol", "shop-db-admin"))["access"] == "requestable"


async def test_deny_with_reason(central: Running) -> None:
    resp = await call(
        central, "carol", "POST", "/requests", {"resource": "shop-db", "reason": "look"}
    )
    rid = resp.json()["id"]
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, central, "carol")
        missing = await call(central, "bob", "POST", f"/approvals/{rid}/deny", {})
        assert missing.status_code == 400 and missing.json()["error"] == "invalid"
        assert "reason" in missing.json()["reason"]
        empty = await call(central, "bob", "POST", f"/approvals/{rid}/deny", {"reason": " "})
        assert empty.status_code == 400
        assert empty.json() == {"error": "reason_required", "reason": "a denial needs a reason"}

        denied = await call(
            central, "bob", "POST", f"/approvals/{rid}/deny", {"reason": "use the replica"}
        )
        assert denied.status_code == 200
        assert (denied.json()["status"], denied.json()["comment"]) == (
            "denied",
            "use the replica",
        )
        kind, event = await streams["carol"].next()
        assert kind == "request.denied" and event["data"]["comment"] == "use the replica"
    assert (await access(central, "carol", "shop-db"))["access"] == "requestable"


@pytest.mark.parametrize(
    ("user", "body", "status", "error"),
    [
        ("alice", {"resource": "shop-db", "reason": "r"}, 400, "direct"),
        ("carol", {"resource": "lab-host", "reason": "r"}, 404, "not_found"),
        ("carol", {"resource": "shop-db", "reason": ""}, 400, "reason_required"),
        ("carol", {"resource": "shop-db", "reason": "r", "duration": "soon"}, 400, "invalid"),
        ("carol", {"resource": "shop-db", "reason": "r", "duration": -5}, 400, "invalid"),
        ("carol", {"reason": "r"}, 400, "invalid"),
        ("bob", {"resource": "lab-host", "reason": "r"}, 409, "no_reviewers"),
    ],
)
async def test_bad_requests_get_json_errors(
    central: Running, user: str, body: dict[str, Any], status: int, error: str
) -> None:
    resp = await call(central, user, "POST", "/requests", body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error
    assert set(resp.json()) == {"error", "reason"}


async def test_unknown_ids_and_bad_tokens(central: Running) -> None:
    for method, path in [
        ("GET", "/approvals/nope"),
        ("POST", "/approvals/nope/approve"),
    ]:
        resp = await call(central, "bob", method, path)
        assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    async with httpx.AsyncClient(base_url=central.url) as http:
        resp = await http.get("/api/approvals", headers={"Authorization": "Bearer x.y.z"})
    assert resp.status_code == 401


async def test_two_approvals_through_the_client(central: Running) -> None:
    async with (
        client(central, "olga") as olga,
        client(central, "bob") as bob,
        client(central, "erin") as erin,
    ):
        asked = await olga.request_access("reports-db", "quarterly numbers", "1h")
        assert isinstance(asked, AccessRequestView)
        assert (asked.requested_duration, asked.duration, asked.capped) == (3600, 1800, True)
        assert (await olga.request_access("reports-db", "again")).id == asked.id

        assert [i.id for i in await erin.approvals()] == [asked.id]
        first = await bob.approve(asked.id, "fine")
        assert (first.status, first.approvals, first.required_approvals) == ("pending", 1, 2)
        with pytest.raises(CentralError) as caught:
            await bob.approve(asked.id)
        assert (caught.value.status, caught.value.code) == (409, "already_approved")
        with pytest.raises(CentralError) as caught:
            await olga.approve(asked.id)
        assert caught.value.status == 403
        assert "nobody approves their own request" in str(caught.value)

        done = await erin.approve(asked.id)
        assert (done.status, done.decided_by) == ("approved", "bob, erin")
        assert [(d.reviewer, d.decision) for d in done.decisions] == [
            ("bob", "approve"),
            ("erin", "approve"),
        ]
        assert (await olga.approval(asked.id)).status == "approved"
        assert [i.id for i in await olga.my_requests()] == [asked.id]
        (view,) = [r for r in await olga.resources() if r.name == "reports-db"]
        assert (view.access, view.request_id) == ("granted", asked.id)

        other = await olga.request_access("reports-db", "more numbers", 600)
        denied = await erin.deny(other.id, "one grant at a time")
        assert (denied.status, denied.comment) == ("denied", "one grant at a time")


async def test_held_statement_is_reviewed_live_and_runs_once(central: Running) -> None:
    approvals = central.central.approvals
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, central, "carol", "bob")
        review = await approvals.hold(
            CAROL, "shop-db-admin", "sess-9", "DROP TABLE orders", "no-drops", "drop", 30
        )
        waiting = asyncio.ensure_future(approvals.wait(review.id))
        kind, event = await streams["bob"].next()
        assert kind == "review.created"
        assert (event["data"]["statement"], event["data"]["rule"]) == (
            "DROP TABLE orders",
            "no-drops",
        )
        assert (await streams["carol"].next())[0] == "review.created"

        async with client(central, "bob") as bob:
            (item,) = await bob.approvals()
            assert isinstance(item, CommandReviewView) and item.id == review.id
            decided = await bob.approve(review.id, "once")
        assert decided.status == "approved"
        assert (await asyncio.wait_for(waiting, 5)).status == "approved"
        assert (await streams["carol"].next())[0] == "review.approved"

    assert await approvals.consume(review.id)
    assert not await approvals.consume(review.id)
    async with client(central, "carol") as carol:
        assert (await carol.approval(review.id)).status == "consumed"
        (mine,) = await carol.my_requests()
        assert mine.kind == "command"


async def test_expired_request_is_announced(central: Running) -> None:
    resp = await call(
        central, "carol", "POST", "/requests", {"resource": "shop-db", "reason": "later"}
    )
    rid = resp.json()["id"]
    async with AsyncExitStack() as stack:
        streams = await open_streams(stack, central, "carol", "bob")
        assert await central.central.approvals.sweep(datetime.now(UTC) + timedelta(days=2)) == 1
        for user in ("carol", "bob"):
            kind, event = await streams[user].next()
            assert kind == "request.expired" and event["data"]["id"] == rid
    assert (await access(central, "carol", "shop-db"))["access"] == "requestable"
    late = await call(central, "bob", "POST", f"/approvals/{rid}/approve")
    assert late.status_code == 409
