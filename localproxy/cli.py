"""`watchgate`: sign in, list resources (and, as the data path lands, connect and request).

Human output by default, one JSON document on stdout with --json; every error is one line on
stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from localproxy.api import CentralClient, CentralError
from localproxy.connect import ConnectError, run_connect
from localproxy.contract import (
    AccessRequestView,
    CastSummary,
    CommandReviewView,
    ReviewSessionSummary,
)
from localproxy.login import LoginError, refresh, sign_in
from localproxy.profile import resolve_central, save_central
from localproxy.replay import _shown, render_session
from localproxy.tokens import TokenSet, TokenStore, expires_soon


class CliError(Exception):
    pass


def _warn(text: str) -> None:
    print(f"watchgate: {text}", file=sys.stderr)


async def current_token(central: str, store: TokenStore) -> str:
    """WATCHGATE_TOKEN when set; else the stored sign-in, refreshed when about to expire."""
    env = os.environ.get("WATCHGATE_TOKEN")
    if env:
        return env.strip()
    tokens = store.load(central)
    if tokens is None:
        hint = f" ({store.warning})" if store.warning else ""
        raise CliError(f"not signed in to {central}: run `watchgate login`{hint}")
    if expires_soon(tokens.access_token) and tokens.refresh_token:
        async with CentralClient(central) as api:
            info = await api.login_info()
        try:
            tokens = await refresh(info, tokens.refresh_token)
        except LoginError as e:
            store.clear(central)
            raise CliError(f"your sign-in has ended ({e}): run `watchgate login`") from None
        store.save(central, tokens)
    return tokens.access_token


@contextlib.asynccontextmanager
async def _signed_in(args: argparse.Namespace, store: TokenStore) -> AsyncIterator[CentralClient]:
    """An API client for the central in use, with the current sign-in's token."""
    central = resolve_central(args.central)
    async with CentralClient(central, await current_token(central, store)) as api:
        yield api


async def _login(args: argparse.Namespace, store: TokenStore) -> int:
    central = resolve_central(args.central)
    if args.token_stdin:
        tokens = TokenSet(sys.stdin.read().strip())
        if not tokens.access_token:
            raise CliError("--token-stdin: no token on standard input")
    else:
        async with CentralClient(central) as api:
            info = await api.login_info()

        def announce(url: str) -> None:
            print(
                f"Opening your browser to sign in. If it does not open, visit:\n  {url}",
                file=sys.stderr,
                flush=True,
            )

        tokens = await sign_in(info, announce=announce)
    async with CentralClient(central, tokens.access_token) as api:
        me = await api.me()  # proves the token is good here before we keep it
    store.save(central, tokens)
    save_central(central)
    print(f"signed in to {central} as {me.user} (groups: {', '.join(me.groups) or 'none'})")
    if store.warning:
        _warn(store.warning)
    return 0


async def _logout(args: argparse.Namespace, store: TokenStore) -> int:
    central = resolve_central(args.central)
    store.clear(central)
    print(f"signed out of {central}")
    return 0


async def _resources(args: argparse.Namespace, store: TokenStore) -> int:
    async with _signed_in(args, store) as api:
        items = await api.resources()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in items], indent=2))
        return 0
    if not items:
        print("no resources: none of your roles grants one")
        return 0
    rows = [("NAME", "KIND", "ENV", "ACCESS")] + [
        (r.name, r.kind, r.environment or "-", _access(r.access.value, r.granted_until))
        for r in items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3])
    return 0


def _access(state: str, until: Any) -> str:
    return f"granted until {until:%Y-%m-%d %H:%M %Z}" if until is not None else state


async def _whoami(args: argparse.Namespace, store: TokenStore) -> int:
    async with _signed_in(args, store) as api:
        me = await api.me()
    if args.json:
        print(me.model_dump_json(indent=2))
    else:
        print(
            f"{me.user} at {api.base_url}; groups: {', '.join(me.groups) or 'none'}; "
            f"roles: {', '.join(me.roles) or 'none'}"
        )
    return 0


async def _connect(args: argparse.Namespace, store: TokenStore) -> int:
    central = resolve_central(args.central)
    await current_token(central, store)  # fail now, not at the first client connection

    async def token() -> str:
        return await current_token(central, store)

    return await run_connect(central, args.resource, args.port, token)


