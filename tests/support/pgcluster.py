"""A throw-away PostgreSQL cluster that demands authentication, for testing how central logs in.

The machine's own PostgreSQL (127.0.0.1:5432) trusts every connection, so a client that gets
SCRAM wrong still connects there: authentication can only be proven against a server that asks
for it. `start_auth_cluster` runs `initdb` with `--auth=scram-sha-256` in a temporary folder and
starts the cluster on a free loopback port, with:

- `pg_hba.conf`: ``md5_user`` logs in with ``md5``, ``plain_user`` with ``password`` (cleartext),
  everything else with ``scram-sha-256`` (local socket included);
- TLS on (``ssl = on``), with a server certificate for 127.0.0.1 / localhost issued by a
  throw-away CA whose certificate is `AuthCluster.ca_file`; `AuthCluster.wrong_ca_file` is an
  unrelated CA, for proving that verification really happens;
- roles ``scram_user`` (SCRAM verifier), ``md5_user`` (md5 hash, stored with
  ``password_encryption = 'md5'``) and ``plain_user``, each with a known password, and a database
  ``authdb`` they may connect to.

PostgreSQL refuses to run as root, so `initdb` and `pg_ctl` run as the ``postgres`` user (via
``runuser`` when the tests run as root) on a folder that user owns. Anything missing or failing
raises `ClusterError` with the reason and the tail of the server log: these tests never skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from central.tls import issue_server_cert, key_pem, make_ca, pem

PG_BIN_ENV = "WATCHGATE_TEST_PG_BIN"
"""Environment variable naming the folder of `initdb` / `pg_ctl` / `psql`, when not the default."""

SUPERUSER = "postgres"
DATABASE = "authdb"
_OS_USER = "postgres"
_START_TIMEOUT = 60


class ClusterError(RuntimeError):
    """The throw-away cluster could not be created or started (the message says why)."""


@dataclass(frozen=True)
class Role:
    """A login role of the cluster, and the authentication method `pg_hba.conf` gives it."""

    name: str
    password: str = field(repr=False)
    method: str


@dataclass(frozen=True)
class AuthCluster:
    """A running cluster that demands authentication (see the module docstring)."""

    host: str
    port: int
    database: str
    ca_file: str
    """PEM certificate of the CA that issued the server certificate (for ``verify-full``)."""
    wrong_ca_file: str
    """PEM certificate of an unrelated CA: verification against it must fail."""
    superuser: Role
    scram: Role
    md5: Role
    plain: Role
    data_dir: str
    log_file: str


def find_pg_bin() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `psql` (highest installed version)."""
    configured = os.environ.get(PG_BIN_ENV)
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates.extend(p / "bin" for p in versions)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return candidate
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl, psql) were not found in "
        f"{[str(c) for c in candidates] or '/usr/lib/postgresql/*/bin or PATH'}; install the "
        f"postgresql package or set {PG_BIN_ENV}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: Sequence[str]) -> list[str]:
    """`argv` run as the postgres OS user: via runuser when root, directly when already it."""
    try:
        account = pwd.getpwnam(_OS_USER)
    except KeyError:
        raise ClusterError(f"there is no {_OS_USER!r} OS user to run PostgreSQL as") from None
    if os.geteuid() == account.pw_uid:
        return list(argv)
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise ClusterError("runuser is needed to start PostgreSQL as the postgres user")
        return [runuser, "-u", _OS_USER, "--", *argv]
    raise ClusterError(
        f"the throw-away cluster must be started by root or by the {_OS_USER!r} user "
        "(PostgreSQL refuses to run as root and its data folder must belong to its user)"
    )


def _log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _run(
    argv: Sequence[str],
    what: str,
    *,
    log_file: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run `argv`; raise `ClusterError` with its output (and the server log) when it fails."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        tail = f"\nserver log:\n{_log_tail(log_file)}" if log_file else ""
        raise ClusterError(f"{what} failed: {exc}{tail}") from exc
    if done.returncode != 0:
        tail = f"\nserver log:\n{_log_tail(log_file)}" if log_file else ""
        raise ClusterError(
            f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}{tail}"
        )
    return str(done.stdout)


# --- certificates ---------------------------------------------------------------------------


def _write_tls_files(data_dir: Path, certs_dir: Path, host: str) -> tuple[Path, Path]:
    """Server key and certificate into the data folder; the CA certificates into `certs_dir`."""
    ca_key, ca_cert = make_ca("watchgate test CA", days=2)
    _, wrong_ca_cert = make_ca("watchgate unrelated test CA", days=2)
    server_key, server_cert = issue_server_cert(ca_key, ca_cert, host, days=2)

    account = pwd.getpwnam(_OS_USER)
    key_path = data_dir / "server.key"
    key_path.write_bytes(key_pem(server_key))
    cert_path = data_dir / "server.crt"
    cert_path.write_bytes(pem(server_cert))
    for path in (key_path, cert_path):
        os.chown(path, account.pw_uid, account.pw_gid)
        path.chmod(0o600)

    ca_file = certs_dir / "ca.crt"
    ca_file.write_bytes(pem(ca_cert))
    wrong_ca_file = certs_dir / "wrong-ca.crt"
    wrong_ca_file.write_bytes(pem(wrong_ca_cert))
    return ca_file, wrong_ca_file


