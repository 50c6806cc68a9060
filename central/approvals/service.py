"""Approvals: just-in-time access requests and command reviews, decided by reviewers.

Two kinds of item wait for reviewers:

- an **access request** — a user asks for a time-boxed grant to a resource their roles make
  available "on request"; once approved, they may connect until ``expires_at``;
- a **command review** — a protocol session holds one statement or command that a rule sends
  for review; an approval lets that exact statement run once (:meth:`Approvals.consume`).

Who reviews is policy: the ``reviewers`` groups of the roles that grant the resource to the
*requester*, recomputed from the config in force when the decision is made (from the groups the
requester had when asking, kept on the row). Nobody approves their own request; a role may ask
for N distinct approvals (the most any granting role asks); a denial needs a reason and decides
at once. Every state change is written to the store first, then pushed live to the requester
and the reviewer groups, appended to the audit log, and queued for the webhook.

Single decisions are atomic across coroutines, processes and replicas: the item's row is
locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions are ``BEGIN IMMEDIATE``)
and every state move is a conditional ``UPDATE ... WHERE status = ...``, so an item is decided,
expired or consumed exactly once.

A background task (:meth:`Approvals.start`) expires what time has overtaken: access requests
left undecided for a day, held statements past their deadline, and grants past their end
("grant.expired"; live sessions carry their grant's deadline themselves, so that event is for
people and the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import CursorResult, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.events import EventBus
from central.approvals.webhook import Webhook, webhook_message
from central.config import Config
from central.identity.tokens import Identity
from central.logs import AuditLog, get_logger
from central.policy.access import Entitlement, entitlement, is_auditor
from central.store import (
    AccessRequest,
    Approval,
    CommandReview,
    Decision,
    RequestStatus,
    ReviewStatus,
    Store,
    new_id,
)
from localproxy.contract import AccessRequestView, CommandReviewView, ReviewerDecision

__all__ = [
    "DEFAULT_DURATION",
    "MAX_REASON",
    "REQUEST_TTL",
    "ApprovalError",
    "Approvals",
    "ItemView",
]

log = get_logger(__name__)

REQUEST_TTL: Final = 24 * 3600  # seconds an access request may wait for its decision
DEFAULT_DURATION: Final = 3600  # seconds asked for when a request names no duration
MAX_REASON: Final = 1000  # characters of a request's reason or a decision's comment
SWEEP_INTERVAL: Final = 1.0  # seconds between expiry passes
WAIT_RECHECK: Final = 2.0  # seconds between re-reads of a held review (decided on a replica)

ItemView = AccessRequestView | CommandReviewView


class ApprovalError(Exception):
    """A request or decision that is refused; ``str()`` is the sentence shown to the user.

    ``code`` is stable (clients, tests); ``status`` is the HTTP status the API answers with.
    """

    def __init__(self, code: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status


class Approvals:
    """The approvals service of one central: create, decide, wait for, list and expire items.

    ``config`` is called whenever policy is needed, so a reloaded config applies to decisions
    on items created before the reload. ``clock`` gives the current time (tests move it).
    """

    def __init__(
        self,
        config: Callable[[], Config],
        store: Store,
        events: EventBus,
        audit: AuditLog,
        *,
        webhook: Webhook | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sweep_interval: float = SWEEP_INTERVAL,
        request_ttl: int = REQUEST_TTL,
        wait_recheck: float = WAIT_RECHECK,
    ) -> None:
        self._config = config
        self._store = store
        self._events = events
        self._audit = audit
        self.webhook = webhook
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._request_ttl = timedelta(seconds=request_ttl)
        self._wait_recheck = wait_recheck
        self._waiters: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the expiry task (and the webhook sender)."""
        if self.webhook is not None:
            self.webhook.start()
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.ensure_future(self._expire_forever())

    async def close(self) -> None:
        """Stop the expiry task and the webhook sender (after a short drain of its queue)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.webhook is not None:
            await self.webhook.close()

    # -- access requests ----------------------------------------------------------------------

    async def request_access(
        self, identity: Identity, resource: str, reason: str, duration_s: int | None = None
    ) -> AccessRequestView:
        """Ask for time-boxed access to ``resource``; the pending request (new or existing).

        Only resources the identity's roles grant "on request" qualify. The duration defaults
        to an hour and is capped at the roles' ``max_duration`` (the view shows both). While a
        request of the same user for the same resource is pending, that one is returned.
        """
        ent = self._entitlement(identity.groups, resource)
        if ent.access == "direct":
            raise ApprovalError(
                "direct", f"{resource} is direct for you: connect without a request", 400
            )
        _require_reviewers(ent)
        reason = _required_text(reason, "a reason is required: say why you need access")
        if duration_s is None:
            duration_s = min(DEFAULT_DURATION, ent.max_duration)
        if duration_s <= 0:
            raise ApprovalError("invalid", "the duration must be positive", 400)
        now = self._clock()
        async with self._store.session() as s, s.begin():
            await _serialise(s, self._store, f"request:{identity.user}:{resource}")
            row = await s.scalar(
                select(AccessRequest)
                .where(
                    AccessRequest.requester == identity.user,
                    AccessRequest.resource == resource,
                    AccessRequest.status == RequestStatus.PENDING.value,
                    AccessRequest.created_at > now - self._request_ttl,
                )
                .order_by(AccessRequest.created_at.desc())
                .limit(1)
            )
            created = row is None
            if row is None:
                row = AccessRequest(
                    id=new_id(),
                    requester=identity.user,
                    requester_groups=_groups_json(identity.groups),
                    resource=resource,
                    reason=reason,
                    duration_seconds=min(duration_s, ent.max_duration),
                    requested_seconds=duration_s,
                    required_approvals=ent.approvals,
                    status=RequestStatus.PENDING.value,
                    created_at=now,
                )
                s.add(row)
        view = _access_view(row, [])
        if created:
            await self._announce("request.created", view, ent.reviewers, by=identity.user)
        return view

    # -- command reviews ----------------------------------------------------------------------

    async def hold(
        self,
        identity: Identity,
        resource: str,
        session_id: str,
        statement: str,
        rule: str,
        reason: str,
        timeout_s: float,
    ) -> CommandReviewView:
        """Hold ``statement`` of a live session for review, to be decided within ``timeout_s``.

        Raises :class:`ApprovalError` (code ``no_reviewers``) when no role granting the
        resource names reviewers: such a statement can never be approved, so the caller
        should refuse it at once rather than hold it.
        """
        ent = self._entitlement(identity.groups, resource)
        _require_reviewers(ent)
        now = self._clock()
        row = CommandReview(
            id=new_id(),
            requester=identity.user,
            requester_groups=_groups_json(identity.groups),
            resource=resource,
            session_id=session_id,
            statement=statement,
            rule=rule,
            reason=reason,
            status=ReviewStatus.PENDING.value,
            required_approvals=ent.approvals,
            created_at=now,
            expires_at=now + timedelta(seconds=max(timeout_s, 0.0)),
        )
        async with self._store.session() as s, s.begin():
            s.add(row)
        view = _review_view(row, [])
        await self._announce("review.created", view, ent.reviewers, by=identity.user)
        return view

    async def wait(self, review_id: str) -> CommandReviewView:
        """Wait until the review is decided or its deadline passes (then it is expired).

        Decisions made in this process wake the waiter at once (a future per id, resolved by
        :meth:`decide`); the row is re-read every few seconds only to notice decisions made
        by another replica. The answer is always the row as stored after the wait.
        """
        future = self._waiter(review_id)
        try:
            while True:
                row = await self._load_review(review_id)
                if row.status != ReviewStatus.PENDING.value:
                    break
                left = (row.expires_at - self._clock()).total_seconds()
                if left <= 0:
                    await self._expire_review(row)
                    continue
                if future.done():
                    self._waiters[review_id].discard(future)
                    future = self._waiter(review_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(left, self._wait_recheck))
        finally:
            waiters = self._waiters.get(review_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[review_id]
        async with self._store.session() as s:
            return await self._review_with_decisions(s, review_id)

    async def consume(self, review_id: str) -> bool:
        """Use an approved review's single run: True for the one caller that flips it.

        An approval lets the held statement run once; it is not a licence to run the same
        text again, so a second call (or a concurrent one) gets False.
        """
        async with self._store.session() as s, s.begin():
            flipped = _rowcount(
                await s.execute(
                    update(CommandReview)
                    .where(
                        CommandReview.id == review_id,
                        CommandReview.status == ReviewStatus.APPROVED.value,
                    )
                    .values(status=ReviewStatus.CONSUMED.value)
                    .execution_options(synchronize_session=False)
                )
            )
        if flipped != 1:
            return False
        row = await self._load_review(review_id)
        await self._audit.record(
            "review.consumed",
            id=review_id,
            requester=row.requester,
            resource=row.resource,
            session=row.session_id,
            approved_by=row.decided_by,
        )
        return True

    # -- decisions ----------------------------------------------------------------------------

    async def decide(
        self, reviewer: Identity, item_id: str, approve: bool, comment: str | None = None
    ) -> ItemView:
        """Record ``reviewer``'s approval or denial of an access request or command review.

        Refused (:class:`ApprovalError`): unknown ids (404), the requester themself and
        reviewers outside the resource's reviewer groups (403), items no longer pending or
        already approved by this reviewer (409), a denial without a reason (400). A denial
        decides at once; approvals decide when ``required_approvals`` distinct reviewers
        have approved. An approved access request grants access from now for its duration.
        """
        comment = _optional_text(comment)
        if not approve and comment is None:
            raise ApprovalError("reason_required", "a denial needs a reason", 400)
        now = self._clock()
        overdue = False
        outcome = ""
        async with self._store.session() as s, s.begin():
            item = await _lock_item(s, item_id)
            if item is None:
                raise ApprovalError("not_found", f"no request or review with id {item_id}", 404)
            if item.requester == reviewer.user:
                raise ApprovalError("self_approval", "nobody approves their own request", 403)
            ent = self._requester_entitlement(item)
            if not self._may_review(reviewer, ent):
                raise ApprovalError(
                    "not_reviewer",
                    f"you are not a reviewer for {item.resource} "
                    f"(reviewers: {', '.join(ent.reviewers) if ent else 'none'})",
                    403,
                )
            noun = _noun(item)
            if item.status != "pending":
                raise ApprovalError("not_pending", f"this {noun} is already {item.status}", 409)
            if self._overdue(item, now):
                item.status = "expired"
                item.decided_at = now
                overdue = True
            else:
                mine = await s.get(Approval, (item.id, reviewer.user))
                if approve and mine is not None and mine.decision == Decision.APPROVE.value:
                    left = item.required_approvals - await _approval_count(s, item.id)
                    raise ApprovalError(
                        "already_approved",
                        f"you have already approved this {noun}; it needs {left} more "
                        "approval(s) from other reviewers",
                        409,
                    )
                decision = (Decision.APPROVE if approve else Decision.DENY).value
                if mine is None:
                    s.add(
                        Approval(
                            item_id=item.id,
                            reviewer=reviewer.user,
                            decision=decision,
                            comment=comment,
                            at=now,
                        )
                    )
                else:
                    mine.decision, mine.comment, mine.at = decision, comment, now
                await s.flush()
                if not approve:
                    item.status, item.decided_at = "denied", now
                    item.decided_by, item.comment = reviewer.user, comment
                    outcome = "denied"
                else:
                    approvers = list(
                        await s.scalars(
                            select(Approval.reviewer)
                            .where(
                                Approval.item_id == item.id,
                                Approval.decision == Decision.APPROVE.value,
                            )
                            .order_by(Approval.at, Approval.reviewer)
                        )
                    )
                    outcome = "pending"
                    if len(approvers) >= item.required_approvals:
                        item.status, item.decided_at, item.comment = "approved", now, comment
                        item.decided_by = ", ".join(approvers)
                        if isinstance(item, AccessRequest):
                            item.expires_at = now + timedelta(seconds=item.duration_seconds)
                        outcome = "approved"
            await s.flush()
            view = await self._view_with_decisions(s, item)
        prefix = "request" if isinstance(view, AccessRequestView) else "review"
        reviewers = ent.reviewers if ent else ()
        if overdue:
            await self._settled(view, f"{prefix}.expired", reviewers, by=None)
            raise ApprovalError("not_pending", f"this {noun} expired before the decision", 409)
        event = f"{prefix}.{outcome}" if outcome != "pending" else f"{prefix}.approval_recorded"
        if outcome != "pending":
            self._wake(view.id)
        self._events.publish([view.requester], event, _data(view), groups=reviewers)
        await self._audit.record(
            "approval.approved" if approve else "approval.denied",
            id=view.id,
            kind=view.kind,
            requester=view.requester,
            resource=view.resource,
            by=reviewer.user,
            comment=comment,
            at=now.isoformat(),
            status=view.status,
            approvals=view.approvals,
            required_approvals=view.required_approvals,
        )
        self._webhook(event, view, by=reviewer.user, at=now)
        return view

    # -- reading ------------------------------------------------------------------------------

    async def inbox(self, reviewer: Identity) -> list[ItemView]:
        """Pending items ``reviewer`` may decide (both kinds, not their own), newest first."""
        now = self._clock()
        async with self._store.session() as s:
            requests = await s.scalars(
                select(AccessRequest).where(
                    AccessRequest.status == RequestStatus.PENDING.value,
                    AccessRequest.requester != reviewer.user,
                    AccessRequest.created_at > now - self._request_ttl,
                )
            )
            reviews = await s.scalars(
                select(CommandReview).where(
                    CommandReview.status == ReviewStatus.PENDING.value,
                    CommandReview.requester != reviewer.user,
                    CommandReview.expires_at > now,
                )
            )
            items: list[AccessRequest | CommandReview] = [*requests, *reviews]
            mine = [i for i in items if self._may_review(reviewer, self._requester_entitlement(i))]
            return await self._views(s, mine)

    async def mine(self, identity: Identity, limit: int = 100) -> list[ItemView]:
        """The user's own access requests and held statements, newest first."""
        async with self._store.session() as s:
            requests = await s.scalars(
                select(AccessRequest)
                .where(AccessRequest.requester == identity.user)
                .order_by(AccessRequest.created_at.desc())
                .limit(limit)
            )
            reviews = await s.scalars(
                select(CommandReview)
                .where(CommandReview.requester == identity.user)
                .order_by(CommandReview.created_at.desc())
                .limit(limit)
            )
            items: list[AccessRequest | CommandReview] = [*requests, *reviews]
            return (await self._views(s, items))[:limit]

    async def get(self, identity: Identity, item_id: str) -> ItemView:
        """One item, for its requester, the reviewers who may decide it, and auditors."""
        async with self._store.session() as s:
            item: AccessRequest | CommandReview | None = await s.get(AccessRequest, item_id)
            if item is None:
                item = await s.get(CommandReview, item_id)
            if item is None or not (
                item.requester == identity.user
                or self._may_review(identity, self._requester_entitlement(item))
                or is_auditor(self._config(), identity.groups)
            ):
                raise ApprovalError("not_found", f"no request or review with id {item_id}", 404)
            return await self._view_with_decisions(s, item)

    # -- expiry -------------------------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """Expire everything time has overtaken at ``now``; how many items changed.

        Pending access requests older than the request TTL ("request.expired"), pending
        reviews past their deadline ("review.expired") and approved grants past their end
        ("grant.expired"). Each move is a conditional update: on several replicas, exactly
        one of them announces it.
        """
        now = now or self._clock()
        changed: list[tuple[str, AccessRequest | CommandReview]] = []
        async with self._store.session() as s:
            stale = await s.scalars(
                select(AccessRequest).where(
                    AccessRequest.status == RequestStatus.PENDING.value,
                    AccessRequest.created_at <= now - self._request_ttl,
                )
            )
            ended = await s.scalars(
                select(AccessRequest).where(
                    AccessRequest.status == RequestStatus.APPROVED.value,
                    AccessRequest.expires_at <= now,
                )
            )
            overdue = await s.scalars(
                select(CommandReview).where(
                    CommandReview.status == ReviewStatus.PENDING.value,
                    CommandReview.expires_at <= now,
                )
            )
            candidates: list[tuple[str, AccessRequest | CommandReview]] = [
                *(("request.expired", r) for r in stale),
                *(("grant.expired", r) for r in ended),
                *(("review.expired", r) for r in overdue),
            ]
        for event, item in candidates:
            if await _move(self._store, item, "expired", now):
                changed.append((event, item))
        for event, item in changed:
            async with self._store.session() as s:
                view = await self._view_with_decisions(s, item)
            ent = self._requester_entitlement(item)
            await self._settled(view, event, ent.reviewers if ent else (), by=None)
        return len(changed)

    async def _expire_review(self, row: CommandReview) -> None:
        now = self._clock()
        if await _move(self._store, row, "expired", now):
            async with self._store.session() as s:
                view = await self._view_with_decisions(s, row)
            ent = self._requester_entitlement(row)
            await self._settled(view, "review.expired", ent.reviewers if ent else (), by=None)

    async def _expire_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._sweep_interval)
            if self._stopping.is_set():
                return
            try:
                await self.sweep()
            except Exception:  # the store may be down for a while: keep trying
                log.exception("approvals: expiry pass failed")

    # -- helpers ------------------------------------------------------------------------------

    def _entitlement(self, groups: Iterable[str], resource: str) -> Entitlement:
        ent = entitlement(self._config(), groups, resource)
        if ent is None:
            raise ApprovalError(
                "not_found", f"no resource named {resource!r} is available to you", 404
            )
        return ent

    def _requester_entitlement(self, item: AccessRequest | CommandReview) -> Entitlement | None:
        """The requester's entitlement under the policy in force now (None: no longer any)."""
        return entitlement(self._config(), json.loads(item.requester_groups), item.resource)

    @staticmethod
    def _may_review(who: Identity, ent: Entitlement | None) -> bool:
        return ent is not None and bool(set(who.groups).intersection(ent.reviewers))

    def _overdue(self, item: AccessRequest | CommandReview, now: datetime) -> bool:
        if isinstance(item, CommandReview):
            return item.expires_at <= now
        return item.created_at <= now - self._request_ttl

    def _waiter(self, review_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[review_id].add(future)
        return future

    def _wake(self, item_id: str) -> None:
        for future in self._waiters.get(item_id, ()):
            if not future.done():
                future.set_result(None)

    async def _load_review(self, review_id: str) -> CommandReview:
        async with self._store.session() as s:
            row = await s.get(CommandReview, review_id)
        if row is None:
            raise ApprovalError("not_found", f"no review with id {review_id}", 404)
        return row

    async def _review_with_decisions(self, s: AsyncSession, review_id: str) -> CommandReviewView:
        row = await s.get(CommandReview, review_id, populate_existing=True)
        if row is None:
            raise ApprovalError("not_found", f"no review with id {review_id}", 404)
        view = await self._view_with_decisions(s, row)
        assert isinstance(view, CommandReviewView)
        return view

    async def _view_with_decisions(
        self, s: AsyncSession, item: AccessRequest | CommandReview
    ) -> ItemView:
        (view,) = await self._views(s, [item])
        return view

    async def _views(
        self, s: AsyncSession, items: Sequence[AccessRequest | CommandReview]
    ) -> list[ItemView]:
        """Views of ``items`` with their reviewers' decisions, newest first."""
        decisions: defaultdict[str, list[ReviewerDecision]] = defaultdict(list)
        ids = [i.id for i in items]
        for chunk in (ids[n : n + 500] for n in range(0, len(ids), 500)):
            rows = await s.scalars(
                select(Approval).where(Approval.item_id.in_(chunk)).order_by(Approval.at)
            )
            for row in rows:
                decisions[row.item_id].append(
                    ReviewerDecision(
                        reviewer=row.reviewer,
                        decision="approve" if row.decision == "approve" else "deny",
                        comment=row.comment,
                        at=row.at,
                    )
                )
        ordered = sorted(items, key=lambda i: i.created_at, reverse=True)
        return [
            _access_view(i, decisions[i.id])
            if isinstance(i, AccessRequest)
            else _review_view(i, decisions[i.id])
            for i in ordered
        ]

    async def _announce(
        self, event: str, view: ItemView, reviewers: Iterable[str], *, by: str | None
    ) -> None:
        """A new item: tell the requester and the reviewers, record it, queue the webhook."""
        self._events.publish([view.requester], event, _data(view), groups=reviewers)
        fields: dict[str, Any] = {
            "id": view.id,
            "kind": view.kind,
            "requester": view.requester,
            "resource": view.resource,
            "reason": view.reason,
            "required_approvals": view.required_approvals,
        }
        if isinstance(view, AccessRequestView):
            fields |= {"duration": view.duration, "requested_duration": view.requested_duration}
        else:
            fields |= {
                "session": view.session_id,
                "statement": view.statement,
                "rule": view.rule,
                "deadline": view.expires_at.isoformat(),
            }
        await self._audit.record(event, **fields)
        self._webhook(event, view, by=by, at=view.created_at)

    async def _settled(
        self, view: ItemView, event: str, reviewers: Iterable[str], *, by: str | None
    ) -> None:
        """An item moved by time (expiry): wake waiters, tell people, record, queue webhook."""
        self._wake(view.id)
        self._events.publish([view.requester], event, _data(view), groups=reviewers)
        await self._audit.record(
            event,
            id=view.id,
            kind=view.kind,
            requester=view.requester,
            resource=view.resource,
            status=view.status,
        )
        self._webhook(event, view, by=by, at=self._clock())

    def _webhook(self, event: str, view: ItemView, *, by: str | None, at: datetime) -> None:
        if self.webhook is not None:
            self.webhook.send(webhook_message(event, view, by=by, at=at))


# -- module helpers ---------------------------------------------------------------------------


def _require_reviewers(ent: Entitlement) -> None:
    if not ent.reviewers:
        raise ApprovalError(
            "no_reviewers",
            f"nobody may approve requests for {ent.resource.name}: "
            "the roles that grant it name no reviewers",
            409,
        )


def _required_text(value: str, missing: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ApprovalError("reason_required", missing, 400)
    if len(value) > MAX_REASON:
        raise ApprovalError("invalid", f"keep the reason under {MAX_REASON} characters", 400)
    return value


def _optional_text(value: str | None) -> str | None:
    value = (value or "").strip()
    if len(value) > MAX_REASON:
        raise ApprovalError("invalid", f"keep the comment under {MAX_REASON} characters", 400)
    return value or None


def _groups_json(groups: Iterable[str]) -> str:
    return json.dumps(sorted(set(groups)))


def _noun(item: AccessRequest | CommandReview) -> str:
    return "request" if isinstance(item, AccessRequest) else "review"


def _data(view: ItemView) -> dict[str, object]:
    return view.model_dump(mode="json")


def _access_view(row: AccessRequest, decisions: list[ReviewerDecision]) -> AccessRequestView:
    requested = row.requested_seconds or row.duration_seconds
    return AccessRequestView(
        **_item_fields(row, decisions),
        requested_duration=requested,
        duration=row.duration_seconds,
        capped=requested > row.duration_seconds,
    )


def _review_view(row: CommandReview, decisions: list[ReviewerDecision]) -> CommandReviewView:
    return CommandReviewView(
        **_item_fields(row, decisions),
        session_id=row.session_id,
        statement=row.statement,
        rule=row.rule,
    )


def _item_fields(
    row: AccessRequest | CommandReview, decisions: list[ReviewerDecision]
) -> dict[str, Any]:
    """What access requests and command reviews show alike."""
    return {
        "id": row.id,
        "requester": row.requester,
        "resource": row.resource,
        "reason": row.reason,
        "status": row.status,
        "required_approvals": row.required_approvals,
        "approvals": sum(d.decision == "approve" for d in decisions),
        "decisions": decisions,
        "created_at": row.created_at,
        "decided_at": row.decided_at,
        "expires_at": row.expires_at,
        "decided_by": row.decided_by,
        "comment": row.comment,
    }


async def _serialise(s: AsyncSession, store: Store, key: str) -> None:
    """Serialise transactions on ``key`` (SQLite's BEGIN IMMEDIATE already serialises all)."""
    if store.engine.dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


async def _lock_item(s: AsyncSession, item_id: str) -> AccessRequest | CommandReview | None:
    """The item with this id, its row locked until the transaction ends."""
    request = await s.get(AccessRequest, item_id, with_for_update=True)
    if request is not None:
        return request
    return await s.get(CommandReview, item_id, with_for_update=True)


async def _approval_count(s: AsyncSession, item_id: str) -> int:
    count = await s.scalar(
        select(func.count())
        .select_from(Approval)
        .where(Approval.item_id == item_id, Approval.decision == Decision.APPROVE.value)
    )
    return int(count or 0)


async def _move(
    store: Store, item: AccessRequest | CommandReview, status: str, now: datetime
) -> bool:
    """Move ``item`` from the status it was read with to ``status``, unless someone else did.

    A pending item records ``now`` as its decision time; an ended grant keeps its approval's.
    """
    model = type(item)
    was = item.status
    values: dict[str, Any] = {"status": status}
    if was == "pending":
        values["decided_at"] = now
    async with store.session() as s, s.begin():
        result = await s.execute(
            update(model)
            .where(model.id == item.id, model.status == was)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    if _rowcount(result) != 1:
        return False
    item.status = status
    if was == "pending":
        item.decided_at = now
    return True


def _rowcount(result: Any) -> int:
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected a CursorResult from a DML statement, got {type(result)!r}")
    return int(result.rowcount)