async def _sessions(args: argparse.Namespace, store: TokenStore) -> int:
    filters = _filters(args)
    if args.flagged or any(v is not None for v in filters.values()):
        return await _review_sessions(args, store, filters)
    async with _signed_in(args, store) as api:
        items = await api.sessions()
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in items], indent=2))
        return 0
    for s in items:
        ended = f"{s.ended_at:%H:%M:%S}" if s.ended_at else "live"
        print(f"{s.id}  {s.started_at:%Y-%m-%d %H:%M:%S} to {ended}  {s.user:<12} {s.resource}")
    return 0


async def _replay(args: argparse.Namespace, store: TokenStore) -> int:
    if args.format == "asciicast":
        return await _replay_cast(args, store)
    if args.channel is not None:
        raise CliError("--channel goes with --format asciicast")
    async with _signed_in(args, store) as api:
        detail = await api.session(args.session_id)
    text = render_session(detail, args.format) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write_file(args.output, [text.encode()])
    return 0


async def _replay_cast(args: argparse.Namespace, store: TokenStore) -> int:
    """A terminal channel's asciicast v3 recording, to stdout or --output, as it arrives."""
    async with _signed_in(args, store) as api:
        channel = _pick_channel(args, await api.casts(args.session_id))
        async with api.cast(args.session_id, channel) as body:
            await _emit(body, args.output, f"channel {channel} of session {args.session_id}")
    return 0


def _pick_channel(args: argparse.Namespace, casts: list[CastSummary]) -> int:
    """--channel, or the session's first terminal channel (saying which others there are)."""
    if not casts:
        raise CliError(
            f"session {args.session_id} has no terminal recording "
            f"(see what it recorded with `watchgate replay {args.session_id}`)"
        )
    channels = [c.channel for c in casts]
    channel = channels[0] if args.channel is None else int(args.channel)
    if channel not in channels:
        raise CliError(
            f"session {args.session_id} has no terminal channel {channel}; "
            f"it has {', '.join(map(str, channels))}"
        )
    if args.channel is None and len(channels) > 1:
        others = ", ".join(map(str, channels[1:]))
        _warn(
            f"session {args.session_id} has {len(channels)} terminal channels: writing "
            f"channel {channel}; the others ({others}) with --channel N"
        )
    return channel


async def _emit(body: AsyncIterator[bytes], output: str | None, what: str) -> int:
    """A download to stdout, or to the file `output` (saying so on stderr); its size."""
    if output is None:
        size = 0
        async for chunk in body:
            sys.stdout.buffer.write(chunk)
            size += len(chunk)
        sys.stdout.buffer.flush()
        return size
    size = await _write_stream(output, body)
    _warn(f"wrote {what} to {output} ({size} bytes)")
    return size


# -- session review (roles marked admin or auditor) -------------------------------------------


def _filters(args: argparse.Namespace) -> dict[str, str | None]:
    return {
        "user": args.user,
        "resource": args.resource,
        "kind": args.kind,
        "since": args.since,
        "until": args.until,
    }


async def _review_sessions(
    args: argparse.Namespace, store: TokenStore, filters: dict[str, str | None]
) -> int:
    """Sessions by filter, newest first, up to --limit, from the reviewers' API."""
    found: list[ReviewSessionSummary] = []
    before: str | None = None
    async with _signed_in(args, store) as api:
        while len(found) < args.limit:
            page = await api.review_sessions(
                **filters,
                flagged=True if args.flagged else None,
                limit=min(args.limit - len(found), 500),
                before=before,
            )
            found += page.sessions
            before = page.next
            if before is None:
                break
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
    elif not found:
        print("no recorded session matches")
    for s in [] if args.json else found:
        ended = f"{s.ended_at:%H:%M:%S}" if s.ended_at else "live"
        counts = f"{s.statements} statements, {s.blocked} blocked, {s.held} held"
        print(
            f"{s.id}  {s.started_at:%Y-%m-%d %H:%M:%S} to {ended}  {_shown(s.user):<12} "
            f"{_shown(s.resource)} ({s.kind})  {counts}" + ("" if s.sealed else ", not sealed")
        )
    if before is not None:
        _warn(f"more sessions match: raise --limit (now {args.limit}) or narrow the filters")
    return 0


async def _search(args: argparse.Namespace, store: TokenStore) -> int:
    async with _signed_in(args, store) as api:
        hits = await api.search(args.text, **_filters(args), limit=args.limit)
    if args.json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], indent=2))
        return 0
    if not hits:
        print("nothing found")
    for h in hits:
        if h.where == "terminal":
            place = f"terminal {h.channel} at {_offset(h.at)}"
        else:
            place = f"statement {h.seq}"
        print(
            f"{h.session_id}  {h.started_at:%Y-%m-%d %H:%M:%S}  {_shown(h.user):<12} "
            f"{_shown(h.resource)}  {place}: {_shown(h.snippet)}"
        )
    return 0


