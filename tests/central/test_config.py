"""Config validation: each kind of mistake stops start-up with one line naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from central.config import ConfigError, load_config, parse_address

GOOD = """
[server]
api_listen = "127.0.0.1:8470"
tunnel_listen = "127.0.0.1:8471"
data_dir = "wg-data"
store = "sqlite"

[identity]
issuer = "builtin"
audience = "watchgate"

[[identity.users]]
name = "alice"
password = "pw"
groups = ["analysts"]

[[resources]]
name = "shop-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "shop"
username = "shop_reader"
password_env = "WG_TEST_SHOP_PASSWORD"
environment = "prod"

[[roles]]
name = "analyst"
groups = ["analysts"]
resources = ["shop-db"]
access = "direct"

[[rules]]
resources = ["shop-db"]
action = "block"
statements = ["drop", "truncate"]
"""


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WG_TEST_SHOP_PASSWORD", "s3cret-held")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchgate.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_good_config_loads_and_resolves_the_held_credential(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.resources[0].address.port == 5432
    assert cfg.secrets["shop-db"].get_secret_value() == "s3cret-held"
    assert cfg.data_dir == (tmp_path / "wg-data").resolve()
    # The credential never shows up in a printed config.
    assert "s3cret-held" not in repr(cfg) and "s3cret-held" not in str(cfg.model_dump())


def test_unknown_key(tmp_path: Path) -> None:
    text = GOOD.replace('password_env = "WG', 'pasword_env = "WG')
    assert error_of(tmp_path, text) == "resources[0].pasword_env: unknown key"


def test_unknown_top_level_section(tmp_path: Path) -> None:
    assert error_of(tmp_path, GOOD + "\n[serverr]\nx = 1\n") == "serverr: unknown key"


def test_missing_credential_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WG_TEST_SHOP_PASSWORD")
    assert error_of(tmp_path, GOOD) == (
        "resources[0].password_env: environment variable WG_TEST_SHOP_PASSWORD is not set"
    )


def test_unreadable_credential_file(tmp_path: Path) -> None:
    text = GOOD.replace('password_env = "WG_TEST_SHOP_PASSWORD"', 'password_file = "nope.txt"')
    msg = error_of(tmp_path, text)
    assert msg.startswith("resources[0].password_file: cannot read ")
    assert "No such file" in msg


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:0", "port must be a number from 1 to 65535"),
        ("127.0.0.1:70000", "port must be a number from 1 to 65535"),
        ("127.0.0.1:pg", "port must be a number from 1 to 65535"),
        ("bad host:5432", "is not a host name or address"),
        ("[::1:5432", "expected [IPV6]:PORT"),
    ],
)
def test_bad_address(tmp_path: Path, address: str, problem: str) -> None:
    msg = error_of(tmp_path, GOOD.replace('"127.0.0.1:5432"', f'"{address}"'))
    assert msg.startswith("resources[0].address: bad address")
    assert problem in msg


def test_bad_listen_address(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace('"127.0.0.1:8471"', '"localhost"'))
    assert msg == "server.tunnel_listen: bad address 'localhost': expected HOST:PORT"


def test_rule_names_unknown_resource(tmp_path: Path) -> None:
    text = GOOD.replace('resources = ["shop-db"]\naction', 'resources = ["shop-bd"]\naction')
    assert error_of(tmp_path, text) == "rules[0].resources[0]: 'shop-bd' names an unknown resource"


def test_rule_glob_matching_nothing(tmp_path: Path) -> None:
    text = GOOD.replace('resources = ["shop-db"]\naction', 'resources = ["crm-*"]\naction')
    assert error_of(tmp_path, text) == "rules[0].resources[0]: 'crm-*' matches no resource"


def test_role_names_unknown_resource(tmp_path: Path) -> None:
    text = GOOD.replace('resources = ["shop-db"]\naccess', 'resources = ["nope"]\naccess')
    assert error_of(tmp_path, text) == "roles[0].resources[0]: 'nope' names an unknown resource"


def test_invalid_toml(tmp_path: Path) -> None:
    assert error_of(tmp_path, GOOD + "\nname = \n").startswith("not valid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_wrong_type_and_value(tmp_path: Path) -> None:
    assert error_of(tmp_path, GOOD.replace('kind = "postgres"', 'kind = "oracle"')).startswith(
        "resources[0].kind: Input should be"
    )
    assert error_of(tmp_path, GOOD.replace('action = "block"', 'action = "permit"')).startswith(
        "rules[0].action: "
    )


def test_two_credential_sources(tmp_path: Path) -> None:
    text = GOOD.replace('environment = "prod"', 'environment = "prod"\npassword = "inline"')
    assert error_of(tmp_path, text) == (
        "resources[0]: give one credential source, not password and password_env"
    )


def test_ssh_needs_pinned_host_key(tmp_path: Path) -> None:
    text = GOOD + '\n[[resources]]\nname = "lab"\nkind = "ssh"\naddress = "h:22"\nusername = "u"\n'
    assert error_of(tmp_path, text) == (
        "resources[1]: an ssh resource needs host_key (the target's pinned host key)"
    )


def test_duplicate_resource(tmp_path: Path) -> None:
    block = GOOD[GOOD.index("[[resources]]") : GOOD.index("[[roles]]")]
    text = GOOD.replace("[[roles]]", block + "[[roles]]", 1)
    assert error_of(tmp_path, text) == "resources: duplicate resource name 'shop-db'"


def test_users_only_with_builtin_issuer(tmp_path: Path) -> None:
    text = GOOD.replace('issuer = "builtin"', 'issuer = "https://idp.example.com"')
    assert error_of(tmp_path, text) == (
        'identity: users are only for the built-in issuer (issuer = "builtin")'
    )


def test_store_url(tmp_path: Path) -> None:
    assert error_of(tmp_path, GOOD.replace('store = "sqlite"', 'store = "mysql://x"')) == (
        "server.store: 'mysql://x' is neither \"sqlite\" nor a postgresql:// URL"
    )


def test_ipv6_address() -> None:
    addr = parse_address("[::1]:5432")
    assert (addr.host, addr.port, str(addr)) == ("::1", 5432, "[::1]:5432")


def test_serve_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"127.0.0.1:5432"', '"127.0.0.1:99999"'))
    proc = subprocess.run(
        [sys.executable, "-m", "central.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"watchgate-central: config error: {path}: resources[0].address: bad address "
        "'127.0.0.1:99999': port must be a number from 1 to 65535"
    ]


MASK_RULE = '\n[[rules]]\nresources = ["shop-db"]\naction = "mask"\n'


def test_mask_rule_with_an_unknown_detector(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + MASK_RULE + 'detectors = ["email", "passport"]\n')
    assert msg.startswith("rules[1]: unknown detector 'passport' (known: ")


def test_mask_rule_column_pattern_needs_a_table(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + MASK_RULE + 'columns = ["ssn"]\n')
    assert msg == "rules[1]: column pattern 'ssn' must be table.column or schema.table.column"


def test_mask_rule_needs_something_to_mask(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD + MASK_RULE)
    assert msg == "rules[1]: a mask rule needs columns, detectors or strict = true"
