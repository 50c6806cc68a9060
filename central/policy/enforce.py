"""The gate a database session consults: the policy's decision, and the review of held
statements through approvals.

One gate per session: it remembers the SQL-level prepared statements of that session
(`PREPARE name AS ...`), so that a later `EXECUTE name` is judged by what it really runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from central.approvals import ApprovalError
from central.identity.tokens import Identity
from central.policy.rules import Decision, SqlPolicy
from central.policy.sql import classify

if TYPE_CHECKING:
    from central.runtime import Central


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a statement was let through: plain forwarding, or a reviewer's approval."""

    decision: str = "forward"  # "forward" | "review"
    rule: str | None = None


FORWARD = Verdict()


# Decisions by exact text: a repeated statement (a prepared statement's Parse, a polling
# query) skips even the classifier's lexer. Keyed by the policy object, so a reload starts
# afresh; bounded, oldest out first.
_DECIDED: dict[tuple[object, str, str, str], Decision] = {}
_DECIDED_MAX = 4096
_SESSION_WORDS = ("execute", "prepare", "deallocate")


class SessionGate:
    def __init__(
        self,
        central: Central,
        identity: Identity,
        resource: str,
        session_id: str,
        dialect: Literal["postgres", "mysql"] = "postgres",
    ) -> None:
        self.central = central
        self.identity = identity
        self.resource = resource
        self.session_id = session_id
        self.dialect = dialect
        self.prepared: dict[str, str] = {}

    def decide(self, sql: str) -> Decision:
        decision = self._cached_decide(sql)
        if decision.action == "block":
            self.central.audit.note(
                "statement.blocked",
                user=self.identity.user,
                resource=self.resource,
                session=self.session_id,
                rule=decision.rule,
                reason=decision.reason,
                statement=sql[:2000],
            )
        return decision

    def _cached_decide(self, sql: str) -> Decision:
        policy = self.central.policy
        key = (policy, self.resource, self.dialect, sql)
        decision = _DECIDED.get(key)
        if decision is not None:
            return decision
        decision = self._decide(policy, sql)
        # Only texts whose decision depends on nothing but themselves and the policy: not
        # those that name session state (prepared statements).
        lowered = sql.lower()
        if not any(word in lowered for word in _SESSION_WORDS):
            if len(_DECIDED) >= _DECIDED_MAX:
                _DECIDED.pop(next(iter(_DECIDED)))
            _DECIDED[key] = decision
        return decision

    def _decide(self, policy: SqlPolicy, sql: str) -> Decision:
        classification = classify(sql, self.dialect, self.prepared)
        decision = policy.decide_classification(self.resource, classification)
        if decision.action != "block":
            for st in classification.statements:
                if st.kind == "prepare" and st.name and st.body is not None:
                    self.prepared[st.name] = st.body
                elif st.kind == "deallocate" and st.name:
                    self.prepared.pop(st.name, None)
        return decision

    async def review(
        self, sql: str, decision: Decision, notify: Callable[[str], None], what: str = "statement"
    ) -> Verdict | str:
        approvals = self.central.approvals
        try:
            held = await approvals.hold(
                self.identity,
                self.resource,
                self.session_id,
                sql,
                decision.rule or "",
                decision.reason,
                self.central.config.server.review_timeout,
            )
        except ApprovalError as e:
            return f"{decision.reason}, and it cannot be reviewed: {e.reason}"
        notify(
            f"Watchgate: this {what} is held for review ({decision.reason}); request "
            f"{held.id}. A reviewer approves it with `watchgate approve {held.id}`; it runs once "
            "when approved."
        )
        result = await approvals.wait(held.id)
        if result.status == "approved" and await approvals.consume(held.id):
            return Verdict("review", decision.rule)
        if result.status == "denied":
            return f"request {held.id} was denied by {result.decided_by}: {result.comment or ''}"
        if result.status == "expired":
            return f"request {held.id} was not decided in time"
        return f"request {held.id} cannot run ({result.status})"
