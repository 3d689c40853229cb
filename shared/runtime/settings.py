"""One typed settings object per process, read from the environment.

Every variable has the prefix ``INSTALLMENTS_`` except the two that the wider
ecosystem already names: ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` (the
prefixed spellings work too). The table in README.md lists them all.

Secrets stay out of text: ``repr()``/``str()`` show the database URL with its
password masked, ``kafka_sasl_password`` is a ``SecretStr``, and a refused setting
never echoes its value (pydantic's ``input_value`` is hidden: a refused DATABASE_URL
would otherwise be printed, password included, by a failing start-up).

``environment = "production"`` refuses: SQLite, Kafka without TLS (``PLAINTEXT`` and
``SASL_PLAINTEXT``: a SASL password must not cross the network in clear), and a
PostgreSQL URL without ``sslmode=require``, ``verify-ca`` or ``verify-full`` in its
query (``verify-full`` is recommended: it also checks the server's host name).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.registry import consumer_group

DEFAULT_SQLITE_URL = "sqlite:///.data/{service}.sqlite3"

#: PostgreSQL ``sslmode`` values accepted in production (``verify-full`` recommended).
PRODUCTION_SSLMODES = ("require", "verify-ca", "verify-full")
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def mask_url_password(url: str) -> str:
    """``url`` with its password (user info or ``password=`` query value) as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<not shown>"
    masked = url
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        masked = masked.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:***@{host}", 1)
    if parts.query:
        query = "&".join(_mask_query_item(item) for item in parts.query.split("&"))
        if query != parts.query:
            head, mark, _ = masked.rpartition("?" + parts.query)
            masked = f"{head}?{query}{masked[len(head) + len(mark) :]}"
    return masked


def _mask_query_item(item: str) -> str:
    key = item.split("=", 1)[0]
    return f"{key}=***" if key.lower() in _SECRET_QUERY_KEYS else item


def _sslmode(url: str) -> str | None:
    """The ``sslmode`` query value of a database URL (the last one wins, as in libpq)."""
    try:
        values = parse_qs(urlsplit(url).query).get("sslmode")
    except ValueError:
        return None
    return values[-1] if values else None


