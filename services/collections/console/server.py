"""Run the console: ``installments collections web`` (uvicorn, one process)."""

from __future__ import annotations

import uvicorn

from services.collections.console.agents import AgentDirectory
from services.collections.console.app import create_app
from services.collections.console.publisher import KafkaPublisher
from services.collections.console.settings import ConsoleSettings
from services.collections.policy import load_policy
from shared.runtime.db import make_engine
from shared.runtime.logging import configure_logging, get_logger


def serve(settings: ConsoleSettings, host: str | None = None, port: int | None = None) -> None:
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger(component="collections-console")
    if not settings.console_users_file:
        log.warning(
            "no INSTALLMENTS_CONSOLE_USERS_FILE: nobody can sign in"
            " (installments collections add-agent writes one)"
        )
    policy = load_policy(settings.policy_file)
    engine = make_engine(settings, "collections")
    publisher = KafkaPublisher(settings)
    app = create_app(
        settings,
        engine=engine,
        publisher=publisher,
        agents=AgentDirectory(settings.console_users_file),
        promise_max_days=int(getattr(policy, "promise_max_days", 30)),
    )
    host = host or settings.console_host
    port = settings.console_port if port is None else port
    log.info("collections console listening", host=host, port=port)
    try:
        # log_config=None: uvicorn's records go through the project's structlog chain
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    finally:
        publisher.close()
        engine.dispose()
