"""localproxy.sshfront: the disconnect an SSH client gets when central refuses, and the keys
`watchgate connect` hands to OpenSSH.

Packets are decoded with asyncssh's own packet reader, not with code from the module under
test. The refusal and the key files are checked with the real OpenSSH client (``ssh``,
``ssh-keygen``) and with asyncssh as a client and as a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest
from asyncssh.packet import SSHPacket
from hypothesis import given
from hypothesis import strategies as st

from localproxy import sshfront
from localproxy.sshfront import (
    SERVER_IDENTIFICATION,
    Reason,
    describe,
    disconnect_packet,
    key_fingerprint,
    known_hosts_text,
    new_client_key,
    reason_for,
)
from tests.support.clients import Result, client_env, openssh, run
from tests.support.sshd import keygen

# -- the disconnect packet ----------------------------------------------------------------------


def decode(packet: bytes) -> tuple[int, str, str]:
    """Check the framing of an unencrypted binary packet (RFC 4253 §6) and decode the
    SSH_MSG_DISCONNECT in it: (reason code, description, language tag)."""
    length, padding = struct.unpack("!IB", packet[:5])
    assert len(packet) == 4 + length, "one packet, nothing after it"
    assert len(packet) % 8 == 0 and len(packet) >= 16
    assert 4 <= padding <= 255
    body = SSHPacket(packet[5 : 4 + length - padding])
    assert body.get_byte() == 1  # SSH_MSG_DISCONNECT
    code = body.get_uint32()
    description = body.get_string().decode("utf-8")
    language = body.get_string().decode("ascii")
    body.check_end()
    return code, description, language


def test_disconnect_packet_carries_the_code_and_the_text() -> None:
    packet = disconnect_packet(14, "lab needs an approved access request")
    assert decode(packet) == (14, "lab needs an approved access request", "")


def test_disconnect_padding_is_random() -> None:
    text = "x" * 20  # a payload length that needs more than the minimum padding
    assert disconnect_packet(11, text) != disconnect_packet(11, text)
    fixed = disconnect_packet(11, text, random=lambda n: b"\0" * n)
    assert fixed == disconnect_packet(11, text, random=lambda n: b"\0" * n)


@given(st.integers(0, 2**32 - 1), st.text())
def test_any_text_makes_a_well_formed_packet_with_the_described_text(code: int, text: str) -> None:
    got_code, description, _ = decode(disconnect_packet(code, text))
    assert got_code == code
    assert description == describe(text)


@given(st.text())
def test_described_text_is_one_short_printable_ascii_line(text: str) -> None:
    line = describe(text)
    assert len(line) <= sshfront.MAX_DESCRIPTION
    assert all(" " <= ch <= "~" for ch in line), line
    assert line == line.strip() and "  " not in line


DESCRIBED = {
    "escape sequences": ("red\x1b[31m alert\x07", "red [31m alert"),
    "line breaks": ("one\r\ntwo\u2028three", "one two three"),
    "bidi override": ("abc\u202edef", "abc def"),
    "accents": ("café naïve", "cafe naive"),
    "no ASCII form": ("“quoted” …", "?quoted? ..."),
    "lone surrogate": ("a\ud800b", "a b"),
}


@pytest.mark.parametrize("text,line", DESCRIBED.values(), ids=DESCRIBED.keys())
def test_describe_cleans_what_central_sends(text: str, line: str) -> None:
    assert describe(text) == line


def test_describe_cuts_long_text() -> None:
    line = describe("word " * 100)
    assert len(line) == sshfront.MAX_DESCRIPTION
    assert line == ("word " * 100)[:197] + "..."


def test_central_codes_map_to_reasons() -> None:
    assert reason_for("token") == Reason.NO_MORE_AUTH_METHODS_AVAILABLE == 14
    assert reason_for("forbidden") == reason_for("pending") == reason_for("request_needed") == 14
    assert reason_for("target") == Reason.SERVICE_NOT_AVAILABLE == 7
    assert reason_for("recording") == reason_for("protocol") == 7
    assert reason_for("something new") == Reason.BY_APPLICATION == 11


# -- refusing a real client ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def refusing(reason: int, text: str) -> AsyncIterator[tuple[int, list[float]]]:
    """A server that refuses every connection with sshfront.refuse; yields its port and the
    times (monotonic) at which each refusal was done."""
    finished: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await sshfront.refuse(reader, writer, reason, text)
        finally:
            writer.close()
            finished.append(time.monotonic())

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], finished
    finally:
        server.close()
        await server.wait_closed()


def printed_disconnect(result: Result) -> tuple[int, str]:
    """OpenSSH's line for a received disconnect: (code, text)."""
    found = re.search(
        r"^Received disconnect from 127\.0\.0\.1 port \d+:(\d+): (.*?)\r?$",
        result.stderr,
        re.MULTILINE,
    )
    assert found, result.stderr
    return int(found.group(1)), found.group(2)


