from collections.abc import Iterator

import pytest

from tests.support.pgcluster import AuthCluster, ClusterError, start_auth_cluster


@pytest.fixture(scope="session")
def auth_cluster() -> Iterator[AuthCluster]:
    """A throw-away PostgreSQL cluster that demands authentication (SCRAM, md5, password) and
    speaks TLS, shared by the whole session; see `tests.support.pgcluster`.

    Fails (never skips) when the PostgreSQL binaries are missing or the cluster cannot start.
    """
    try:
        with start_auth_cluster() as cluster:
            yield cluster
    except ClusterError as exc:
        pytest.fail(f"the throw-away PostgreSQL cluster is required: {exc}", pytrace=False)
