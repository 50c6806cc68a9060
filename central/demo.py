"""`watchgate-central demo`: the embedded default, ready in one command.

It writes a config (built-in issuer, demo users in `analysts`, `admins`, `dba-leads`), creates a
demo PostgreSQL database with sample customer data on the local server when one is reachable,
and serves. What it cannot set up it leaves out and says so. The config is rewritten on every
start (the demo's passwords are kept in `demo-secrets.json`); copy it to customise.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from central.config import load_config
from central.server import serve

DEMO_DATABASE = "watchgate_demo"
DEMO_USERS = (("alice", "analysts"), ("bob", "admins"), ("carol", "dba-leads"))
ADMIN_DSN = os.environ.get("WATCHGATE_DEMO_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True, slots=True)
class DemoDatabase:
    host: str
    port: int
    database: str
    reader_password: str
    admin_password: str


class DemoUnavailable(Exception):
    pass


def _secrets(directory: Path) -> dict[str, str]:
    path = directory / "demo-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
    else:
        stored = {}
    wanted = [name for name, _ in DEMO_USERS] + ["db_reader", "db_admin"]
    if any(k not in stored for k in wanted):
        stored = {k: stored.get(k) or secrets.token_urlsafe(12) for k in wanted}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f, indent=2)
    return stored


def _luhn_complete(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


_FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Tim",
    "Shafi",
    "Leslie",
    "Whitfield",
    "Hedy",
    "Niklaus",
    "Sophie",
]
_LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Berners-Lee",
    "Goldwasser",
    "Lamport",
    "Diffie",
    "Lamarr",
    "Wirth",
    "Wilson",
]
_CITIES = ["Lisbon", "Oslo", "Austin", "Nairobi", "Osaka", "Lyon", "Quito", "Perth", "Gdansk"]


def sample_customers(count: int = 500, seed: int = 7) -> list[tuple[int, str, str, str, str, str]]:
    """Deterministic, plausible customers: names, emails, Luhn-valid card numbers, phones."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first}.{last}{i}@example.com".lower()
        card = _luhn_complete("4" + "".join(str(rng.randrange(10)) for _ in range(14)))
        phone = f"+1-555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
        rows.append((i, f"{first} {last}", email, card, phone, rng.choice(_CITIES)))
    return rows


async def prepare_database(reader_password: str, admin_password: str) -> DemoDatabase:
    """Create (or refresh) the demo database and its two login roles on the local server."""
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        raise DemoUnavailable(f"no PostgreSQL reachable at {_hostport(ADMIN_DSN)} ({e})") from e
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEMO_DATABASE):
            await admin.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        logins = (("wg_demo_reader", reader_password), ("wg_demo_admin", admin_password))
        for role, password in logins:
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            # Role names are ours; the password is a quoted literal built by the server itself.
            literal = await admin.fetchval("SELECT quote_literal($1)", password)
            await admin.execute(f"{verb} ROLE {role} LOGIN PASSWORD {literal}")
    finally:
        await admin.close()
    db = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}", timeout=5)
    try:
        async with db.transaction():
            await db.execute(
                """
                CREATE TABLE IF NOT EXISTS customers (
                    id integer PRIMARY KEY, full_name text NOT NULL, email text NOT NULL,
                    card_number text NOT NULL, phone text NOT NULL, city text NOT NULL);
                GRANT SELECT ON customers TO wg_demo_reader;
                GRANT ALL ON customers TO wg_demo_admin;
                """
            )
            if not await db.fetchval("SELECT count(*) FROM customers"):
                await db.copy_records_to_table("customers", records=sample_customers())
    finally:
        await db.close()
    where = urlsplit(ADMIN_DSN)
    return DemoDatabase(
        where.hostname or "127.0.0.1",
        where.port or 5432,
        DEMO_DATABASE,
        reader_password,
        admin_password,
    )


def _hostport(dsn: str) -> str:
    where = urlsplit(dsn)
    return f"{where.hostname}:{where.port or 5432}"


