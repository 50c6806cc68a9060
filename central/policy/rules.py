"""The decision: allow, block, or hold for review -- for a SQL text or a command on a resource.

One module for every protocol: PostgreSQL and MySQL call `SqlPolicy.decide()` (or
`decide_classification()` when they have already classified the text, for the recording), SSH
calls `decide_command()`. Rules come from the config's `rules` (policy as code); only `block` and
`review` rules act here, mask rules belong to the masking layer.

How a SQL text is judged
------------------------
Each statement of the text (see `central.policy.sql`) is held against every block and review
rule whose `resources` globs match the resource:

- `statements` entries name statement kinds, case- and whitespace-insensitively, by word
  prefix: "drop" matches "drop table", "alter role" matches "alter role" but not "alter table".
  They also match the statements run on a statement's behalf (`inner_kinds`): the DELETE in a
  data-modifying CTE, the statement behind PREPARE/EXECUTE/EXPLAIN/DECLARE/COPY (query). An
  entry with glob characters (`*?[`) is matched as a glob against the same kinds.
- `functions` entries are globs over the function names called anywhere in the statement, bare
  and schema-qualified ("pg_read_file", "pg_catalog.pg_read_file", "lo_*").
- An *opaque* statement (its effect cannot be known from the text: DO, CALL, function bodies,
  COPY ... PROGRAM, EXECUTE of an unknown name, anything not understood or not parsed) is the
  riskiest kind its resource allows: it is held for review when any review rule with statements
  or functions applies to the resource, else blocked when any such block rule applies, and
  allowed only where the resource has no SQL rule at all.

The strictest outcome wins (block, then review, then allow): across rules for one statement, and
across the statements of one text. Ties go to the earlier rule and the earlier statement.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from central.config import Config
from central.policy.sql import Classification, SqlDialect, StatementInfo, classify

__all__ = ["Action", "Decision", "SqlPolicy", "SshPolicy"]

Action = Literal["allow", "block", "review"]

_STRICTNESS: Final[dict[str, int]] = {"allow": 0, "review": 1, "block": 2}


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do, which rule said so (its `name`, or "rules[i]"), and a one-line reason for
    the user and the recording."""

    action: Action
    rule: str | None
    reason: str

    def stricter_than(self, other: Decision) -> bool:
        return _STRICTNESS[self.action] > _STRICTNESS[other.action]


ALLOW: Final = Decision("allow", None, "no block or review rule matches")


@dataclass(frozen=True, slots=True)
class _Rule:
    """A block or review rule, normalised once: kinds lower-case with single spaces, function
    globs lower-case, command globs whitespace-normalised."""

    label: str
    action: Literal["block", "review"]
    resources: tuple[str, ...]
    statements: tuple[str, ...]
    functions: tuple[str, ...]
    commands: tuple[str, ...]
    files: tuple[str, ...] = ()
    shell: bool | None = None
    record_input: bool = False

    @property
    def for_sql(self) -> bool:
        return bool(self.statements or self.functions)

    def can_raise(self, decision: Decision) -> bool:
        """Whether this rule's action is stricter than `decision`'s (else it cannot change it)."""
        return _STRICTNESS[self.action] > _STRICTNESS[decision.action]

    @property
    def verdict(self) -> str:
        if self.action == "block":
            return f"is blocked by rule {self.label}"
        return f"needs approval under rule {self.label}"


