"""The running central: everything the API, the tunnel and the protocol sessions share.

Built once at start-up from a validated Config; `close()` releases it. Nothing here does
I/O on import, so tests can build a Central around any config.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import httpx

from central.api.events import EventBus
from central.approvals import Approvals, Webhook
from central.config import Config, ConfigError, load_config
from central.identity.tokens import RemoteJwks, StaticKeys, TokenValidator
from central.idp.issuer import BuiltinIssuer
from central.idp.keys import SigningKeys
from central.idp.users import UserDirectory
from central.logs import AuditLog, get_logger
from central.masking.policy import Masking, rules_for
from central.policy.rules import SqlPolicy
from central.protocols.postgres.catalog import CatalogCache
from central.recording import Recorder
from central.sessions import SessionRegistry
from central.store import Store
from central.tls import TunnelTLS

log = get_logger(__name__)


@dataclass
class Central:
    config: Config
    store: Store
    validator: TokenValidator
    events: EventBus
    audit: AuditLog
    issuer: BuiltinIssuer | None
    http: httpx.AsyncClient
    tls: TunnelTLS
    recorder: Recorder
    sessions: SessionRegistry
    # Built in start() around this Central, so that it always reads the config in force.
    approvals: Approvals = field(init=False)
    policy: SqlPolicy = field(init=False)
    catalogs: CatalogCache = field(default_factory=CatalogCache)
    masking_key: bytes = field(default=b"", repr=False)
    # The private host key central terminates SSH with; clients pin its fingerprint.
    ssh_host_key: asyncssh.SSHKey = field(init=False, repr=False)
    _maskings: dict[str, Masking | None] = field(default_factory=dict, repr=False)

    @classmethod
    async def start(cls, config: Config) -> Central:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Before anything opens: a broken key stops start-up with nothing to release.
        ssh_host_key = load_or_create_ssh_host_key(config.data_dir)
        store = await Store.open(config.store_url)
        audit = AuditLog(config.data_dir / "audit.jsonl")
        http = httpx.AsyncClient(follow_redirects=False)
        ident = config.identity
        issuer: BuiltinIssuer | None = None
        if ident.issuer == "builtin":
            keys = SigningKeys.load_or_create(config.data_dir)
            issuer = BuiltinIssuer(config, keys, UserDirectory(ident.users), store, audit)
            key_source: StaticKeys | RemoteJwks = StaticKeys(keys.public_set)
        else:
            key_source = RemoteJwks(ident.issuer, http)
        validator = TokenValidator(
            config.issuer_url,
            ident.audience,
            key_source,
            groups_claim=ident.groups_claim,
            username_claim=ident.username_claim,
        )
        tls = TunnelTLS.load_or_create(config.data_dir, config.server.tunnel_listen.host)
        recorder = Recorder(store)
        recorder.start()
        central = cls(
            config,
            store,
            validator,
            EventBus(),
            audit,
            issuer,
            http,
            tls,
            recorder,
            SessionRegistry(),
        )
        server = config.server
        webhook = None
        if server.webhook_url is not None:
            webhook = Webhook(server.webhook_url, timeout=server.webhook_timeout)
        central.approvals = Approvals(
            lambda: central.config, store, central.events, audit, webhook=webhook
        )
        central.approvals.start()
        central.policy = SqlPolicy(config)
        central.masking_key = load_or_create_masking_key(config.data_dir)
        central.ssh_host_key = ssh_host_key
        return central

    def masking(self, resource: str) -> Masking | None:
        """The mask rules in force for `resource`, compiled once per configuration."""
        if resource not in self._maskings:
            rules = rules_for(resource, self.config.rules)
            self._maskings[resource] = Masking(rules, self.masking_key) if rules else None
        return self._maskings[resource]

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP): roles, rules and resources apply to the next
        decision, live sessions included. An invalid file changes nothing; it is logged."""
        try:
            config = load_config(self.config.path)
        except ConfigError as e:
            log.error("reload refused, the policy in force stays: %s", e)
            return False
        unchanged = ("server", "identity")
        changed = [k for k in unchanged if getattr(config, k) != getattr(self.config, k)]
        if changed:
            log.warning("reload: changes to [%s] take effect at restart", ", ".join(changed))
            config = config.model_copy(update={k: getattr(self.config, k) for k in changed})
        self.policy = SqlPolicy(config)
        self.config = config
        self._maskings = {}
        log.info(
            "reloaded %s: %d resources, %d roles, %d rules",
            config.path,
            len(config.resources),
            len(config.roles),
            len(config.rules),
        )
        return True

    async def close(self) -> None:
        await self.approvals.close()
        await self.audit.drain()
        await self.recorder.close()
        await self.http.aclose()
        await self.store.close()


def load_or_create_masking_key(data_dir: Path) -> bytes:
    """The key of the hash masking style: 32 random bytes in the data directory (0600).

    It lives beside central, never in the store: whoever reads the store (an auditor, a
    backup) must not be able to test guesses against the tokens in recorded results.
    """
    path = data_dir / "keys" / "masking.key"
    if path.exists():
        key = path.read_bytes()
        if len(key) < 16:
            raise ConfigError(f"{path}: the masking key is shorter than 16 bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def load_or_create_ssh_host_key(data_dir: Path) -> asyncssh.SSHKey:
    """Central's SSH host key: ``keys/ssh_host_ed25519`` (OpenSSH format, 0600), made at first
    start and read on every later one.

    Clients pin its fingerprint, so a file that cannot be read or is not a private key stops
    start-up (ConfigError) and is never replaced: a new key would make every client refuse
    central as an impostor. Whoever means to change the key removes the file.
    """
    path = data_dir / "keys" / "ssh_host_ed25519"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key("openssh"))
        return key
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the SSH host key: {e.strerror or e}") from None
    try:
        return asyncssh.import_private_key(data)
    except ValueError as e:  # asyncssh's KeyImportError is one
        raise ConfigError(
            f"{path}: not a usable SSH private key ({e}); restore it, or remove it to make a "
            "new one (clients that pinned the old key will then refuse central until their "
            "pin is removed)"
        ) from None
