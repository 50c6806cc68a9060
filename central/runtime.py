"""The running central: everything the API, the tunnel and the protocol sessions share.

Built once at start-up from a validated Config; `close()` releases it. Nothing here does
I/O on import, so tests can build a Central around any config.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from central.api.events import EventBus
from central.config import Config
from central.identity.tokens import RemoteJwks, StaticKeys, TokenValidator
from central.idp.issuer import BuiltinIssuer
from central.idp.keys import SigningKeys
from central.idp.users import UserDirectory
from central.logs import AuditLog
from central.recording import Recorder
from central.sessions import SessionRegistry
from central.store import Store
from central.tls import TunnelTLS


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
        return cls(
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

    async def close(self) -> None:
        await self.recorder.close()
        await self.http.aclose()
        await self.store.close()
