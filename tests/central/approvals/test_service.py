"""The approvals service on SQLite and PostgreSQL: requests, reviews, decisions, expiry, events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from central.api.events import EventBus, Subscription
from central.approvals import ApprovalError, Approvals
from central.config import Config
from central.identity.tokens import Identity
from central.logs import AuditLog
from central.store import AccessRequest, Store
from localproxy.contract import AccessRequestView, CommandReviewView, Event
from tests.support.central import ROLES, USERS, make_config

# Beside the shared roles (carol of dba-leads asks for shop-db*, reviewed by admins such as
# bob): olga of on-call asks for reports-db, which needs two distinct reviewers of admins or
# sre; erin is in sre; zed is in dba-leads and admins, so by group a reviewer of himself.
EXTRA_USERS = [
    {"name": "erin", "password": "erin-pw", "groups": ["sre"]},
    {"name": "frank", "password": "frank-pw", "groups": ["admins"]},
    {"name": "olga", "password": "olga-pw", "groups": ["oncall"]},
    {"name": "zed", "password": "zed-pw", "groups": ["dba-leads", "admins"]},
]
EXTRA_ROLES = [
    {
        "name": "oncall",
        "groups": ["oncall"],
        "resources": ["reports-db"],
        "access": "request",
        "reviewers": ["admins", "sre"],
        "approvals": 2,
        "max_duration": 1800,
    },
]


def approvals_config(tmp: Path, roles: list[dict[str, Any]] | None = None) -> Config:
    return make_config(
        tmp,
        8470,
        identity={"users": USERS + EXTRA_USERS},
        roles=roles if roles is not None else ROLES + EXTRA_ROLES,
    )


def who(user: str, *groups: str) -> Identity:
    return Identity(
        user=user,
        subject=f"sub-{user}",
        groups=groups,
        issuer="https://issuer.test",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


CAROL = who("carol", "dba-leads")
BOB = who("bob", "admins")
FRANK = who("frank", "admins")
ERIN = who("erin", "sre")
ALICE = who("alice", "analysts")
OLGA = who("olga", "oncall")
ZED = who("zed", "dba-leads", "admins")


@dataclass
class Harness:
    approvals: Approvals
    bus: EventBus
    store: Store
    audit_path: Path
    config: list[Config]  # [0] is the config in force; replace it to "reload"

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


@pytest.fixture
async def harness(store: Store, tmp_path: Path) -> AsyncIterator[Harness]:
    holder = [approvals_config(tmp_path)]
    bus = EventBus()
    audit_path = tmp_path / "audit.jsonl"
    approvals = Approvals(lambda: holder[0], store, bus, AuditLog(audit_path), wait_recheck=30)
    try:
        yield Harness(approvals, bus, store, audit_path, holder)
    finally:
        await approvals.close()


def drain(sub: Subscription) -> list[Event]:
    out = []
    while not sub.queue.empty():
        event = sub.queue.get_nowait()
        assert event is not None
        out.append(event)
    return out


def kinds(sub: Subscription) -> list[str]:
    return [e.type for e in drain(sub)]


async def request(h: Harness, identity: Identity = CAROL, **kw: Any) -> AccessRequestView:
    args: dict[str, Any] = {"resource": "shop-db-admin", "reason": "incident 123"} | kw
    return await h.approvals.request_access(identity, **args)


async def hold(
    h: Harness, timeout_s: float = 30.0, identity: Identity = CAROL
) -> CommandReviewView:
    return await h.approvals.hold(
        identity,
        "shop-db-admin",
        "sess-1",
        "DELETE FROM orders WHERE id = 7",
        "no-unbounded-deletes",
        "delete needs review",
        timeout_s,
    )


# -- access requests -------------------------------------------------------------------------


async def test_request_is_pending_capped_and_announced(harness: Harness) -> None:
    carol_sub = harness.bus.subscribe("carol", CAROL.groups)
    bob_sub = harness.bus.subscribe("bob", BOB.groups)
    alice_sub = harness.bus.subscribe("alice", ALICE.groups)

    view = await request(harness, duration_s=12 * 3600)

    assert (view.status, view.requester, view.resource, view.reason) == (
        "pending",
        "carol",
        "shop-db-admin",
        "incident 123",
    )
    assert (view.requested_duration, view.duration, view.capped) == (12 * 3600, 8 * 3600, True)
    assert (view.required_approvals, view.approvals, view.decisions) == (1, 0, [])
    assert view.expires_at is None
    for sub in (carol_sub, bob_sub):
        (event,) = drain(sub)
        assert event.type == "request.created"
        assert event.data["id"] == view.id and event.data["status"] == "pending"
    assert drain(alice_sub) == []
    (created,) = [a for a in harness.audit() if a["action"] == "request.created"]
    assert (created["requester"], created["resource"], created["duration"]) == (
        "carol",
        "shop-db-admin",
        8 * 3600,
    )


async def test_default_duration_is_an_hour_within_the_cap(harness: Harness) -> None:
    assert (await request(harness)).duration == 3600
    olgas = await request(harness, OLGA, resource="reports-db")
    assert (olgas.duration, olgas.capped, olgas.required_approvals) == (1800, False, 2)


@pytest.mark.parametrize(
    ("identity", "kw", "code", "reason"),
    [
        (ALICE, {"resource": "shop-db"}, "direct", "shop-db is direct for you"),
        (CAROL, {"resource": "nope"}, "not_found", "no resource named 'nope' is available"),
        (CAROL, {"resource": "lab-host"}, "not_found", "no resource named 'lab-host'"),
        (BOB, {"resource": "lab-host"}, "no_reviewers", "nobody may approve requests for lab"),
        (CAROL, {"reason": "  "}, "reason_required", "a reason is required"),
        (CAROL, {"reason": "x" * 1001}, "invalid", "under 1000 characters"),
        (CAROL, {"duration_s": 0}, "invalid", "positive"),
    ],
)
async def test_bad_requests_are_refused_clearly(
    harness: Harness, identity: Identity, kw: dict[str, Any], code: str, reason: str
) -> None:
    with pytest.raises(ApprovalError, match=reason) as caught:
        await request(harness, identity, **kw)
    assert caught.value.code == code


async def test_one_pending_request_per_user_and_resource(harness: Harness) -> None:
    sub = harness.bus.subscribe("carol")
    first = await request(harness)
    again = await asyncio.gather(*(request(harness, reason="again") for _ in range(5)))

    assert {v.id for v in again} == {first.id}
    assert again[0].reason == "incident 123"
    assert kinds(sub) == ["request.created"]  # announced once
    async with harness.store.session() as s:
        assert len((await s.scalars(select(AccessRequest))).all()) == 1
    # Another resource is another request.
    other = await request(harness, resource="shop-db")
    assert other.id != first.id


async def test_concurrent_first_requests_make_one_row(harness: Harness) -> None:
    views = await asyncio.gather(*(request(harness) for _ in range(6)))
    assert len({v.id for v in views}) == 1
    async with harness.store.session() as s:
        assert len((await s.scalars(select(AccessRequest))).all()) == 1


# -- decisions --------------------------------------------------------------------------------


async def test_approval_grants_access_until_the_duration_ends(harness: Harness) -> None:
    view = await request(harness, duration_s=1800)
    carol_sub = harness.bus.subscribe("carol", CAROL.groups)
    frank_sub = harness.bus.subscribe("frank", FRANK.groups)

    decided = await harness.approvals.decide(BOB, view.id, True, "ok for the incident")

    assert isinstance(decided, AccessRequestView)
    assert (decided.status, decided.decided_by, decided.comment) == (
        "approved",
        "bob",
        "ok for the incident",
    )
    assert decided.decided_at is not None
    assert decided.expires_at == decided.decided_at + timedelta(seconds=1800)
    assert [(d.reviewer, d.decision, d.comment) for d in decided.decisions] == [
        ("bob", "approve", "ok for the incident")
    ]
    assert kinds(carol_sub) == ["request.approved"]
    assert kinds(frank_sub) == ["request.approved"]  # every reviewer hears of it
    in_force = await harness.store.requests_in_force("carol", datetime.now(UTC))
    assert in_force["shop-db-admin"].id == view.id
    (audit,) = [a for a in harness.audit() if a["action"] == "approval.approved"]
    assert (audit["by"], audit["comment"], audit["status"], audit["requester"]) == (
        "bob",
        "ok for the incident",
        "approved",
        "carol",
    )
    assert audit["at"] == decided.decided_at.isoformat()

    with pytest.raises(ApprovalError, match="already approved") as caught:
        await harness.approvals.decide(FRANK, view.id, True, None)
    assert (caught.value.code, caught.value.status) == ("not_pending", 409)


async def test_nobody_approves_their_own_request(harness: Harness) -> None:
    # zed is in admins, the reviewers of shop-db-admin, and asks for it himself.
    view = await request(harness, ZED)
    with pytest.raises(ApprovalError, match="nobody approves their own request") as caught:
        await harness.approvals.decide(ZED, view.id, True, None)
    assert caught.value.status == 403
    review = await hold(harness, identity=ZED)
    with pytest.raises(ApprovalError, match="nobody approves their own request"):
        await harness.approvals.decide(ZED, review.id, True, None)


@pytest.mark.parametrize("reviewer", [ALICE, CAROL, ERIN])
async def test_only_the_resources_reviewers_decide(harness: Harness, reviewer: Identity) -> None:
    view = await request(harness, ZED)  # carol may not decide zed's request: not an admin
    with pytest.raises(ApprovalError, match="not a reviewer for shop-db-admin") as caught:
        await harness.approvals.decide(reviewer, view.id, False, "no")
    assert (caught.value.code, caught.value.status) == ("not_reviewer", 403)


async def test_unknown_ids_are_404(harness: Harness) -> None:
    with pytest.raises(ApprovalError) as caught:
        await harness.approvals.decide(BOB, "no-such-id", True, None)
    assert (caught.value.code, caught.value.status) == ("not_found", 404)


async def test_deny_needs_a_reason_and_decides_at_once(harness: Harness) -> None:
    view = await request(harness, OLGA, resource="reports-db")  # needs two approvals
    sub = harness.bus.subscribe("olga")
    for empty in (None, "", "   "):
        with pytest.raises(ApprovalError, match="a denial needs a reason"):
            await harness.approvals.decide(BOB, view.id, False, empty)

    denied = await harness.approvals.decide(BOB, view.id, False, "use the replica")

    assert (denied.status, denied.decided_by, denied.comment) == (
        "denied",
        "bob",
        "use the replica",
    )
    assert denied.expires_at is None
    assert kinds(sub) == ["request.denied"]
    (audit,) = [a for a in harness.audit() if a["action"] == "approval.denied"]
    assert (audit["by"], audit["comment"]) == ("bob", "use the replica")
    assert await harness.store.requests_in_force("olga", datetime.now(UTC)) == {}


async def test_two_distinct_approvals_when_the_role_asks_for_two(harness: Harness) -> None:
    view = await request(harness, OLGA, resource="reports-db")
    sub = harness.bus.subscribe("olga")
    erin_sub = harness.bus.subscribe("erin", ERIN.groups)

    first = await harness.approvals.decide(BOB, view.id, True, "fine by me")
    assert (first.status, first.approvals, first.required_approvals) == ("pending", 1, 2)
    assert kinds(sub) == ["request.approval_recorded"]
    assert kinds(erin_sub) == ["request.approval_recorded"]

    with pytest.raises(ApprovalError, match="already approved this request") as caught:
        await harness.approvals.decide(BOB, view.id, True, "really")
    assert caught.value.status == 409
    assert (await harness.approvals.get(OLGA, view.id)).approvals == 1  # counted once

    done = await harness.approvals.decide(ERIN, view.id, True, None)
    assert (done.status, done.approvals, done.decided_by) == ("approved", 2, "bob, erin")
    assert kinds(sub) == ["request.approved"]


async def test_concurrent_approvals_decide_exactly_once(harness: Harness) -> None:
    view = await request(harness, OLGA, resource="reports-db")
    sub = harness.bus.subscribe("olga")

    results = await asyncio.gather(
        harness.approvals.decide(BOB, view.id, True, None),
        harness.approvals.decide(ERIN, view.id, True, None),
    )

    assert sorted(r.status for r in results) == ["approved", "pending"]
    assert sorted(kinds(sub)) == ["request.approval_recorded", "request.approved"]


async def test_a_reviewer_may_turn_an_approval_into_a_denial(harness: Harness) -> None:
    view = await request(harness, OLGA, resource="reports-db")
    await harness.approvals.decide(BOB, view.id, True, None)
    denied = await harness.approvals.decide(BOB, view.id, False, "second thoughts")
    assert denied.status == "denied"
    assert [(d.reviewer, d.decision) for d in denied.decisions] == [("bob", "deny")]


async def test_reviewers_follow_the_policy_in_force(harness: Harness, tmp_path: Path) -> None:
    view = await request(harness)
    roles = [dict(r) for r in ROLES + EXTRA_ROLES]
    for role in roles:
        if role["name"] == "dba":
            role["reviewers"] = ["sre"]
    harness.config[0] = approvals_config(tmp_path, roles)

    with pytest.raises(ApprovalError, match="reviewers: sre"):
        await harness.approvals.decide(BOB, view.id, True, None)
    assert (await harness.approvals.decide(ERIN, view.id, True, None)).status == "approved"


# -- command reviews --------------------------------------------------------------------------


async def test_held_statement_runs_once_after_approval(harness: Harness) -> None:
    bob_sub = harness.bus.subscribe("bob", BOB.groups)
    review = await hold(harness)
    assert (review.status, review.statement, review.rule, review.session_id) == (
        "pending",
        "DELETE FROM orders WHERE id = 7",
        "no-unbounded-deletes",
        "sess-1",
    )
    (created,) = drain(bob_sub)
    assert created.type == "review.created"
    assert created.data["statement"] == "DELETE FROM orders WHERE id = 7"

    waiting = asyncio.ensure_future(harness.approvals.wait(review.id))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert not await harness.approvals.consume(review.id)  # nothing to run while pending
    started = time.monotonic()
    await harness.approvals.decide(BOB, review.id, True, "go")
    decided = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0  # woken by the decision, not by a poll
    assert (decided.status, decided.decided_by) == ("approved", "bob")
    assert kinds(bob_sub) == ["review.approved"]

    assert await harness.approvals.consume(review.id)
    assert not await harness.approvals.consume(review.id)  # one approval, one run
    assert (await harness.approvals.get(CAROL, review.id)).status == "consumed"
    (consumed,) = [a for a in harness.audit() if a["action"] == "review.consumed"]
    assert (consumed["id"], consumed["approved_by"], consumed["session"]) == (
        review.id,
        "bob",
        "sess-1",
    )


async def test_concurrent_consumers_exactly_one_runs(harness: Harness) -> None:
    review = await hold(harness)
    await harness.approvals.decide(BOB, review.id, True, None)
    results = await asyncio.gather(*(harness.approvals.consume(review.id) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]


async def test_denied_statement_carries_the_reason(harness: Harness) -> None:
    review = await hold(harness)
    waiting = asyncio.ensure_future(harness.approvals.wait(review.id))
    await asyncio.sleep(0.05)
    await harness.approvals.decide(FRANK, review.id, False, "not during business hours")
    decided = await asyncio.wait_for(waiting, 5)
    assert (decided.status, decided.comment, decided.decided_by) == (
        "denied",
        "not during business hours",
        "frank",
    )
    assert not await harness.approvals.consume(review.id)


async def test_undecided_statement_expires_at_its_deadline(harness: Harness) -> None:
    sub = harness.bus.subscribe("carol")
    review = await hold(harness, timeout_s=0.3)
    started = time.monotonic()

    decided = await asyncio.wait_for(harness.approvals.wait(review.id), 5)

    assert decided.status == "expired"
    assert 0.2 < time.monotonic() - started < 2.0
    assert kinds(sub) == ["review.created", "review.expired"]
    with pytest.raises(ApprovalError, match="already expired"):
        await harness.approvals.decide(BOB, review.id, True, None)
    assert not await harness.approvals.consume(review.id)
    # Waiting again answers at once.
    assert (await harness.approvals.wait(review.id)).status == "expired"


async def test_a_decision_after_the_deadline_is_refused(harness: Harness) -> None:
    review = await hold(harness, timeout_s=0.05)
    await asyncio.sleep(0.1)
    with pytest.raises(ApprovalError, match="expired before the decision") as caught:
        await harness.approvals.decide(BOB, review.id, True, None)
    assert caught.value.status == 409
    assert (await harness.approvals.get(BOB, review.id)).status == "expired"


async def test_hold_without_reviewers_is_refused(harness: Harness) -> None:
    with pytest.raises(ApprovalError) as caught:
        await hold(harness, identity=BOB)  # bob reaches shop-db-admin as auditor: no reviewers
    assert caught.value.code == "no_reviewers"


async def test_wait_for_an_unknown_review_is_404(harness: Harness) -> None:
    with pytest.raises(ApprovalError) as caught:
        await harness.approvals.wait("nope")
    assert caught.value.status == 404


# -- lists ------------------------------------------------------------------------------------


async def test_inbox_mine_and_get(harness: Harness) -> None:
    carols = await request(harness)
    olgas = await request(harness, OLGA, resource="reports-db")
    review = await hold(harness)

    bob_inbox = await harness.approvals.inbox(BOB)
    assert [i.id for i in bob_inbox] == [review.id, olgas.id, carols.id]  # newest first
    assert [i.kind for i in bob_inbox] == ["command", "access", "access"]
    assert [i.id for i in await harness.approvals.inbox(ERIN)] == [olgas.id]
    assert await harness.approvals.inbox(ALICE) == []
    assert [i.id for i in await harness.approvals.inbox(ZED)] == [review.id, olgas.id, carols.id]
    assert [i.id for i in await harness.approvals.inbox(CAROL)] == []  # never her own

    await harness.approvals.decide(BOB, carols.id, True, None)
    assert [i.id for i in await harness.approvals.inbox(BOB)] == [review.id, olgas.id]

    assert [i.id for i in await harness.approvals.mine(CAROL)] == [review.id, carols.id]
    assert [i.id for i in await harness.approvals.mine(OLGA)] == [olgas.id]

    assert (await harness.approvals.get(CAROL, carols.id)).status == "approved"
    assert (await harness.approvals.get(ERIN, olgas.id)).id == olgas.id
    with pytest.raises(ApprovalError) as caught:
        await harness.approvals.get(ALICE, carols.id)
    assert caught.value.status == 404


# -- expiry -----------------------------------------------------------------------------------


async def test_sweep_expires_requests_grants_and_reviews(harness: Harness) -> None:
    sub = harness.bus.subscribe("carol")
    bob_sub = harness.bus.subscribe("bob", BOB.groups)
    granted = await request(harness, duration_s=600)
    granted = await harness.approvals.decide(BOB, granted.id, True, None)
    stale = await request(harness, resource="shop-db")
    review = await hold(harness, timeout_s=60)
    drain(sub)
    drain(bob_sub)
    now = datetime.now(UTC)

    assert await harness.approvals.sweep(now) == 0
    assert await harness.approvals.sweep(now + timedelta(seconds=601)) == 2  # grant + review
    assert sorted(kinds(sub)) == ["grant.expired", "review.expired"]
    assert sorted(kinds(bob_sub)) == ["grant.expired", "review.expired"]
    ended = await harness.approvals.get(CAROL, granted.id)
    assert (ended.status, ended.decided_at) == ("expired", granted.decided_at)
    in_force = await harness.store.requests_in_force("carol", now + timedelta(seconds=601))
    assert {res: r.id for res, r in in_force.items()} == {"shop-db": stale.id}

    assert await harness.approvals.sweep(now + timedelta(hours=25)) == 1
    assert kinds(sub) == ["request.expired"]
    assert (await harness.approvals.get(CAROL, stale.id)).status == "expired"
    assert (await harness.approvals.get(CAROL, review.id)).status == "expired"
    assert await harness.approvals.sweep(now + timedelta(hours=25)) == 0  # announced once
    actions = [a["action"] for a in harness.audit()]
    assert {"grant.expired", "review.expired", "request.expired"} <= set(actions)


async def test_expiry_task_runs_in_the_background(harness: Harness, store: Store) -> None:
    approvals = Approvals(
        lambda: harness.config[0],
        store,
        harness.bus,
        AuditLog(harness.audit_path),
        sweep_interval=0.05,
    )
    approvals.start()
    try:
        sub = harness.bus.subscribe("carol")
        review = await hold(harness, timeout_s=0.1)  # nobody waits on it
        created = await asyncio.wait_for(sub.queue.get(), 5)
        expired = await asyncio.wait_for(sub.queue.get(), 5)  # the expiry task announces it
        assert created is not None and created.type == "review.created"
        assert expired is not None and expired.type == "review.expired"
        assert expired.data["id"] == review.id
        assert (await approvals.get(CAROL, review.id)).status == "expired"
    finally:
        await approvals.close()
