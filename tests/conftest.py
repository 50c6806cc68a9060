import os
from collections.abc import Iterator

import pytest

from tests.support.oidc_provider import ExternalIssuer, start_oidc_provider

# Qt without a display: the desktop app's tests run headless (screenshots use Xvfb instead).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def external_issuer() -> Iterator[ExternalIssuer]:
    """npm's oidc-provider on a free loopback port, shared by the whole session.

    Fails (never skips) when Node.js or `npm ci --prefix tests/oidc_provider` is missing.
    """
    with start_oidc_provider() as issuer:
        yield issuer
