"""The console's settings: the process settings plus ``INSTALLMENTS_CONSOLE_*``.

``INSTALLMENTS_CONSOLE_SECRET`` signs the session cookie. In production the console
refuses to start without one (and with one shorter than 32 characters); elsewhere a
random secret is made per process (sessions end when it restarts).
"""

from __future__ import annotations

import secrets

from pydantic import Field, SecretStr, model_validator

from shared.runtime.settings import Settings

MIN_SECRET_LENGTH = 32


class ConsoleSettings(Settings):
    """:class:`Settings` + the console's own variables (prefix ``INSTALLMENTS_``)."""

    console_users_file: str | None = None  # YAML or JSON: the agents (add-agent writes it)
    console_secret: SecretStr | None = None  # signs the session cookie
    console_host: str = "127.0.0.1"
    console_port: int = Field(8080, ge=0, le=65535)
    console_session_max_age_s: int = Field(8 * 3600, ge=60)
    console_page_size: int = Field(50, ge=1, le=500)

    @model_validator(mode="after")
    def _secret_in_production(self) -> ConsoleSettings:
        if self.environment == "production":
            secret = self.console_secret.get_secret_value() if self.console_secret else ""
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    "production needs INSTALLMENTS_CONSOLE_SECRET (at least"
                    f" {MIN_SECRET_LENGTH} characters) to sign the console's session cookie"
                )
        return self

    def session_secret(self) -> tuple[str, bool]:
        """(secret, configured): the configured secret, else a random one per process."""
        if self.console_secret is not None and self.console_secret.get_secret_value():
            return self.console_secret.get_secret_value(), True
        return secrets.token_urlsafe(48), False