def _offset(seconds: float | None) -> str:
    """A time in a recording as M:SS.s (the player's clock)."""
    if seconds is None:
        return "?"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


async def _export(args: argparse.Namespace, store: TokenStore) -> int:
    """One session as evidence JSON lines, or one terminal channel as asciicast v3."""
    if args.format == "jsonl" and args.channel is not None:
        raise CliError("--channel goes with --format asciicast")
    async with _signed_in(args, store) as api:
        if args.format == "jsonl":
            what = f"session {args.session_id} as evidence lines"
            channel = None
        else:
            channel = _pick_channel(args, (await api.review_session(args.session_id)).casts)
            what = f"channel {channel} of session {args.session_id}"
        async with api.export(args.session_id, args.format, channel) as body:
            await _emit(body, args.output, what)
    return 0


async def _export_bundle(args: argparse.Namespace, store: TokenStore) -> int:
    """The evidence of a time range, to a file that the auditor verifies on their own."""
    async with _signed_in(args, store) as api, api.bundle(args.since, args.until) as body:
        size = await _write_stream(args.output, body)
    digest = _bundle_digest(args.output)
    print(
        f"wrote the evidence from {args.since} to {args.until} to {args.output} ({size} bytes); "
        f"check it with `watchgate-central verify-audit --bundle {args.output}`"
    )
    if digest:
        print(f"its sha256 (keep it apart from the file, to detect a rewrite): {digest}")
    return 0