@pytest.mark.parametrize("reason", list(Reason))
async def test_openssh_prints_the_reason_and_exits_255(reason: Reason, tmp_path: Path) -> None:
    text = "lab: ssh resources are not served yet"
    async with refusing(reason, text) as (port, finished):
        result = await openssh(port, tmp_path)
        assert result.code == 255 and result.stdout == ""
        assert printed_disconnect(result) == (reason, text)
        # The refusal ends when the client hangs up, not at the linger timeout.
        ended = time.monotonic()
        for _ in range(100):
            if finished:
                break
            await asyncio.sleep(0.02)
        assert finished and finished[0] - ended < 2


async def test_openssh_prints_hostile_text_as_one_clean_line(tmp_path: Path) -> None:
    hostile = "denied\r\nReceived disconnect from 10.0.0.1\x1b[2J: café " + "x" * 400
    async with refusing(11, hostile) as (port, _):
        result = await openssh(port, tmp_path)
    code, text = printed_disconnect(result)
    assert (code, text) == (11, describe(hostile))
    assert text.startswith("denied Received disconnect from 10.0.0.1 [2J: cafe xxx")
    assert len(text) == 200 and text.endswith("...")
    # The text inside ours cannot start a line of its own.
    assert [line for line in result.stderr.splitlines() if "disconnect" in line.lower()] == [
        f"Received disconnect from 127.0.0.1 port {port}:11: {text}",
        f"Disconnected from 127.0.0.1 port {port}",
    ]


@pytest.mark.parametrize(
    "reason,error",
    [
        (Reason.NO_MORE_AUTH_METHODS_AVAILABLE, asyncssh.PermissionDenied),
        (Reason.SERVICE_NOT_AVAILABLE, asyncssh.ServiceNotAvailable),
        (Reason.BY_APPLICATION, asyncssh.DisconnectError),
    ],
)
async def test_asyncssh_client_gets_the_reason(
    reason: Reason, error: type[asyncssh.DisconnectError]
) -> None:
    async with refusing(reason, "sign-in refused: expired") as (port, _):
        with pytest.raises(error) as caught:
            await asyncio.wait_for(
                asyncssh.connect("127.0.0.1", port, known_hosts=None, username="x"), 15
            )
    assert caught.value.code == reason
    assert caught.value.reason.startswith("sign-in refused: expired")


async def raw_refusal(*, send: bytes, close: bool) -> tuple[bytes, float]:
    """What a raw client that sends `send` (and closes its side when `close`) receives, and how
    long the refusal took on the server side."""
    async with refusing(14, "no") as (port, finished):
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(send)
        if close:
            writer.write_eof()
        received = await asyncio.wait_for(reader.read(), 15)
        for _ in range(200):
            if finished:
                break
            await asyncio.sleep(0.02)
        writer.close()
    assert finished, "the refusal did not end"
    return received, finished[0] - started


def split_refusal(received: bytes) -> tuple[int, str]:
    assert received.startswith(SERVER_IDENTIFICATION)
    code, text, _ = decode(received[len(SERVER_IDENTIFICATION) :])
    return code, text


async def test_a_silent_client_is_refused_after_bounded_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sshfront, "IDENTIFICATION_TIMEOUT", 0.3)
    monkeypatch.setattr(sshfront, "LINGER_TIMEOUT", 0.3)
    received, took = await raw_refusal(send=b"", close=False)
    assert split_refusal(received) == (14, "no")
    assert 0.5 < took < 3


async def test_a_client_that_floods_without_a_line_is_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sshfront, "LINGER_TIMEOUT", 0.3)
    received, took = await raw_refusal(send=b"A" * 300_000, close=False)
    assert split_refusal(received) == (14, "no")
    assert took < 3  # read at most 255 + LINGER_BYTES of it, then gave up


async def test_a_client_that_closes_at_once_ends_the_refusal_at_once() -> None:
    received, took = await raw_refusal(send=b"SSH-2.0-Test\r\n", close=True)
    assert split_refusal(received) == (14, "no")
    assert took < 2


# -- keys ---------------------------------------------------------------------------------------


