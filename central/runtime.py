"""The running central: everything the API, the tunnel and the protocol sessions share.

Built once at start-up from a validated Config; `close()` releases it. Nothing here does
I/O on import, so tests can build a Central around any config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from central.api.events import EventBus
from central.approvals import Approvals, Webhook
from central.config import Config, ConfigError, load_config
from central.identity.tokens import RemoteJwks, StaticKeys, TokenValidator
from central.idp.issuer import BuiltinIssuer
from central.idp.keys import SigningKeys
from central.idp.users import UserDirectory
from central.logs import AuditLog, get_logger
from central.policy.rules import SqlPolicy
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

    @classmethod
    async def start(cls, config: Config) -> Central:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        _warn_unenforced(config)
        return central

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
        _warn_unenforced(config)
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


def _warn_unenforced(config: Config) -> None:
    # Masking is not in this release: say so loudly rather than let a rule look in force.
    for i, rule in enumerate(config.rules):
        if rule.action == "mask":
            log.warning(
                "rule %s (mask) is NOT enforced: masking is not part of this release",
                rule.name or f"rules[{i}]",
            )