class Settings(BaseSettings):
    """Process-wide settings, validated at start."""

    model_config = SettingsConfigDict(
        env_prefix="INSTALLMENTS_",
        extra="ignore",
        populate_by_name=True,
        # A validation error must never print the value it refused (DATABASE_URL holds
        # a password): without this pydantic adds ``input_value=...`` to the message.
        hide_input_in_errors=True,
    )

    environment: Literal["development", "test", "production"] = "development"

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "INSTALLMENTS_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # e.g. SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None  # never printed by repr()
    kafka_ssl_cafile: str | None = None
    topic_prefix: str = ""  # namespaces every topic (tests, shared clusters); "" in production
    topic_partitions: int = Field(6, ge=1)
    topic_replication: int = Field(1, ge=1)
    max_message_bytes: int = Field(65536, ge=1024)
    #: The largest record the services' producers send; the local stack gives the broker
    #: the same ``message.max.bytes``. A dead letter is cut to fit it.
    kafka_max_request_bytes: int = Field(1048576, ge=65536)
    #: A record that made the process die this many times is dead-lettered at the next
    #: start instead of being tried again (counted in the database).
    poison_max_attempts: int = Field(3, ge=1)

    # --- consumer runtime ------------------------------------------------
    poll_max_records: int = Field(1000, ge=1)
    poll_timeout_ms: int = Field(200, ge=1)
    session_timeout_ms: int = Field(10000, ge=1000)
    max_poll_interval_ms: int = Field(300000, ge=1000)
    #: Kafka's fetch.min.bytes / fetch.max.wait.ms for the services' consumers: the broker
    #: answers a fetch once this many bytes wait, or after this long. Each batch costs a
    #: database transaction of fixed cost (about 5 ms of CPU), so under a trickle of
    #: records a loop that takes whatever arrived spends a core on tiny batches.
    #: The wait is 100 ms, not Kafka's 500: at 2,000/s the offers hop stalled for up to
    #: the full wait now and then (kafka-python has one fetch in flight per broker; one
    #: that only covers quiet partitions is held that long), p99 +300-500 ms.
    fetch_min_bytes: int = Field(1, ge=1)
    fetch_max_wait_ms: int = Field(100, ge=0)
    retry_backoff_max_s: float = Field(30.0, gt=0)
    loop_stall_timeout_s: float = Field(300.0, gt=0)  # watchdog: exit if the loop stalls
    #: Write and publish batch N on a writer thread while the loop polls and decodes
    #: batch N+1 (shared.runtime.runner, steps 6-10); PostgreSQL only. Off by default:
    #: proven exactly-once, but ~10 % slower for offers on a 2-core machine (the writer
    #: takes the GIL from the loop; docs/benchmarks, "#16 database overlap").
    write_overlap: bool = False

    # --- database --------------------------------------------------------
    # A plain str for the code that reads it; repr() masks its password (__repr_args__).
    database_url: str = Field(
        DEFAULT_SQLITE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "INSTALLMENTS_DATABASE_URL"),
    )
    auto_migrate: bool = True

    # --- retention (README "Retention"; shared/runtime/retention.py) -------
    #: Inbox rows (dedupe ids) older than this are pruned. At least the topics'
    #: retention (Kafka's default: 7 days): every record still in a topic then has its
    #: dedupe row, so replaying a whole topic stays exactly once. 35 days also covers a
    #: monthly cycle and a producer re-sending an event weeks later.
    retention_inbox_days: int = Field(35, ge=1)
    #: Finished plans, closed plans' reminders and cured or closed cases move to the
    #: ``*_archive`` tables this many days (business dates) after they finished.
    retention_archive_after_days: int = Field(90, ge=1)
    #: Rows a retention step deletes or moves per transaction (short locks).
    retention_chunk_rows: int = Field(2000, ge=1)

    # --- operations ------------------------------------------------------
    http_port: int | None = Field(None, ge=0, le=65535)  # health + metrics; None = off
    #: Where the health/metrics server (and the lag exporter) listens: loopback by
    #: default; containers set 0.0.0.0 (docker-compose.yml) so their port can be mapped.
    http_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    policy_file: str | None = None  # YAML with business-rule overrides

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs PostgreSQL: set DATABASE_URL")
            if self.kafka_security_protocol == "PLAINTEXT":
                raise ValueError(
                    "production refuses PLAINTEXT Kafka: set INSTALLMENTS_KAFKA_SECURITY_PROTOCOL"
                )
            if self.kafka_security_protocol == "SASL_PLAINTEXT":
                raise ValueError(
                    "production refuses SASL over PLAINTEXT Kafka (the SASL password would"
                    " cross the network in clear): set INSTALLMENTS_KAFKA_SECURITY_PROTOCOL"
                    "=SASL_SSL"
                )
            if _sslmode(self.database_url) not in PRODUCTION_SSLMODES:
                # Never echo the URL or any part of it: it holds the password.
                raise ValueError(
                    "production refuses PostgreSQL without TLS: add sslmode=verify-full"
                    " (recommended), verify-ca or require to the DATABASE_URL query"
                )
        if self.database_url.startswith("sqlite") and "{service}" not in self.database_url:
            raise ValueError(
                "a SQLite DATABASE_URL must contain '{service}' (each service owns its file),"
                f" e.g. {DEFAULT_SQLITE_URL}"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                value = mask_url_password(value)
            yield name, value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic name."""
        return f"{self.topic_prefix}{name}"

    def consumer_group(self, service: str) -> str:
        """The consumer group of a service, namespaced by the topic prefix like the topics
        (tests, demo runs). The one place the prefix meets the group name; operations
        ask ``shared.registry.group_name``."""
        return f"{self.topic_prefix}{consumer_group(service)}"

    def contract_topic(self, physical: str) -> str:
        """The contract topic name for a physical one (strips the prefix)."""
        if self.topic_prefix and physical.startswith(self.topic_prefix):
            return physical[len(self.topic_prefix) :]
        return physical

    def kafka_client_config(self) -> dict[str, object]:
        """Connection options common to every kafka-python client."""
        config: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
            config["sasl_plain_username"] = self.kafka_sasl_username
            config["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_ssl_cafile:
            config["ssl_cafile"] = self.kafka_ssl_cafile
            config["ssl_check_hostname"] = True
        return config