def _normalize(text: str) -> str:
    return " ".join(text.split())


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class SqlPolicy:
    """The block and review rules of one configuration. Cheap to build; build a new one when
    the configuration is reloaded (it keeps no reference to the old config)."""

    def __init__(self, config: Config) -> None:
        rules = []
        allows = []
        for i, rule in enumerate(config.rules):
            label = rule.name or f"rules[{i}]"
            if rule.action == "allow":
                allows.append(
                    _Allow(
                        label,
                        tuple(rule.resources),
                        tuple(rule.forward),
                        rule.agent,
                        bool(rule.record_input),
                    )
                )
                continue
            if rule.action == "mask":
                continue
            rules.append(
                _Rule(
                    label=label,
                    action=rule.action,
                    resources=tuple(rule.resources),
                    statements=tuple(_normalize(s).lower() for s in rule.statements),
                    functions=tuple(f.strip().lower() for f in rule.functions),
                    commands=tuple(_normalize(c) for c in rule.commands),
                    files=tuple(rule.files),
                    shell=rule.shell,
                    record_input=bool(rule.record_input),
                )
            )
        self._rules: tuple[_Rule, ...] = tuple(rules)
        self._allows: tuple[_Allow, ...] = tuple(allows)
        self._by_resource: dict[str, tuple[_Rule, ...]] = {}

    def _rules_for(self, resource: str) -> tuple[_Rule, ...]:
        found = self._by_resource.get(resource)
        if found is None:
            found = tuple(
                r for r in self._rules if any(fnmatch.fnmatchcase(resource, p) for p in r.resources)
            )
            self._by_resource[resource] = found
        return found

    def decide(
        self,
        resource: str,
        sql: str,
        dialect: SqlDialect,
        prepared: Mapping[str, str] | None = None,
        *,
        backslash_escapes: bool | None = None,
    ) -> Decision:
        """Classify `sql` and decide. `prepared` is the session's prepared statements by name,
        so that `EXECUTE name` is judged by what it runs; `backslash_escapes` is the server's
        string mode when the protocol has reported it (see `classify`)."""
        classification = classify(sql, dialect, prepared, backslash_escapes=backslash_escapes)
        return self.decide_classification(resource, classification)

    def decide_classification(self, resource: str, classification: Classification) -> Decision:
        """Decide on an already classified text: the strictest decision over its statements."""
        rules = self._rules_for(resource)
        statements = classification.statements
        if not rules or not statements:
            return ALLOW
        best = ALLOW
        for n, info in enumerate(statements, 1):
            decision = self._decide_statement(rules, info)
            if decision.stricter_than(best):
                reason = decision.reason
                if len(statements) > 1:
                    reason = f"statement {n} of {len(statements)}: {reason}"
                best = Decision(decision.action, decision.rule, reason)
                if best.action == "block":
                    break
        return best

    def _decide_statement(self, rules: Sequence[_Rule], info: StatementInfo) -> Decision:
        best = ALLOW
        kinds = info.kinds
        for rule in rules:
            if not rule.can_raise(best):
                continue
            reason = _statement_match(rule, info, kinds) or _function_match(rule, info)
            if reason is not None:
                best = Decision(rule.action, rule.label, reason)
        if info.opaque and best.action != "block":
            sql_rules = [r for r in rules if r.for_sql]
            chosen = next((r for r in sql_rules if r.action == "review"), None) or next(
                (r for r in sql_rules if r.action == "block"), None
            )
            if chosen is not None:
                verdict = (
                    f"held for review by rule {chosen.label}"
                    if chosen.action == "review"
                    else f"blocked by rule {chosen.label}"
                )
                why = info.opaque_reason or "its effect cannot be known from its text"
                reason = (
                    f"the statement could not be classified ({why}) and is treated as the "
                    f"riskiest kind: {verdict}"
                )
                candidate = Decision(chosen.action, chosen.label, reason)
                if candidate.stricter_than(best):
                    best = candidate
        return best

    def decide_command(self, resource: str, command: str) -> Decision:
        """Decide on a command line (SSH exec, or a line typed in a recorded shell).

        The rule's `commands` are globs matched against the whole command line with runs of
        whitespace collapsed to one space, case-sensitively (shells are). A glob must cover the
        whole line: "rm *" matches "rm -rf /" but not "sudo rm -rf /"; write "*rm -rf*" to catch
        it anywhere. This is a plain text match: it does not parse the shell, so quoting,
        variables, aliases and scripts can get around it -- pair it with `shell = false` and
        recording where that matters.
        """
        line = _normalize(command)
        best = ALLOW
        for rule in self._rules_for(resource):
            if not rule.can_raise(best):
                continue
            pattern = next((p for p in rule.commands if fnmatch.fnmatchcase(line, p)), None)
            if pattern is not None:
                reason = f"the command matches {pattern!r} and {rule.verdict}"
                best = Decision(rule.action, rule.label, reason)
        return best