# --- the cluster ----------------------------------------------------------------------------


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _setup_sql(cluster: AuthCluster) -> str:
    statements = [
        f"CREATE ROLE {cluster.scram.name} LOGIN PASSWORD {_sql_literal(cluster.scram.password)}",
        f"CREATE ROLE {cluster.plain.name} LOGIN PASSWORD {_sql_literal(cluster.plain.password)}",
        "SET password_encryption = 'md5'",
        f"CREATE ROLE {cluster.md5.name} LOGIN PASSWORD {_sql_literal(cluster.md5.password)}",
        "RESET password_encryption",
        f"CREATE DATABASE {cluster.database}",
        f"GRANT CONNECT ON DATABASE {cluster.database} TO "
        f"{cluster.scram.name}, {cluster.md5.name}, {cluster.plain.name}",
    ]
    return "".join(f"{s};\n" for s in statements)


_CHECK_SQL = (
    "SELECT rolname || '=' || left(rolpassword, 5) FROM pg_authid "
    "WHERE rolname IN ('md5_user', 'plain_user', 'scram_user') ORDER BY rolname"
)
"""How each test role's password is stored: `md5...` for md5_user, `SCRAM` for the others."""


@contextmanager
def start_auth_cluster() -> Iterator[AuthCluster]:
    """Create and start the cluster described in the module docstring; remove it on exit."""
    bin_dir = find_pg_bin()
    _as_postgres(["true"])  # fails early, with the reason, when we cannot run as postgres
    account = pwd.getpwnam(_OS_USER)

    root = Path(tempfile.mkdtemp(prefix="wg-pgauth-"))
    root.chmod(0o755)  # the certificates in it are read by the tests' user
    data_dir = root / "data"
    socket_dir = root / "sock"
    certs_dir = root / "certs"
    log_file = root / "server.log"
    pwfile = root / "superuser.pw"
    host = "127.0.0.1"
    started = False

    try:
        socket_dir.mkdir()
        certs_dir.mkdir()
        cluster = AuthCluster(
            host=host,
            port=free_port(),
            database=DATABASE,
            ca_file=str(certs_dir / "ca.crt"),
            wrong_ca_file=str(certs_dir / "wrong-ca.crt"),
            superuser=Role(SUPERUSER, "wg-super-" + os.urandom(6).hex(), "scram-sha-256"),
            scram=Role("scram_user", "scram-secret-Ä1", "scram-sha-256"),
            md5=Role("md5_user", "md5-secret-2", "md5"),
            plain=Role("plain_user", "plain-secret-3", "password"),
            data_dir=str(data_dir),
            log_file=str(log_file),
        )
        pwfile.write_text(cluster.superuser.password + "\n")
        for path in (root, socket_dir, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
        pwfile.chmod(0o600)

        _run(
            _as_postgres(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data_dir),
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-U",
                    SUPERUSER,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            "initdb",
        )
        pwfile.unlink()

        (data_dir / "pg_hba.conf").write_text(
            "# written by tests/support/pgcluster.py\n"
            "local all all scram-sha-256\n"
            f"host all {cluster.md5.name} 127.0.0.1/32 md5\n"
            f"host all {cluster.plain.name} 127.0.0.1/32 password\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        ca_file, wrong_ca_file = _write_tls_files(data_dir, certs_dir, host)
        assert str(ca_file) == cluster.ca_file and str(wrong_ca_file) == cluster.wrong_ca_file
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# written by tests/support/pgcluster.py\n"
                "ssl = on\n"
                "ssl_cert_file = 'server.crt'\n"
                "ssl_key_file = 'server.key'\n"
                "password_encryption = 'scram-sha-256'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

        options = f"-p {cluster.port} -k {socket_dir} -c listen_addresses={host}"
        started = True  # from here on, always try to stop it
        _run(
            _as_postgres(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data_dir),
                    "-o",
                    options,
                    "-l",
                    str(log_file),
                    "-w",
                    "-t",
                    str(_START_TIMEOUT),
                    "start",
                ]
            ),
            f"starting PostgreSQL on {host}:{cluster.port}",
            log_file=log_file,
        )

        env = {
            **os.environ,
            "PGPASSWORD": cluster.superuser.password,
            "PGSSLMODE": "disable",
            "PGCONNECT_TIMEOUT": "10",
        }
        psql = [
            str(bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            str(cluster.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ]
        _run(
            [*psql, "-f", "-"],
            "creating the test roles",
            log_file=log_file,
            env=env,
            stdin=_setup_sql(cluster),
        )
        stored = _run(
            [*psql, "-At", "-c", _CHECK_SQL],
            "checking the stored passwords",
            log_file=log_file,
            env=env,
        ).split()
        if not (
            len(stored) == 3
            and stored[0].startswith(f"{cluster.md5.name}=md5")
            and stored[1] == f"{cluster.plain.name}=SCRAM"
            and stored[2] == f"{cluster.scram.name}=SCRAM"
        ):
            raise ClusterError(f"the test roles were stored with unexpected passwords: {stored}")

        yield cluster
    finally:
        try:
            if started:
                subprocess.run(
                    _as_postgres(
                        [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"]
                    ),
                    capture_output=True,
                    timeout=_START_TIMEOUT,
                    check=False,
                )
        finally:
            shutil.rmtree(root, ignore_errors=True)
