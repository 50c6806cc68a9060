"""`watchgate-central`: serve, demo, token, verify-audit, export-bundle.

Operator mistakes (a bad config, a wrong user name) end with one line on stderr and exit 2,
never a traceback: the message is the interface.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.config import Config, ConfigError, load_config
from central.durations import parse_duration, parse_time
from central.logs import AuditLog, configure_logging, verify_audit_file
from central.recording.evidence import (
    EvidenceError,
    StoreReport,
    audit_ends,
    bundle_lines,
    verify_bundle,
    verify_store,
)
from central.recording.integrity import AuditEnd
from central.store import Store, StoreError


def _serve(args: argparse.Namespace) -> int:
    from central.server import serve

    config = load_config(args.config)
    _run(serve(config))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from central.demo import run_demo

    _run(run_demo(Path(args.dir), api_port=args.api_port))
    return 0


def _token(args: argparse.Namespace) -> int:
    from central.idp.issuer import TokenMinter
    from central.idp.keys import SigningKeys
    from central.idp.users import UserDirectory

    config = load_config(args.config)
    if config.identity.issuer != "builtin":
        raise _Refused(f"the issuer is external ({config.identity.issuer}): get tokens there")
    users = UserDirectory(config.identity.users)
    user = users.get(args.user)
    if user is None:
        raise _Refused(f"no user {args.user!r} in {args.config}")
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as e:
        raise _Refused(f"--ttl: {e}") from None
    keys = SigningKeys.load_or_create(config.data_dir)
    token = TokenMinter(config, keys).mint_access_token(user, ttl=ttl)
    AuditLog(config.data_dir / "audit.jsonl").record_sync(
        "token.minted", user=user.name, ttl=ttl, by="watchgate-central token"
    )
    print(token)
    return 0


def _verify_audit(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        return _verify_bundle(args.bundle)
    config = load_config(args.config)
    path = config.data_dir / "audit.jsonl"
    if not path.exists():
        raise _Refused(f"no audit log at {path}")
    count, problem = verify_audit_file(path)
    if not problem:
        ends, problem = audit_ends(path)
    if problem:
        print(f"audit log {path}: BROKEN at {problem}", file=sys.stderr)
        return 1
    print(f"audit log {path}: chain intact, {count} events")
    report = asyncio.run(_verify_store(config, ends))
    if report.problem:
        print(f"recordings: BROKEN: {report.problem}", file=sys.stderr)
        return 1
    print(f"recordings: chains intact, {report.sessions} sessions, {report.rows} rows")
    unsealed = report.sessions - report.sealed
    print(
        f"seals: {report.sealed} sessions sealed in one unbroken chain ({unsealed} not sealed: "
        f"live, left open, or older than seals); {report.ends} session ends in the audit log "
        "match their seals"
    )
    return 0


async def _verify_store(config: Config, ends: list[AuditEnd]) -> StoreReport:
    async with await Store.open(config.store_url) as store:
        return await verify_store(store, ends)


def _verify_bundle(path: Path) -> int:
    """Verify an evidence bundle (or one session's export) on its own: no config, no store."""
    try:
        with path.open("rb") as f:
            verifier, problem = verify_bundle(f)
    except OSError as e:
        raise _Refused(f"cannot read {path}: {e.strerror or e}") from None
    if problem:
        print(f"bundle {path}: BROKEN: {problem}", file=sys.stderr)
        return 1
    counts = verifier.counts
    audit = (
        f"{counts['audit']} audit events (lines {verifier.audit_first}-{verifier.audit_last})"
        if verifier.audit_first is not None
        else "no audit events"
    )
    print(
        f"bundle {path}: intact ({verifier.scope}): {audit}, {verifier.sessions} sessions, "
        f"{verifier.rows} rows, {counts['access_request']} access requests, "
        f"{counts['command_review']} command reviews, {counts['approval']} approvals; "
        f"sha256 {verifier.digest}"
    )
    return 0


def _export_bundle(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    since = _time("--since", args.since, now)
    until = _time("--until", args.until, now)
    if since >= until:
        raise _Refused(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )
    try:
        end = asyncio.run(_write_bundle(config, since, until, args.output))
    except EvidenceError as e:
        raise _Refused(str(e)) from None
    counts = end["counts"]
    print(
        f"bundle {args.output}: {since.isoformat()} to {until.isoformat()}: "
        f"{counts.get('audit', 0)} audit events, {counts.get('session', 0)} sessions, "
        f"{counts.get('statement', 0) + counts.get('terminal', 0)} rows; "
        f"sha256 {end['sha256']} (keep it apart from the bundle)"
    )
    return 0


async def _write_bundle(
    config: Config, since: datetime, until: datetime, output: Path
) -> dict[str, Any]:
    """Stream the bundle to a file beside `output`, renamed over it once complete: a failed
    export leaves no bundle behind. The final line (counts and digest)."""
    partial = output.with_name(f".{output.name}.partial")
    last = ""
    try:
        async with await Store.open(config.store_url) as store:
            with partial.open("w", encoding="ascii") as f:
                pending: list[str] = []
                size = 0
                async for line in bundle_lines(
                    store, config.data_dir / "audit.jsonl", since, until
                ):
                    pending.append(line)
                    size += len(line)
                    last = line
                    if size >= 1 << 20:  # write a MiB at a time, off the event loop
                        await asyncio.to_thread(f.writelines, pending)
                        pending, size = [], 0
                await asyncio.to_thread(f.writelines, pending)
                await asyncio.to_thread(os.fsync, f.fileno())
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    end: dict[str, Any] = json.loads(last)
    return end


def _time(option: str, text: str, now: datetime) -> datetime:
    try:
        return parse_time(text, now)
    except ValueError as e:
        raise _Refused(f"{option}: {e}") from None


class _Refused(Exception):
    pass


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchgate-central", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway until SIGTERM/SIGINT")
    s.add_argument("--config", required=True, type=Path)
    s.set_defaults(func=_serve)
    d = sub.add_parser("demo", help="write a demo config and serve it")
    d.add_argument("--dir", default="wg-demo", help="where the demo config and data go")
    d.add_argument("--api-port", type=int, default=8470)
    d.set_defaults(func=_demo)
    t = sub.add_parser("token", help="print an access token for a built-in-issuer user")
    t.add_argument("--config", required=True, type=Path)
    t.add_argument("--user", required=True)
    t.add_argument("--ttl", default="10m")
    t.set_defaults(func=_token)
    v = sub.add_parser(
        "verify-audit",
        help="check the hash chains of the audit log and the recordings, or an evidence bundle",
    )
    what = v.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", type=Path, help="the audit log and store of this config")
    what.add_argument("--bundle", type=Path, help="an evidence bundle or session export, alone")
    v.set_defaults(func=_verify_audit)
    e = sub.add_parser(
        "export-bundle", help="write the verifiable evidence of a time range as JSON lines"
    )
    e.add_argument("--config", required=True, type=Path)
    e.add_argument("--since", required=True, help="ISO-8601 time, or a duration back (24h)")
    e.add_argument("--until", default="now", help="ISO-8601 time, or a duration back (now)")
    e.add_argument("--output", required=True, type=Path)
    e.set_defaults(func=_export_bundle)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"watchgate-central: config error: {e}", file=sys.stderr)
    except (StoreError, _Refused) as e:
        print(f"watchgate-central: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
