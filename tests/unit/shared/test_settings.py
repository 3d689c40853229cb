"""Production refusals (TLS for Kafka SASL and PostgreSQL) and secrets kept out of text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.runtime.settings import PRODUCTION_SSLMODES, Settings, mask_url_password

PASSWORD = "s3cr3t-pw"
PG = f"postgresql+psycopg://svc:{PASSWORD}@db.internal:5432/installments"


def _production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "database_url": f"{PG}?sslmode=verify-full",
        "kafka_security_protocol": "SASL_SSL",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _refusal(**overrides: object) -> str:
    with pytest.raises(ValidationError) as caught:
        _production(**overrides)
    text = str(caught.value)
    for secret in (PASSWORD, "db.internal", "svc:", "postgresql", "installments?"):
        assert secret not in text, f"the refusal echoes {secret!r}: {text}"
    assert "input_value" not in text
    return text


@pytest.mark.parametrize("mode", PRODUCTION_SSLMODES)
def test_production_accepts_postgres_with_tls_and_kafka_sasl_ssl(mode: str) -> None:
    settings = _production(database_url=f"{PG}?sslmode={mode}")
    assert settings.database_url.endswith(f"sslmode={mode}")


def test_production_refuses_sasl_over_plaintext() -> None:
    assert "SASL over PLAINTEXT" in _refusal(kafka_security_protocol="SASL_PLAINTEXT")
    assert "PLAINTEXT Kafka" in _refusal(kafka_security_protocol="PLAINTEXT")


@pytest.mark.parametrize(
    "url",
    [
        PG,
        f"{PG}?sslmode=prefer",
        f"{PG}?sslmode=disable",
        f"{PG}?sslmode=allow",
        f"{PG}?sslmode=verify-full&sslmode=disable",  # libpq: the last one wins
        f"{PG}?application_name=x",
    ],
)
def test_production_refuses_postgres_without_tls(url: str) -> None:
    text = _refusal(database_url=url)
    assert "PostgreSQL without TLS" in text and "verify-full" in text


def test_production_refuses_sqlite_without_echo() -> None:
    assert "needs PostgreSQL" in _refusal(database_url="sqlite:///.data/{service}.sqlite3")


def test_other_environments_keep_working_without_tls() -> None:
    assert Settings(environment="test", database_url=PG).database_url == PG
    assert Settings(kafka_security_protocol="SASL_PLAINTEXT").kafka_security_protocol


def test_a_bad_value_is_never_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(environment="prod", database_url=PG)  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value) and "'prod'" not in str(caught.value)


def test_refusals_from_the_environment_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTALLMENTS_ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PG)
    monkeypatch.setenv("INSTALLMENTS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert PASSWORD not in str(caught.value) and "db.internal" not in str(caught.value)


def test_repr_and_str_hide_the_database_password() -> None:
    settings = _production(
        database_url=f"{PG}?sslmode=verify-full&password={PASSWORD}",
        kafka_sasl_password="kafka-" + PASSWORD,
    )
    for text in (repr(settings), str(settings)):
        assert PASSWORD not in text
        assert "postgresql+psycopg://svc:***@db.internal:5432/installments" in text
    assert PASSWORD in settings.database_url  # still the real URL for the code


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("sqlite:///.data/{service}.sqlite3", "sqlite:///.data/{service}.sqlite3"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@x@h/db?password=z&a=1", "postgresql://u:***@h/db?password=***&a=1"),
        ("postgresql://[::1/db", "<not shown>"),
    ],
)
def test_mask_url_password(url: str, masked: str) -> None:
    assert mask_url_password(url) == masked


def test_fetch_settings_default_to_kafkas_and_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (Settings().fetch_min_bytes, Settings().fetch_max_wait_ms) == (1, 100)
    monkeypatch.setenv("INSTALLMENTS_FETCH_MIN_BYTES", "262144")
    monkeypatch.setenv("INSTALLMENTS_FETCH_MAX_WAIT_MS", "50")
    assert (Settings().fetch_min_bytes, Settings().fetch_max_wait_ms) == (262144, 50)
    monkeypatch.setenv("INSTALLMENTS_FETCH_MIN_BYTES", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_the_services_consumer_is_built_with_the_fetch_settings(tmp_path, monkeypatch) -> None:
    from shared.runtime import runner as runner_module
    from tests.builders.services import PURCHASES

    built: dict[str, object] = {}

    class RecordingConsumer:
        def __init__(self, **config: object) -> None:
            built.update(config)

        def subscribe(self, topics: list[str], listener: object) -> None:
            built["topics"] = topics

    monkeypatch.setattr(runner_module, "KafkaConsumer", RecordingConsumer)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/{{service}}.db",
        environment="test",
        fetch_min_bytes=262144,
        fetch_max_wait_ms=50,
    )
    runner_module.Runner(PURCHASES, settings).start()
    assert built["fetch_min_bytes"] == 262144 and built["fetch_max_wait_ms"] == 50