def _bundle_digest(path: str) -> str | None:
    """The digest on a bundle's last line, or None if the file does not end with one."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 4096, 0))
            last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        digest = json.loads(last).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) and len(digest) == 64 else None


async def _write_stream(path: str, chunks: AsyncIterator[bytes]) -> int:
    """Write what arrives to `path`; a broken download leaves no half file behind."""
    size = 0
    try:
        out = open(path, "wb")  # noqa: ASYNC230 - small writes as chunks arrive
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with out:
            async for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if isinstance(e, OSError):
            raise CliError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    return size


def _write_file(path: str, parts: list[bytes]) -> None:
    try:
        with open(path, "wb") as out:
            out.writelines(parts)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None


def _item_line(item: AccessRequestView | CommandReviewView) -> str:
    if isinstance(item, AccessRequestView):
        what = f"access to {item.resource} for {_minutes(item.duration)}: {item.reason}"
    else:
        what = f"statement on {item.resource} (rule {item.rule}): {item.statement}"
    votes = f" {item.approvals}/{item.required_approvals}" if item.required_approvals > 1 else ""
    return f"{item.id}  {item.status}{votes}  {item.requester}  {what}"


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 3600 else f"{seconds // 3600}h"


async def _request(args: argparse.Namespace, store: TokenStore) -> int:
    central = resolve_central(args.central)
    token = await current_token(central, store)
    async with CentralClient(central, token) as api:
        if not args.wait:
            view = await api.request_access(args.resource, args.reason, args.duration)
            print(_item_line(view))
            return 0
        # Subscribe before asking, so the decision cannot slip past between the two.
        async with api.events() as events:
            view = await api.request_access(args.resource, args.reason, args.duration)
            print(_item_line(view), flush=True)
            if view.status == "pending":
                async for event in events:
                    if event.data.get("id") == view.id and event.type in _FINAL_EVENTS:
                        view = await api.approval(view.id)  # type: ignore[assignment]
                        break
    print(
        f"{view.id}: {view.status}"
        + (f" by {view.decided_by}" if view.decided_by else "")
        + (f": {view.comment}" if view.comment else "")
    )
    return 0 if view.status == "approved" else 3


_FINAL_EVENTS = frozenset({"request.approved", "request.denied", "request.expired"})


async def _approvals(args: argparse.Namespace, store: TokenStore) -> int:
    async with _signed_in(args, store) as api:
        items = await api.approvals()
    if args.json:
        print(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
    elif not items:
        print("nothing waits for your decision")
    for item in [] if args.json else items:
        print(_item_line(item))
    return 0


async def _approve(args: argparse.Namespace, store: TokenStore) -> int:
    async with _signed_in(args, store) as api:
        item = await api.approve(args.id, args.comment)
    print(_item_line(item))
    return 0


async def _deny(args: argparse.Namespace, store: TokenStore) -> int:
    async with _signed_in(args, store) as api:
        item = await api.deny(args.id, args.reason)
    print(_item_line(item))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchgate", description="Watchgate client")
    p.add_argument("--central", help="central URL (default: $WATCHGATE_CENTRAL or the profile)")
    sub = p.add_subparsers(dest="command", required=True)
    login = sub.add_parser("login", help="sign in with your browser (RFC 8252)")
    login.add_argument("--token-stdin", action="store_true", help="read an access token instead")
    login.set_defaults(func=_login)
    logout = sub.add_parser("logout", help="forget the stored sign-in")
    logout.set_defaults(func=_logout)
    res = sub.add_parser("resources", help="resources you may use, with their access state")
    res.add_argument("--json", action="store_true")
    res.set_defaults(func=_resources)
    who = sub.add_parser("whoami", help="who central thinks you are")
    who.add_argument("--json", action="store_true")
    who.set_defaults(func=_whoami)
    con = sub.add_parser("connect", help="open the local proxy for a resource")
    con.add_argument("resource")
    con.add_argument("--port", type=int, help="listen on this port (default: a stable one)")
    con.set_defaults(func=_connect)
    ses = sub.add_parser(
        "sessions",
        help="recorded sessions (yours; everyone's for auditors); filters need a reviewer",
    )
    ses.add_argument("--json", action="store_true")
    _filter_options(ses)
    ses.add_argument("--flagged", action="store_true", help="only with blocked or held statements")
    ses.add_argument("--limit", type=_positive, default=100, help="at most N (with filters)")
    ses.set_defaults(func=_sessions)
    find = sub.add_parser("search", help="search statements and terminal output (reviewers)")
    find.add_argument("text")
    _filter_options(find)
    find.add_argument("--limit", type=_positive, default=100, help="at most N hits (max 500)")
    find.add_argument("--json", action="store_true")
    find.set_defaults(func=_search)
    exp = sub.add_parser("export", help="one session as evidence (jsonl) or a cast (reviewers)")
    exp.add_argument("session_id")
    exp.add_argument("--format", choices=["jsonl", "asciicast"], required=True)
    exp.add_argument("--channel", type=int, help="the terminal channel (with asciicast)")
    exp.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    exp.set_defaults(func=_export)
    bun = sub.add_parser("export-bundle", help="the evidence of a time range (reviewers)")
    bun.add_argument("--since", required=True, metavar="T", help="e.g. 2026-01-31 or 24h")
    bun.add_argument("--until", required=True, metavar="T", help="e.g. 2026-02-01T00:00Z")
    bun.add_argument("--output", "-o", metavar="FILE", required=True)
    bun.set_defaults(func=_export_bundle)
    rep = sub.add_parser("replay", help="what happened in a recorded session")
    rep.add_argument("session_id")
    rep.add_argument(
        "--format",
        choices=["text", "json", "asciicast"],
        default="text",
        help="asciicast: a terminal channel's recording, which asciinema plays",
    )
    rep.add_argument("--channel", type=int, help="the terminal channel (with asciicast)")
    rep.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    rep.set_defaults(func=_replay)
    req = sub.add_parser("request", help="ask for time-boxed access to a resource")
    req.add_argument("resource")
    req.add_argument("--reason", required=True)
    req.add_argument("--duration", default="30m", help="e.g. 30m, 2h (capped by your role)")
    req.add_argument("--wait", action="store_true", help="wait for the decision (exit 0 / 3)")
    req.set_defaults(func=_request)
    inbox = sub.add_parser("approvals", help="requests and held statements you may decide")
    inbox.add_argument("--json", action="store_true")
    inbox.set_defaults(func=_approvals)
    ok = sub.add_parser("approve", help="approve a request or a held statement")
    ok.add_argument("id")
    ok.add_argument("--comment")
    ok.set_defaults(func=_approve)
    no = sub.add_parser("deny", help="deny a request or a held statement")
    no.add_argument("id")
    no.add_argument("--reason", required=True)
    no.set_defaults(func=_deny)
    for sp in (login, logout, res, who, con, ses, find, exp, bun, rep, req, inbox, ok, no):
        sp.add_argument("--central", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
    return p


def _filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="U")
    parser.add_argument("--resource", metavar="R")
    parser.add_argument("--kind", metavar="K", help="postgres, mysql, ssh...")
    parser.add_argument("--since", metavar="T", help="active since T: 2026-01-31, 24h (ago)...")
    parser.add_argument("--until", metavar="T", help="active before T")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return int(uvloop.run(coro))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = TokenStore()
    try:
        return _run(args.func(args, store))
    except (CliError, CentralError, LoginError, ConnectError) as e:
        _warn(str(e))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
