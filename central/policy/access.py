"""Who may use which resource: groups map to roles, roles grant resources directly or on request.

This is the one place that answers "may this identity use this resource, and how"; the API,
the tunnel and every protocol path ask here. When several roles grant the same resource the
most permissive access wins (direct over request), and the reviewers of all of them count.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from central.config import Config, ResourceConfig, RoleConfig


@dataclass(frozen=True, slots=True)
class Entitlement:
    """One resource an identity may use, and how."""

    resource: ResourceConfig
    access: Literal["direct", "request"]
    roles: tuple[str, ...]
    reviewers: tuple[str, ...]
    approvals: int
    max_duration: int


def roles_for(config: Config, groups: Iterable[str]) -> list[RoleConfig]:
    mine = set(groups)
    return [role for role in config.roles if mine.intersection(role.groups)]


def is_auditor(config: Config, groups: Iterable[str]) -> bool:
    return any(role.auditor for role in roles_for(config, groups))


def may_review(config: Config, groups: Iterable[str]) -> bool:
    """Session review (search, replay, export, evidence bundles): roles marked admin or
    auditor."""
    return any(role.auditor or role.admin for role in roles_for(config, groups))


def _grants(role: RoleConfig, resource: str) -> bool:
    return any(fnmatch.fnmatchcase(resource, pattern) for pattern in role.resources)


def entitlements(config: Config, groups: Iterable[str]) -> list[Entitlement]:
    """The resources these groups reach, in config order."""
    roles = roles_for(config, groups)
    out = []
    for resource in config.resources:
        granting = [role for role in roles if _grants(role, resource.name)]
        if not granting:
            continue
        direct = any(role.access == "direct" for role in granting)
        out.append(
            Entitlement(
                resource=resource,
                access="direct" if direct else "request",
                roles=tuple(role.name for role in granting),
                reviewers=tuple(sorted({g for role in granting for g in role.reviewers})),
                approvals=max(role.approvals for role in granting),
                max_duration=max(role.max_duration for role in granting),
            )
        )
    return out


def entitlement(config: Config, groups: Iterable[str], resource: str) -> Entitlement | None:
    return next((e for e in entitlements(config, groups) if e.resource.name == resource), None)
