"""The suite's broker and database are the ones ``INSTALLMENTS_TEST_STACK`` chose.

``.ci/run`` runs the purchases-to-offers tests a second time with
``INSTALLMENTS_TEST_STACK=containers``; this test makes that run prove it talked to
containers (testcontainers), not to the local stack that is also up.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from tests import containers


def _host_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_the_stack_is_what_the_setting_chose(stack: tuple[str, str]) -> None:
    bootstrap, db_url = stack
    kafka_port = _host_port(bootstrap.split(",")[0])
    pg_port = urlsplit(db_url).port
    if not containers.wanted():
        from shared.localstack.stack import ensure_stack

        assert ensure_stack(need_postgres=True) == (bootstrap, db_url)
        return
    import docker

    published: dict[int, str] = {}
    for container in docker.from_env().containers.list():
        for bindings in (container.ports or {}).values():
            for binding in bindings or []:
                published[int(binding["HostPort"])] = container.attrs["Config"]["Image"]
    assert published.get(kafka_port) == os.environ.get("KAFKA_IMAGE", containers.KAFKA_IMAGE)
    assert pg_port is not None
    assert published.get(pg_port) == os.environ.get("POSTGRES_IMAGE", containers.POSTGRES_IMAGE)
