"""Opening the target SSH server with the credential that only central holds.

The client authenticated to central (OIDC), never to the target host: central opens its own
SSH connection, as the resource's user, with the held private key or password. What comes back
is an authenticated `asyncssh.SSHClientConnection` on which central opens the channels the
client asks for (exec, shell, SFTP, forwarding), each one seen by policy and recorded.

The target is identified by the host key pinned in the resource (``host_key``, one OpenSSH
public key line), and by nothing else: no known_hosts file, no CA, no trust on first use. Key
exchange offers only the pinned key's algorithms, so an honest server presents exactly that
key, and any other key ends the connection before a credential is sent - an impostor never
sees even a signature made with the held key.

Nothing of the machine central runs on takes part: not ``~/.ssh/config``, not
``~/.ssh/id_*``, not ``~/.ssh/known_hosts``, not an SSH agent. The connection is made from the
resource's configuration alone, so it behaves the same under any user and in any container.

Failures become one-line `SshTargetError`s naming the resource. Text from the target (a
disconnect reason) is cleaned like the PostgreSQL path's, and the held credential never appears
in a message.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import asyncssh

from central.config import Address, ResourceConfig
from central.protocols.errors import clean_text, describe_os_error

TARGET_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
]


@dataclass(frozen=True)
class SshTargetSpec:
    """Where, as whom and with what central logs in for one SSH resource.

    Exactly one of `password` and `private_key` (the key file's TEXT, OpenSSH or PEM format,
    unencrypted) is normally set; neither appears in the repr. `host_key` is the pinned public
    host key line, e.g. ``ssh-ed25519 AAAAC3Nza... comment``.
    """

    resource: str
    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    private_key: str | None = field(repr=False)
    host_key: str


class SshTargetError(Exception):
    """Central could not open the SSH target: one line, ``"{resource}: {cause}"``."""

    def __init__(self, resource: str, cause: str) -> None:
        super().__init__(f"{resource}: {cause}")
        self.resource = resource
        self.cause = cause


def spec_for(resource: ResourceConfig, secret: str | None) -> SshTargetSpec:
    """The spec for an ``ssh`` resource; `secret` is its resolved held credential.

    The config loader resolves either kind of credential into ``Config.secrets[name]``; which
    one it is follows from the source the resource names: ``private_key_file`` or
    ``private_key_env`` hold a private key, anything else a password.
    """
    if resource.kind != "ssh":
        raise ValueError(f"{resource.name} is a {resource.kind} resource, not ssh")
    # The config validator guarantees both for ssh resources; checked again for the type.
    if resource.username is None or resource.host_key is None:
        raise ValueError(f"{resource.name}: an ssh resource needs username and host_key")
    is_key = resource.private_key_file is not None or resource.private_key_env is not None
    return SshTargetSpec(
        resource=resource.name,
        host=resource.address.host,
        port=resource.address.port,
        user=resource.username,
        password=None if is_key else secret,
        private_key=secret if is_key else None,
        host_key=resource.host_key,
    )


class _PinnedHostClient(asyncssh.SSHClient):
    """Remembers what the error messages need: whether TCP got through, and the host key a
    target offered when it was not the pinned one.

    asyncssh asks `validate_host_public_key` only about keys outside the trusted set (here: the
    pinned key); answering False keeps the refusal, and the key is kept for the message.
    """

    def __init__(self) -> None:
        self.connected = False
        self.offered: asyncssh.SSHKey | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.connected = True

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        return False


async def connect_target(
    spec: SshTargetSpec,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for connect, key exchange and auth
) -> asyncssh.SSHClientConnection:
    """Connect to the target, check its pinned host key and log in with the held credential.

    `timeout` bounds everything up to a logged-in connection (TCP connect, key exchange and
    authentication). Raises `SshTargetError`; the caller owns the connection it returns and
    closes it (``conn.close(); await conn.wait_closed()``).
    """
    where = str(Address(spec.host, spec.port))

    def fail(cause: str) -> SshTargetError:
        return SshTargetError(spec.resource, cause)

    try:
        pinned = asyncssh.import_public_key(spec.host_key)
    except (asyncssh.KeyImportError, ValueError):
        raise fail("host_key is not an OpenSSH public key line") from None

    client_keys: list[asyncssh.SSHKey] = []
    if spec.private_key is not None:
        try:
            client_keys.append(asyncssh.import_private_key(spec.private_key))
        except (asyncssh.KeyImportError, ValueError):
            # asyncssh's reason is not shown: it is about the key text, which stays out of logs.
            raise fail("the held private key cannot be read (it must be unencrypted)") from None
        preferred_auth = ["publickey"]
    else:
        # OpenSSH servers with PAM ask for the password by keyboard-interactive; asyncssh
        # answers that single prompt with `password` too.
        preferred_auth = ["password", "keyboard-interactive"]

    client = _PinnedHostClient()
    try:
        return await asyncssh.connect(
            spec.host,
            spec.port,
            client_factory=lambda: client,
            username=spec.user,
            password=spec.password,
            client_keys=client_keys or None,
            preferred_auth=preferred_auth,
            # Pinned: exactly one trusted key (no CAs, nothing revoked), and only its algorithms
            # in key exchange, so a server with several host keys presents the pinned one.
            known_hosts=([pinned], [], []),
            server_host_key_algs=[alg.decode("ascii") for alg in pinned.sig_algorithms],
            # Nothing from the machine central runs on: no ~/.ssh/config, agent, default keys
            # or X.509 trust store.
            config=None,
            agent_path=None,
            x509_trusted_certs=None,
            x509_trusted_cert_paths=None,
            connect_timeout=timeout,
            # AES-GCM first (fastest here by far); the rest for targets without it.
            encryption_algs=TARGET_CIPHERS,
        )
    except asyncssh.HostKeyNotVerifiable:
        if client.offered is not None:
            offered = client.offered.get_fingerprint("sha256")
            raise fail(
                "the target's host key does not match the pinned host_key "
                f"(it offered {client.offered.get_algorithm()} {offered})"
            ) from None
        raise fail("the target's host key does not match the pinned host_key") from None
    except asyncssh.PermissionDenied:
        raise fail("the target refused the held credential") from None
    except asyncssh.ConnectionLost:
        raise fail("the target closed the connection during the SSH handshake") from None
    except asyncssh.Error as exc:
        reason = clean_text(exc.reason or type(exc).__name__, secret=spec.password)
        raise fail(f"SSH error: {reason}") from None
    except TimeoutError:
        raise fail("target timed out") from None
    except socket.gaierror as exc:
        raise fail(f"cannot resolve {spec.host}: {describe_os_error(exc)}") from None
    except OSError as exc:
        if client.connected:
            # OpenSSH drops the connection without a word when key exchange finds nothing in
            # common, e.g. no host key of the pinned type: its log says "Unable to negotiate".
            why = describe_os_error(exc)
            raise fail(
                f"the target closed the connection during the SSH handshake ({why})"
            ) from None
        raise fail(f"cannot reach {where}: {describe_os_error(exc)}") from None