@dataclass(frozen=True, slots=True)
class _Allow:
    """An allow rule: what an SSH resource may do beyond the default (port forwarding, the
    client's agent), or that its keystrokes are recorded."""

    label: str
    resources: tuple[str, ...]
    forward: tuple[str, ...]
    agent: bool
    record_input: bool = False

    def applies(self, resource: str) -> bool:
        return any(fnmatch.fnmatchcase(resource, p) for p in self.resources)


class SshPolicy:
    """What an SSH connection to one resource may do, beyond single command lines (which
    `SqlPolicy.decide_command` judges): an interactive shell, file operations, forwarding, and
    whether keystrokes are recorded. Built from the same rules; read once per connection."""

    def __init__(self, policy: SqlPolicy, resource: str) -> None:
        self._policy = policy
        self.resource = resource
        rules = policy._rules_for(resource)
        allows = [a for a in policy._allows if a.applies(resource)]
        self._file_rules = [r for r in rules if r.files]
        self._no_shell = next((r for r in rules if r.shell is False), None)
        self.record_input = any(r.record_input for r in rules) or any(
            a.record_input for a in allows
        )
        self.has_command_rules = any(r.commands for r in rules)
        self.has_file_rules = bool(self._file_rules)
        self._forward = [(a.label, p) for a in allows for p in a.forward]
        self.agent_rule = next((a.label for a in allows if a.agent), None)

    def decide_command(self, command: str) -> Decision:
        return self._policy.decide_command(self.resource, command)

    def decide_shell(self) -> Decision:
        """Block when a rule makes the resource exec-only (`shell = false`)."""
        rule = self._no_shell
        if rule is None:
            return ALLOW
        return Decision(
            "block",
            rule.label,
            f"interactive shells are not allowed on {self.resource} (rule {rule.label}: "
            "exec only); run a command instead: ssh HOST 'command'",
        )

    def decide_file(self, op: str, path: str, path2: str | None = None) -> Decision:
        """Block a file operation whose path (or second path: a rename's target, a link's
        destination) matches a rule's `files` glob. Globs match the normalised absolute path;
        `*` crosses `/`, so "/etc/*" covers everything below /etc."""
        for rule in self._file_rules:
            for candidate in (path, path2):
                if candidate is None:
                    continue
                pattern = next((p for p in rule.files if fnmatch.fnmatchcase(candidate, p)), None)
                if pattern is not None:
                    return Decision(
                        "block",
                        rule.label,
                        f"{op} {candidate} matches {pattern!r} and {rule.verdict}",
                    )
        return ALLOW

    def decide_forward(self, host: str, port: int) -> Decision:
        """Allow a forwarded connection to host:port only when an allow rule names it."""
        target = f"{host}:{port}"
        for label, pattern in self._forward:
            if fnmatch.fnmatchcase(target, pattern):
                return Decision("allow", label, f"forwarding to {target} is allowed by {label}")
        return Decision(
            "block",
            None,
            f"port forwarding to {target} is not allowed on {self.resource} (no allow rule "
            "names it)",
        )


def _statement_match(rule: _Rule, info: StatementInfo, kinds: tuple[str, ...]) -> str | None:
    """The reason `rule` matches the statement's kind (or an inner kind), or None."""
    for pattern in rule.statements:
        if _is_glob(pattern):
            matched = next((k for k in kinds if fnmatch.fnmatchcase(k, pattern)), None)
        else:
            matched = pattern if pattern in kinds else None
        if matched is None:
            continue
        if info.kind == matched or info.kind.startswith(matched + " "):
            return f"statement kind {info.kind!r} {rule.verdict}"
        inner = next(
            (k for k in sorted(info.inner_kinds) if k == matched or k.startswith(matched + " ")),
            matched,
        )
        return f"statement kind {inner!r} (inside this {info.kind}) {rule.verdict}"
    return None


def _function_match(rule: _Rule, info: StatementInfo) -> str | None:
    """The reason `rule` matches a function the statement calls, or None."""
    if not rule.functions or not info.functions:
        return None
    # Bare names first, so the message names the function the way it is usually written.
    names = sorted(info.functions, key=lambda f: ("." in f, f))
    for pattern in rule.functions:
        for name in names:
            if fnmatch.fnmatchcase(name, pattern):
                return f"function {name} {rule.verdict}"
    return None
