"""The approvals webhook against a real HTTP receiver on 127.0.0.1: text, retries, bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.api.events import EventBus
from central.approvals import Approvals, Webhook, webhook_message
from central.approvals.webhook import format_duration
from central.config import ConfigError
from central.logs import AuditLog
from central.store import Store
from localproxy.contract import AccessRequestView, CommandReviewView
from tests.central.api.test_app import token_for
from tests.central.approvals.test_service import BOB, CAROL, approvals_config
from tests.support.central import make_config, running_central

SECRET_PATH = "/hooks/T000/B000/very-secret-token"


class Receiver:
    """A tiny HTTP/1.1 server: answers each POST with the next scripted status (then 200),
    records the JSON bodies it answered 2xx to, and can hold its answers until released."""

    def __init__(self, statuses: list[int] | None = None, *, hold: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        self.hits = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{SECRET_PATH}"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.release.set()
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            assert lines[0].startswith(f"POST {SECRET_PATH} HTTP/1.1"), lines[0]
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            length = int(headers.get("content-length") or headers.get("Content-Length") or 0)
            body = await reader.readexactly(length)
            self.hits += 1
            status = self.statuses.pop(0) if self.statuses else 200
            await self.release.wait()
            if 200 <= status < 300:
                self.bodies.append(json.loads(body))
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            async with self.arrived:
                self.arrived.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.bodies) >= count), timeout
            )
        return self.bodies


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


def fast(url: str, **kw: Any) -> Webhook:
    return Webhook(url, **({"timeout": 2.0, "backoff": 0.01} | kw))


NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


def access_view(**kw: Any) -> AccessRequestView:
    fields: dict[str, Any] = {
        "id": "r-1",
        "requester": "alice",
        "resource": "shop-db",
        "reason": "incident 123",
        "status": "pending",
        "requested_duration": 1800,
        "duration": 1800,
        "capped": False,
        "required_approvals": 1,
        "approvals": 0,
        "decisions": [],
        "created_at": NOW,
        "decided_at": None,
        "expires_at": None,
        "decided_by": None,
        "comment": None,
    }
    return AccessRequestView(**(fields | kw))


# -- the message ------------------------------------------------------------------------------


def test_request_message_is_slack_text_plus_fields() -> None:
    body = webhook_message("request.created", access_view(), by="alice", at=NOW)
    assert body == {
        "text": "alice requests access to shop-db for 30m: incident 123 — "
        "approve: watchgate approve r-1",
        "event": "request.created",
        "id": "r-1",
        "kind": "access",
        "requester": "alice",
        "resource": "shop-db",
        "status": "pending",
        "by": "alice",
        "comment": None,
        "at": NOW.isoformat(),
        "reason": "incident 123",
        "approvals": 0,
        "required_approvals": 1,
        "expires_at": None,
        "duration": 1800,
        "requested_duration": 1800,
    }


def test_decision_and_review_messages() -> None:
    until = NOW + timedelta(minutes=30)
    approved = access_view(status="approved", expires_at=until, comment="ok", decided_by="bob")
    text = webhook_message("request.approved", approved, by="bob")["text"]
    assert text == "bob approved alice's access to shop-db until 2030-05-17 12:30 UTC: ok"
    capped = access_view(requested_duration=12 * 3600, duration=8 * 3600, capped=True)
    assert "for 8h (asked 12h)" in webhook_message("request.created", capped)["text"]

    review = CommandReviewView(
        id="v-1",
        requester="carol",
        resource="shop-db-admin",
        session_id="s-1",
        statement="DELETE FROM t WHERE a < 3 && b > 2",
        rule="deletes",
        reason="delete needs review",
        status="denied",
        required_approvals=1,
        approvals=0,
        decisions=[],
        created_at=NOW,
        decided_at=NOW,
        expires_at=NOW,
        decided_by="bob",
        comment="<script>",
    )
    body = webhook_message("review.denied", review, by="bob")
    # Slack's control characters are escaped in `text`; the fields keep the exact statement.
    assert body["text"] == (
        "bob denied carol's held statement on shop-db-admin: "
        "`DELETE FROM t WHERE a &lt; 3 &amp;&amp; b &gt; 2`: &lt;script&gt;"
    )
    assert (body["statement"], body["rule"], body["kind"]) == (
        "DELETE FROM t WHERE a < 3 && b > 2",
        "deletes",
        "command",
    )


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45s"), (90, "1m30s"), (1800, "30m"), (5400, "1h30m"), (86400, "1d")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


# -- delivery ---------------------------------------------------------------------------------


async def test_messages_arrive_in_order(receiver: Receiver) -> None:
    hook = fast(receiver.url)
    hook.start()
    try:
        for i in range(3):
            hook.send({"event": "tick", "id": str(i)})
        await hook.flush()
    finally:
        await hook.close()
    assert [b["id"] for b in receiver.bodies] == ["0", "1", "2"]
    assert (hook.sent, hook.failed, hook.dropped) == (3, 0, 0)


async def test_a_receiver_failing_twice_gets_the_message_on_the_third_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="central.approvals.webhook")
    async with Receiver([500, 503]) as receiver:
        hook = fast(receiver.url, backoff=0.05)
        hook.start()
        started = time.monotonic()
        try:
            hook.send({"event": "request.created", "id": "r-1"})
            await receiver.wait_for(1)
        finally:
            await hook.close()
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff doubled between attempts
    assert receiver.hits == 3
    assert receiver.bodies == [{"event": "request.created", "id": "r-1"}]
    assert (hook.sent, hook.failed) == (1, 0)
    assert "attempt 1 failed (HTTP 500)" in caplog.text
    assert "attempt 2 failed (HTTP 503)" in caplog.text
    assert "very-secret-token" not in caplog.text  # the URL's secret never reaches the logs


async def test_after_three_failures_the_message_is_given_up_and_the_next_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Receiver([500, 500, 500]) as receiver:
        hook = fast(receiver.url)
        hook.start()
        try:
            hook.send({"event": "first", "id": "a"})
            hook.send({"event": "second", "id": "b"})
            await receiver.wait_for(1)
        finally:
            await hook.close()
    assert receiver.hits == 4
    assert [b["id"] for b in receiver.bodies] == ["b"]
    assert (hook.sent, hook.failed) == (1, 1)
    assert "gave up on first a after 3 attempts (HTTP 500)" in caplog.text


async def test_an_unreachable_receiver_costs_nothing_but_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Receiver() as gone:
        url = gone.url
    hook = fast(url)
    hook.start()
    try:
        hook.send({"event": "tick", "id": "x"})
        await asyncio.wait_for(hook.flush(), 5)
    finally:
        await hook.close()
    assert (hook.sent, hook.failed) == (0, 1)
    assert "ConnectError" in caplog.text
    assert "very-secret-token" not in caplog.text


async def test_a_hanging_receiver_times_out() -> None:
    async with Receiver(hold=True) as receiver:
        hook = fast(receiver.url, timeout=0.2, attempts=2)
        hook.start()
        started = time.monotonic()
        try:
            hook.send({"event": "tick", "id": "x"})
            await asyncio.wait_for(hook.flush(), 5)
        finally:
            await hook.close()
        assert time.monotonic() - started < 2
        assert (hook.sent, hook.failed, receiver.hits) == (0, 1, 2)


async def test_a_full_queue_drops_the_oldest_with_a_warning(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook = fast(receiver.url, queue_limit=5)
    with caplog.at_level(logging.WARNING, logger="central.approvals.webhook"):
        for i in range(8):
            hook.send({"event": "tick", "id": str(i)})
    assert hook.dropped == 3
    assert caplog.text.count("queue full (5), dropped the oldest message") == 3
    hook.start()
    try:
        await hook.flush()
    finally:
        await hook.close()
    assert [b["id"] for b in receiver.bodies] == ["3", "4", "5", "6", "7"]


async def test_sending_never_blocks_on_a_stuck_receiver() -> None:
    async with Receiver(hold=True) as receiver:
        hook = fast(receiver.url, queue_limit=10, timeout=5.0)
        hook.start()
        try:
            hook.send({"event": "tick", "id": "in-flight"})
            for _ in range(50):  # let the sender pick it up and block on the receiver
                if receiver.hits:
                    break
                await asyncio.sleep(0.01)
            started = time.monotonic()
            for i in range(1000):
                hook.send({"event": "tick", "id": str(i)})
            assert time.monotonic() - started < 0.5
            assert hook.dropped == 990
            receiver.release.set()
            await asyncio.wait_for(hook.flush(), 10)
        finally:
            await hook.close()
        assert [b["id"] for b in receiver.bodies] == ["in-flight"] + [
            str(i) for i in range(990, 1000)
        ]


async def test_close_delivers_what_is_queued(receiver: Receiver) -> None:
    hook = fast(receiver.url)
    hook.start()
    hook.send({"event": "last", "id": "z"})
    await hook.close()
    assert [b["id"] for b in receiver.bodies] == ["z"]


# -- wired to the approvals service and to central -------------------------------------------


async def test_requests_and_decisions_are_posted(receiver: Receiver, tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    approvals = Approvals(
        lambda: approvals_config(tmp_path),
        store,
        EventBus(),
        AuditLog(tmp_path / "audit.jsonl"),
        webhook=fast(receiver.url),
    )
    approvals.start()
    try:
        view = await approvals.request_access(CAROL, "shop-db-admin", "incident 123", 1800)
        await approvals.decide(BOB, view.id, True, "go ahead")
        created, approved = await receiver.wait_for(2)
    finally:
        await approvals.close()
        await store.close()
    assert created["text"] == (
        f"carol requests access to shop-db-admin for 30m: incident 123 — "
        f"approve: watchgate approve {view.id}"
    )
    assert (created["event"], created["by"], created["status"]) == (
        "request.created",
        "carol",
        "pending",
    )
    assert (approved["event"], approved["id"], approved["by"], approved["comment"]) == (
        "request.approved",
        view.id,
        "bob",
        "go ahead",
    )
    assert approved["text"].startswith("bob approved carol's access to shop-db-admin until ")


async def test_central_posts_to_the_configured_webhook(receiver: Receiver, tmp_path: Path) -> None:
    async with running_central(tmp_path, server={"webhook_url": receiver.url}) as central:
        headers = {"Authorization": f"Bearer {token_for(central, 'carol')}"}
        async with httpx.AsyncClient(base_url=central.url, timeout=10) as http:
            resp = await http.post(
                "/api/requests",
                json={"resource": "shop-db-admin", "reason": "incident 9", "duration": "15m"},
                headers=headers,
            )
        assert resp.status_code == 200, resp.text
        (body,) = await receiver.wait_for(1)
    assert body["event"] == "request.created" and body["id"] == resp.json()["id"]
    assert "carol requests access to shop-db-admin for 15m: incident 9" in body["text"]


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/x", "hooks.example/x", "https://", "https:// space"]
)
def test_webhook_url_must_be_http(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="webhook_url is not an http") as caught:
        make_config(tmp_path, 8470, server={"webhook_url": url})
    assert url not in str(caught.value)  # the URL may carry a secret: never echoed


def test_webhook_settings_are_read(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        8470,
        server={"webhook_url": "https://hooks.slack.com/services/T/B/x", "webhook_timeout": 2.5},
    )
    assert config.server.webhook_url == "https://hooks.slack.com/services/T/B/x"
    assert config.server.webhook_timeout == 2.5
    with pytest.raises(ConfigError, match="webhook_timeout"):
        make_config(tmp_path, 8470, server={"webhook_timeout": 0})