def render_config(api_port: int, pw: dict[str, str], db: DemoDatabase | None) -> str:
    users = "".join(
        f'\n[[identity.users]]\nname = "{name}"\npassword = "{pw[name]}"\ngroups = ["{group}"]\n'
        for name, group in DEMO_USERS
    )
    text = f"""# Written by `watchgate-central demo` on every start: copy it elsewhere to customise.
[server]
api_listen = "127.0.0.1:{api_port}"
tunnel_listen = "127.0.0.1:{api_port + 1}"
data_dir = "data"
store = "sqlite"

[identity]
issuer = "builtin"
audience = "watchgate"
{users}"""
    if db is None:
        return text
    return (
        text
        + f"""
[[resources]]
name = "shop-db"
kind = "postgres"
address = "{db.host}:{db.port}"
database = "{db.database}"
username = "wg_demo_reader"
password = "{db.reader_password}"
environment = "prod"
description = "Demo shop: customers with emails, card numbers and phones"

[[resources]]
name = "shop-db-admin"
kind = "postgres"
address = "{db.host}:{db.port}"
database = "{db.database}"
username = "wg_demo_admin"
password = "{db.admin_password}"
environment = "prod"
description = "Demo shop with write access (just-in-time only)"

[[roles]]
name = "analyst"
groups = ["analysts"]
resources = ["shop-db"]
access = "direct"
reviewers = ["dba-leads"]

[[roles]]
name = "dba"
groups = ["dba-leads"]
resources = ["shop-db*"]
access = "request"
reviewers = ["admins"]
max_duration = 7200

[[roles]]
name = "auditors"
groups = ["admins"]
resources = ["*"]
access = "request"
reviewers = ["dba-leads"]
auditor = true

[[rules]]
name = "no-destructive-ddl"
resources = ["shop-db*"]
action = "block"
statements = ["drop", "truncate", "alter role"]

[[rules]]
name = "writes-need-review"
resources = ["shop-db-admin"]
action = "review"
statements = ["delete", "update"]

[[rules]]
name = "card-numbers"
resources = ["shop-db"]
action = "mask"
columns = ["customers.card_number"]
style = "partial"

[[rules]]
name = "contact-details"
resources = ["shop-db"]
action = "mask"
columns = ["customers.email", "customers.phone"]
style = "hash"
detectors = ["email", "credit_card", "phone"]
"""
    )


async def run_demo(directory: Path, *, api_port: int = 8470) -> None:
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before serving
    pw = _secrets(directory)
    left_out = []
    try:
        db: DemoDatabase | None = await prepare_database(pw["db_reader"], pw["db_admin"])
    except DemoUnavailable as e:
        db = None
        left_out.append(f"shop-db and shop-db-admin: {e}")
    path = directory / "watchgate.toml"
    path.write_text(render_config(api_port, pw, db))
    path.chmod(0o600)
    config = load_config(path)
    print(_banner(config.api_url, path, pw, db, left_out), flush=True)
    await serve(config)


def _banner(
    url: str, path: Path, pw: dict[str, str], db: DemoDatabase | None, left_out: list[str]
) -> str:
    users = "\n".join(f"    {n:<6} {pw[n]:<18} ({g})" for n, g in DEMO_USERS)
    lines = [
        "Watchgate demo",
        f"  central   {url}   (API docs: {url}/api/docs)",
        f"  config    {path}",
        "  users     name   password           (group)",
        users,
    ]
    if db is not None:
        lines.append(
            f"  database  {db.database} on {db.host}:{db.port}: resources shop-db (analysts, "
            "direct) and shop-db-admin (dba-leads, on request; deletes and updates reviewed)"
        )
    for item in left_out:
        lines.append(f"  left out  {item}")
    lines += [
        "Sign in",
        f"  desktop app  watchgate-desktop   (central URL {url}, then Sign in)",
        f"  CLI          watchgate login --central {url}",
        f"  headless     watchgate-central token --config {path} --user alice \\",
        f"                 | watchgate login --central {url} --token-stdin",
        "  then         watchgate resources",
    ]
    return "\n".join(lines)
