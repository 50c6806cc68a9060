"""Central's configuration: one TOML file, validated completely before anything starts.

Every mistake is reported as one line naming the file, the key and the problem
(`ConfigError`), because a gateway that starts half-configured is worse than one that refuses
to start. Held credentials are resolved here (from the environment, a file, or inline for
demos) into `SecretStr`, which never prints its value.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from central.masking.detectors import DETECTORS


class ConfigError(Exception):
    """A configuration that cannot be used; `str()` is the one line shown to the operator."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*$")


def parse_address(value: str) -> Address:
    """`HOST:PORT` or `[IPV6]:PORT`; the port is required and must be 1..65535."""
    if not isinstance(value, str):
        raise ValueError("expected a string HOST:PORT")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {value!r}: expected [IPV6]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad address {value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad address {value!r}: expected HOST:PORT")
        if not _HOSTNAME.match(host):
            raise ValueError(f"bad address {value!r}: {host!r} is not a host name or address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {value!r}: port must be a number from 1 to 65535")
    return Address(host, int(port))


def _address(value: Any) -> Address:
    return value if isinstance(value, Address) else parse_address(value)


class _Section(BaseModel):
    # Unknown keys are errors: a typo like `pasword_env` must not silently drop a credential.
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ServerConfig(_Section):
    api_listen: Address = Field(default_factory=lambda: Address("127.0.0.1", 8470))
    tunnel_listen: Address = Field(default_factory=lambda: Address("127.0.0.1", 8471))
    data_dir: Path = Path("wg-data")
    store: str = "sqlite"
    # The URL clients use to reach the API (and the built-in issuer); derived from api_listen
    # when not given. Set it when central sits behind a reverse proxy.
    public_url: str | None = None
    # Where new access requests, held commands and decisions are POSTed (JSON with a
    # Slack-compatible `text`). The URL often carries a secret (Slack's do): it is never logged.
    webhook_url: str | None = None
    webhook_timeout: float = Field(default=5.0, gt=0, le=60)  # seconds per attempt
    # How long a statement held for review waits for a decision before it fails.
    review_timeout: int = Field(default=900, ge=1, le=86400)
    record_rows: int = Field(default=20, ge=0, le=1000)  # of each result, in recordings
    # Output of each SSH exec channel kept in its terminal recording (bytes); past it the
    # recording holds a marker and the count. Shells are always recorded whole.
    record_exec_output: int = Field(default=1 << 20, ge=0)

    _addr = field_validator("api_listen", "tunnel_listen", mode="before")(_address)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value == "sqlite" or value.startswith(("postgresql://", "postgresql+asyncpg://")):
            return value
        raise ValueError(f'{value!r} is neither "sqlite" nor a postgresql:// URL')

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s?#]+([/?][^\s]*)?$", value):
            # Not echoed: a webhook URL usually embeds its secret.
            raise ValueError("webhook_url is not an http(s) URL")
        return value


class UserConfig(_Section):
    name: str
    password: SecretStr | None = None
    password_hash: str | None = None
    groups: list[str] = []
    email: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of password or password_hash")
        if self.password_hash is not None and not self.password_hash.startswith("$argon2"):
            raise ValueError("password_hash must be an argon2 hash ($argon2id$...)")
        return self


class IdentityConfig(_Section):
    issuer: str = "builtin"
    audience: str = "watchgate"
    groups_claim: str = "groups"
    username_claim: str = "preferred_username"
    # The public (PKCE) client the CLI and the desktop app sign in with at the issuer.
    client_id: str = "watchgate-cli"
    access_token_ttl: int = Field(default=900, ge=60, le=86400)
    refresh_token_ttl: int = Field(default=30 * 86400, ge=300)
    users: list[UserConfig] = []

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        if value != "builtin" and not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", value):
            raise ValueError(f'{value!r} is neither "builtin" nor an http(s) URL')
        return value.rstrip("/")

    @model_validator(mode="after")
    def _users(self) -> Self:
        if self.users and self.issuer != "builtin":
            raise ValueError('users are only for the built-in issuer (issuer = "builtin")')
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate user name {_first_duplicate(names)!r}")
        return self


ResourceKind = Literal["postgres", "mysql", "ssh", "http"]
_CREDENTIAL_SOURCES = (
    "password",
    "password_env",
    "password_file",
    "private_key_file",
    "private_key_env",
)


class ResourceConfig(_Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    kind: ResourceKind
    address: Address
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    private_key_file: Path | None = None
    private_key_env: str | None = None
    host_key: str | None = None
    tls: Literal["disable", "require", "verify-full"] = "disable"
    # The CA that signs the target's certificate, for tls = "verify-full" against a private CA
    # (relative to the config file, like password_file); without it the system store is used.
    tls_ca_file: Path | None = None
    environment: str = ""
    description: str = ""

    _addr = field_validator("address", mode="before")(_address)

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        if self.kind in ("postgres", "mysql", "ssh") and not self.username:
            raise ValueError(f"a {self.kind} resource needs username")
        given = [k for k in _CREDENTIAL_SOURCES if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one credential source, not {' and '.join(given)}")
        if self.kind == "ssh" and not self.host_key:
            raise ValueError("an ssh resource needs host_key (the target's pinned host key)")
        if self.kind != "ssh" and any(k.startswith("private_key") for k in given):
            raise ValueError(f"private keys are for ssh resources, not {self.kind}")
        if self.tls_ca_file is not None and self.tls != "verify-full":
            # With "require" nothing is checked: a CA there would only look like protection.
            raise ValueError('tls_ca_file is only used with tls = "verify-full"')
        return self


class RoleConfig(_Section):
    name: str
    groups: list[str]
    resources: list[str]
    access: Literal["direct", "request"] = "direct"
    reviewers: list[str] = []
    approvals: int = Field(default=1, ge=1, le=10)
    auditor: bool = False
    admin: bool = False  # may review sessions (the replay viewer), like an auditor
    max_duration: int = Field(default=8 * 3600, ge=60)  # seconds: the longest access grant


class RuleConfig(_Section):
    name: str | None = None
    resources: list[str]
    action: Literal["block", "review", "mask", "allow"]
    statements: list[str] = []
    functions: list[str] = []
    commands: list[str] = []
    # ssh: path globs of SFTP/scp file operations (block rules only: a file operation cannot
    # wait for a reviewer, the client's request would time out).
    files: list[str] = []
    # ssh, allow rules: "host:port" globs that `ssh -L` / `ssh -D` may reach through the target;
    # port forwarding is refused unless an allow rule names the destination.
    forward: list[str] = []
    # ssh, allow rules: the client's ssh-agent may be used on the target (`ssh -A`).
    agent: bool = False
    columns: list[str] = []
    detectors: list[str] = []
    style: Literal["full", "partial", "hash", "null"] = "full"
    strict: bool = False
    on_copy: Literal["mask", "refuse"] = "mask"  # COPY ... TO STDOUT of masked columns
    shell: bool | None = None
    record_input: bool | None = None

    @model_validator(mode="after")
    def _matches_something(self) -> Self:
        if (self.forward or self.agent) and self.action != "allow":
            raise ValueError('forward and agent belong in rules with action = "allow"')
        if self.action == "mask":
            if not (self.columns or self.detectors or self.strict):
                raise ValueError("a mask rule needs columns, detectors or strict = true")
            unknown = sorted(set(self.detectors) - set(DETECTORS))
            if unknown:
                known = ", ".join(sorted(DETECTORS))
                raise ValueError(f"unknown detector {unknown[0]!r} (known: {known})")
            for pattern in self.columns:
                if not 2 <= pattern.count(".") + 1 <= 3 or "" in pattern.split("."):
                    raise ValueError(
                        f"column pattern {pattern!r} must be table.column or schema.table.column"
                    )
        elif self.action == "allow":
            if self.statements or self.functions or self.commands or self.files:
                raise ValueError(
                    "an allow rule takes forward, agent or record_input; statements, "
                    "functions, commands and files belong in block or review rules"
                )
            if not (self.forward or self.agent or self.record_input):
                raise ValueError("an allow rule needs forward, agent = true or record_input")
            for pattern in self.forward:
                if ":" not in pattern:
                    raise ValueError(f"forward pattern {pattern!r} must be host:port")
        elif not (
            self.statements
            or self.functions
            or self.commands
            or self.files
            or self.shell is False
            or self.record_input
        ):
            raise ValueError(
                f"a {self.action} rule needs statements, functions, commands, files, "
                "shell = false or record_input"
            )
        if self.files and self.action != "block":
            raise ValueError("files rules can only block (a file operation cannot wait for review)")
        return self


class Config(_Section):
    """The whole validated configuration; `path` is the file it came from."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    resources: list[ResourceConfig] = []
    roles: list[RoleConfig] = []
    rules: list[RuleConfig] = []
    path: Path = Path("watchgate.toml")
    # Held credentials by resource name, resolved at load time; never serialised.
    secrets: dict[str, SecretStr] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def data_dir(self) -> Path:
        return (self.path.parent / self.server.data_dir).resolve()

    @property
    def api_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url
        host = self.server.api_listen.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - mapping a wildcard bind to a dialable host
            host = "127.0.0.1"
        return f"http://{Address(host, self.server.api_listen.port)}"

    @property
    def issuer_url(self) -> str:
        return self.api_url if self.identity.issuer == "builtin" else self.identity.issuer

    @property
    def store_url(self) -> str:
        if self.server.store == "sqlite":
            return f"sqlite:///{self.data_dir / 'watchgate.db'}"
        return self.server.store

    def resource(self, name: str) -> ResourceConfig | None:
        return next((r for r in self.resources if r.name == name), None)


def _first_duplicate(items: list[str]) -> str:
    seen: set[str] = set()
    return next(i for i in items if i in seen or seen.add(i))  # type: ignore[func-returns-value]


def _cross_check(cfg: Config) -> None:
    """Checks that span sections: names must resolve, or a rule would silently not apply."""
    names = [r.name for r in cfg.resources]
    if len(names) != len(set(names)):
        raise _KeyProblem("resources", f"duplicate resource name {_first_duplicate(names)!r}")
    patterns = [("roles", i, r.resources) for i, r in enumerate(cfg.roles)]
    patterns += [("rules", i, r.resources) for i, r in enumerate(cfg.rules)]
    for section, i, resources in patterns:
        for j, pattern in enumerate(resources):
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                what = "matches no resource" if _is_glob(pattern) else "names an unknown resource"
                raise _KeyProblem(f"{section}[{i}].resources[{j}]", f"{pattern!r} {what}")
    role_names = [r.name for r in cfg.roles]
    if len(role_names) != len(set(role_names)):
        raise _KeyProblem("roles", f"duplicate role name {_first_duplicate(role_names)!r}")


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class _KeyProblem(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")


def _resolve_ca_files(cfg: Config) -> list[ResourceConfig]:
    """Resources with `tls_ca_file` made absolute (relative to the config file) and checked:
    the file must exist and hold at least one CA certificate."""
    resources = []
    for i, res in enumerate(cfg.resources):
        if res.tls_ca_file is not None:
            path = res.tls_ca_file
            full = (path if path.is_absolute() else cfg.path.parent / path).resolve()
            key = f"resources[{i}].tls_ca_file"
            if not full.is_file():
                raise _KeyProblem(key, f"{full} does not exist or is not a file")
            try:
                ssl.create_default_context(cafile=str(full))
            except (OSError, ssl.SSLError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise _KeyProblem(key, f"cannot load CA certificates from {full}: {why}") from None
            res = res.model_copy(update={"tls_ca_file": full})
        resources.append(res)
    return resources


def _resolve_secrets(cfg: Config) -> dict[str, SecretStr]:
    secrets: dict[str, SecretStr] = {}
    for i, res in enumerate(cfg.resources):
        key = f"resources[{i}]"
        if res.password is not None:
            secrets[res.name] = res.password
        for field in ("password_env", "private_key_env"):
            var = getattr(res, field)
            if var is not None:
                value = os.environ.get(var)
                if not value:
                    raise _KeyProblem(f"{key}.{field}", f"environment variable {var} is not set")
                secrets[res.name] = SecretStr(value)
        for field in ("password_file", "private_key_file"):
            path = getattr(res, field)
            if path is not None:
                full = path if path.is_absolute() else cfg.path.parent / path
                try:
                    text = full.read_text()
                except OSError as e:
                    raise _KeyProblem(
                        f"{key}.{field}", f"cannot read {full}: {e.strerror}"
                    ) from None
                secrets[res.name] = SecretStr(text.strip() if field == "password_file" else text)
    return secrets


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problem(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document; raises ConfigError with one line."""
    try:
        # `path` and `secrets` are ours, not the file's: refuse them as unknown keys.
        for own in ("path", "secrets"):
            if own in data:
                raise _KeyProblem(own, "unknown key")
        cfg = Config.model_validate({**data, "path": path.resolve()})
        _cross_check(cfg)
        return cfg.model_copy(
            update={"secrets": _resolve_secrets(cfg), "resources": _resolve_ca_files(cfg)}
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{path}: {_loc(err['loc'])}: {_problem(err)}") from None
    except _KeyProblem as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate the TOML file at `path`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, path)
