"""`watchgate-central`: serve, demo, token, verify-audit.

Operator mistakes (a bad config, a wrong user name) end with one line on stderr and exit 2,
never a traceback: the message is the interface.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from central.config import Config, ConfigError, load_config
from central.durations import parse_duration
from central.logs import AuditLog, configure_logging, verify_audit_file
from central.recording.recorder import verify_chain
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
    config = load_config(args.config)
    path = config.data_dir / "audit.jsonl"
    if not path.exists():
        raise _Refused(f"no audit log at {path}")
    count, problem = verify_audit_file(path)
    if problem:
        print(f"audit log {path}: BROKEN at {problem}", file=sys.stderr)
        return 1
    print(f"audit log {path}: chain intact, {count} events")
    sessions, rows, broken = asyncio.run(_verify_sessions(config))
    if broken:
        print(f"recordings: BROKEN: {broken}", file=sys.stderr)
        return 1
    print(f"recordings: chains intact, {sessions} sessions, {rows} rows")
    return 0


async def _verify_sessions(config: Config) -> tuple[int, int, str | None]:
    """Every recorded session's chain (statements and terminal chunks); the first break."""
    async with await Store.open(config.store_url) as store:
        sessions = await store.list_sessions(user=None, limit=1 << 31)
        rows = 0
        for session in sessions:
            chain = await store.session_chain(session.id)
            problem = verify_chain(session.id, chain)
            if problem:
                return len(sessions), rows, f"session {session.id}: {problem}"
            rows += len(chain)
    return len(sessions), rows, None


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
        "verify-audit", help="check the hash chains of the audit log and the recordings"
    )
    v.add_argument("--config", required=True, type=Path)
    v.set_defaults(func=_verify_audit)
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