def ssh_keygen_fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, check=True)
    return out.stdout.decode().split()[1]


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_fingerprint_is_the_one_ssh_keygen_shows(kind: str, tmp_path: Path) -> None:
    line = keygen(tmp_path / "key", "a comment", kind)
    assert key_fingerprint(line) == ssh_keygen_fingerprint(tmp_path / "key.pub")


MALFORMED_KEYS = {
    "empty": "",
    "type only": "ssh-ed25519",
    "not base64": "ssh-ed25519 !!!!",
    "truncated blob": "ssh-ed25519 AAAA",
    "blob of another type": "ssh-rsa " + new_client_key().public_line.split()[1],
}


@pytest.mark.parametrize("line", MALFORMED_KEYS.values(), ids=MALFORMED_KEYS.keys())
def test_malformed_key_lines_are_value_errors(line: str) -> None:
    with pytest.raises(ValueError):
        key_fingerprint(line)


@given(st.text())
def test_key_fingerprint_of_any_text_is_a_fingerprint_or_value_error(line: str) -> None:
    try:
        fingerprint = key_fingerprint(line)
    except ValueError:
        return
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint)


KEY = new_client_key().public_line
OTHER = new_client_key().public_line


def test_known_hosts_line_is_added_for_the_port() -> None:
    kind, blob = KEY.split()
    assert known_hosts_text("", 15022, KEY) == f"[127.0.0.1]:15022 {kind} {blob}\n"
    assert known_hosts_text("", 22, KEY) == f"127.0.0.1 {kind} {blob}\n"  # OpenSSH's form


def test_known_hosts_line_for_the_port_is_replaced_and_the_rest_kept() -> None:
    existing = "\n".join(
        [
            "# my hosts",
            f"[127.0.0.1]:15023 {OTHER}",
            f"[127.0.0.1]:15022 {OTHER}",
            f"example.org,[127.0.0.1]:15022 {OTHER} kept for example.org",
            "",
            "|1|hashed= ssh-ed25519 AAAA",
        ]
    )
    updated = known_hosts_text(existing, 15022, KEY)
    assert updated.splitlines() == [
        "# my hosts",
        f"[127.0.0.1]:15023 {OTHER}",
        f"example.org {OTHER} kept for example.org",
        "",
        "|1|hashed= ssh-ed25519 AAAA",
        f"[127.0.0.1]:15022 {KEY}",
    ]
    assert known_hosts_text(updated, 15022, KEY) == updated  # idempotent: never duplicated


def test_known_hosts_line_drops_the_comment_of_the_key() -> None:
    line = known_hosts_text("", 15022, f"{KEY} comment\n[127.0.0.1]:15022 evil")
    assert line == f"[127.0.0.1]:15022 {KEY}\n"


def test_client_key_is_an_openssh_key_file_of_its_public_line(tmp_path: Path) -> None:
    key = new_client_key()
    assert re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/]+=*", key.public_line)
    assert key.private_openssh.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert "PRIVATE KEY" not in repr(key)
    path = tmp_path / "id"
    path.write_bytes(key.private_openssh)
    path.chmod(0o600)
    out = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, check=True)
    assert out.stdout.decode().split() == key.public_line.split()
    assert new_client_key().public_line != key.public_line


async def test_openssh_signs_in_with_the_client_key_and_trusts_the_known_hosts_line(
    tmp_path: Path,
) -> None:
    """The files `watchgate connect` writes, used as the printed command uses them, against
    an SSH server (asyncssh) that accepts only the client key and has the pinned host key."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client = new_client_key()
    key_file = tmp_path / "client.key"
    key_file.write_bytes(client.private_openssh)
    key_file.chmod(0o600)

    async def handle(process: asyncssh.SSHServerProcess[str]) -> None:
        process.stdout.write(f"signed in as {process.get_extra_info('username')}\n")
        process.exit(0)

    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(client.public_line),
        process_factory=handle,
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"

    async def ssh() -> Result:
        return await run(
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(port),
            "alice@127.0.0.1",
            "-i",
            str(key_file),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "true",
            env=client_env(tmp_path / "home"),
            timeout=30,
        )

    try:
        public = host_key.export_public_key("openssh").decode()
        known_hosts.write_text(known_hosts_text("", port, public))
        ok = await ssh()
        assert ok.code == 0, ok
        assert ok.stdout == "signed in as alice\n"

        known_hosts.write_text(known_hosts_text("", port, OTHER))  # another key pinned
        changed = await ssh()
        assert changed.code == 255 and changed.stdout == ""
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
    finally:
        server.close()
        await server.wait_closed()
