"""The live event stream: server-sent events, per user, bounded, ending with the token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from central.api.events import QUEUE_LIMIT, EventBus, Subscription
from tests.central.api.test_app import token_for
from tests.support.central import Running, running_central


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_central(tmp_path) as running:
        yield running


async def sse(resp: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs from a text/event-stream response."""
    event, data = "message", ""
    async for line in resp.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "":
            if data:
                yield event, data
            event, data = "message", ""


async def wait_subscribed(central: Running, user: str) -> None:
    for _ in range(200):
        if central.central.events.subscribers(user):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{user} never subscribed")


async def test_events_reach_their_user_only(central: Running) -> None:
    headers_a = {"Authorization": f"Bearer {token_for(central, 'alice')}"}
    headers_b = {"Authorization": f"Bearer {token_for(central, 'bob')}"}
    async with (
        httpx.AsyncClient(base_url=central.url, timeout=10) as http,
        http.stream("GET", "/api/events", headers=headers_a) as alice,
        http.stream("GET", "/api/events", headers=headers_b) as bob,
    ):
        assert alice.headers["content-type"].startswith("text/event-stream")
        a_events, b_events = sse(alice), sse(bob)
        assert (await anext(a_events))[0] == "hello"
        assert (await anext(b_events))[0] == "hello"
        await wait_subscribed(central, "alice")
        await wait_subscribed(central, "bob")
        central.central.events.publish(["alice"], "request.approved", {"request": "r1"})
        central.central.events.publish(["bob"], "request.created", {"request": "r2"})
        kind, data = await asyncio.wait_for(anext(a_events), 5)
        assert kind == "request.approved" and json.loads(data)["data"] == {"request": "r1"}
        kind, data = await asyncio.wait_for(anext(b_events), 5)
        assert kind == "request.created" and json.loads(data)["data"] == {"request": "r2"}


async def test_stream_needs_a_valid_token(central: Running) -> None:
    async with httpx.AsyncClient(base_url=central.url) as http:
        resp = await http.get("/api/events", headers={"Authorization": "Bearer x.y.z"})
        assert resp.status_code == 401


async def test_stream_ends_when_the_token_expires(central: Running) -> None:
    headers = {"Authorization": f"Bearer {token_for(central, 'alice', ttl=2)}"}
    async with (
        httpx.AsyncClient(base_url=central.url, timeout=10) as http,
        http.stream("GET", "/api/events", headers=headers) as resp,
    ):
        kinds = [kind async for kind, _ in sse(resp)]
    assert kinds == ["hello", "token-expired"]
    assert central.central.events.subscribers("alice") == 0


async def test_a_slow_subscriber_is_cut_off_not_buffered_forever() -> None:
    bus = EventBus()
    slow = bus.subscribe("alice")
    for i in range(QUEUE_LIMIT + 1):
        bus.publish(["alice"], "tick", {"i": i})
    assert bus.subscribers("alice") == 0
    assert slow.queue.get_nowait() is None  # the end-of-stream marker, nothing else kept


async def test_group_events_reach_every_member_once() -> None:
    bus = EventBus()
    bob = bus.subscribe("bob", ["admins", "sre"])
    bob_phone = bus.subscribe("bob", ["admins"])
    erin = bus.subscribe("erin", ["sre"])
    alice = bus.subscribe("alice", ["analysts"])

    bus.publish(["bob"], "review.created", {"id": "r1"}, groups=["admins", "sre"])
    bus.publish((), "request.created", {"id": "r2"}, groups=["sre"])

    def types(sub: Subscription) -> list[str]:
        out = []
        while not sub.queue.empty():
            event = sub.queue.get_nowait()
            assert event is not None
            out.append(event.type)
        return out

    assert types(bob) == ["review.created", "request.created"]  # once, though 3 ways matched
    assert types(bob_phone) == ["review.created"]
    assert types(erin) == ["review.created", "request.created"]
    assert types(alice) == []

    bob.close()
    bus.publish((), "tick", {}, groups=["sre"])
    assert types(bob) == [] and types(erin) == ["tick"]
    bob_phone.close()
    erin.close()
    alice.close()
    assert bus._subs == {} and bus._by_group == {}  # nothing left behind


async def test_the_stream_carries_events_for_the_users_groups(central: Running) -> None:
    headers = {"Authorization": f"Bearer {token_for(central, 'bob')}"}  # bob is in admins
    async with (
        httpx.AsyncClient(base_url=central.url, timeout=10) as http,
        http.stream("GET", "/api/events", headers=headers) as bob,
    ):
        events = sse(bob)
        assert (await anext(events))[0] == "hello"
        await wait_subscribed(central, "bob")
        central.central.events.publish((), "nobody.listens", {}, groups=["analysts"])
        central.central.events.publish((), "request.created", {"id": "r1"}, groups=["admins"])
        kind, data = await asyncio.wait_for(anext(events), 5)
        assert kind == "request.created" and json.loads(data)["data"] == {"id": "r1"}
