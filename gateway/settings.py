"""One settings object, read from the environment (prefix ``GATEWAY_``) or a ``.env`` file.

A bad configuration must stop the start with one line that names the setting, so every check here
raises :class:`ConfigError` carrying the variable's name rather than letting a traceback escape.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Security = Literal["none", "starttls", "tls"]
Mode = Literal["dev", "serve", "worker", "tool"]

_DEFAULT_PORTS = {
    "smtp": {"none": 25, "starttls": 587, "tls": 465},
    "imap": {"none": 143, "starttls": 143, "tls": 993},
}


class ConfigError(Exception):
    """A setting is missing, malformed or contradicts another; ``setting`` names the variable."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./gateway.sqlite3"
    public_url: str | None = None
    secret_keys: str | None = None
    from_address: str | None = None
    reply_address: str | None = None

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_security: Security = "starttls"
    smtp_auth: Literal["password", "oauth2"] = "password"
    smtp_timeout: float = 30.0
    smtp_ca_file: Path | None = None  # a private CA that signed the SMTP server's certificate
    smtp_connections: int = 4  # mails sent at once, each over its own reused connection
    # The SMTP server accepts internationalised addresses (SMTPUTF8, RFC 6531): only then may an agent address a
    # mail to a local part with non-ASCII letters (bób@example.com); without it such an address is refused at
    # submit, never accepted and lost later.
    smtp_utf8: bool = False

    imap_host: str | None = None
    imap_port: int | None = None
    imap_username: str | None = None
    imap_password: str | None = None
    imap_security: Security = "tls"
    imap_auth: Literal["password", "oauth2"] = "password"
    imap_mailbox: str = "INBOX"

    # OAuth 2.0 for SMTP_AUTH/IMAP_AUTH=oauth2 (XOAUTH2): a refresh token (Google, delegated Microsoft) or none
    # (client credentials: Microsoft 365 app-only). OAUTH_PROVIDER fills in the token URL and scope.
    oauth_provider: Literal["google", "microsoft"] | None = None
    oauth_tenant: str | None = None
    oauth_token_url: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None
    oauth_scope: str | None = None
    oauth_refresh_token: str | None = None

    imap_processed_mailbox: str = "Processed"
    imap_ca_file: Path | None = None
    imap_poll_interval: float = 30.0
    imap_idle_renew: float = 600.0
    leader_retry: float = 2.0  # PostgreSQL: how often a replica tries to become the mailbox's one poller
    inbound_require_auth: bool = False
    trusted_authserv_ids: str = ""
    # Inbound mail by webhook (/inbound/*): the shared secret (Bearer for raw, Basic auth's password for Postmark
    # and SendGrid), Mailgun's signing key, and optionally the SNS topics SES may deliver from.
    inbound_secret: str | None = None
    mailgun_signing_key: str | None = None
    ses_topic_arns: str = ""
    dkim_selector: str | None = None  # for `gateway doctor`: the DKIM selector your provider signs with
    dns_server: str | None = None  # for `gateway doctor`: ask this resolver (host[:port]) instead of the system's
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"  # tests point it at their own

    templates_dir: Path | None = None
    default_expires_in: int | None = None
    link_max_age: int = 30 * 24 * 3600
    outbox_max_attempts: int = 12
    outbox_backoff_base: float = 2.0
    outbox_backoff_max: float = 3600.0
    outbox_batch_size: int = 50
    # Seconds a sender's claim on mail lasts without renewal. A live sender renews it (every third of it) until
    # each outcome is committed; a dead one's mail goes to another sender this long after its last renewal.
    outbox_lease: float = 15.0
    outbox_stuck_after: float = 600.0  # /healthz says "degraded" when a delivery has been pending longer

    # The life of a request: default reminder schedule and escalation (a request's own settings win).
    reminder_after: int | None = None
    reminder_every: int | None = None
    reminder_max: int = 3
    # Reminders due within this many seconds of each other, to an approver with several requests waiting, go out
    # as one mail listing them all (each with its own links). 0 turns digests off.
    reminder_digest_window: int = 300
    escalate_after: int | None = None
    escalate_to: str = ""
    scheduler_max_sleep: float = 60.0  # a cap, so requests created by another process are never missed for long
    # An agent's message stream (SSE) gets a comment line this often (seconds), so proxies that close quiet
    # responses (nginx and AWS load balancers after 60 s, Heroku after 55) leave it open.
    stream_heartbeat: int = Field(45, ge=1, le=120)

    # Webhooks (Standard Webhooks signatures), for every request's final outcome; per-request callback_url too.
    webhook_urls: str = ""
    webhook_secret: str | None = None
    webhook_responses: bool = False
    webhook_allow_private: bool = False
    webhook_timeout: float = 10.0

    # Behind a reverse proxy: the proxies whose X-Forwarded-For/-Proto are believed (comma-separated addresses or
    # "*"), so the audit trail logs the person's address, not the proxy's. Empty: no forwarded header counts.
    forwarded_allow_ips: str = ""

    @field_validator(
        "default_expires_in",
        "link_max_age",
        "outbox_max_attempts",
        "outbox_batch_size",
        "smtp_connections",
        "reminder_after",
        "reminder_every",
        "reminder_max",
        "escalate_after",
    )
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive number")
        return value

    # --- derived values -------------------------------------------------------------------------

    @property
    def secret_key_list(self) -> list[str]:
        """All keys verify; the last one signs (itsdangerous treats the list's end as newest)."""
        return [k.strip() for k in (self.secret_keys or "").split(",") if k.strip()]

    @property
    def escalate_to_list(self) -> list[str]:
        return [a.strip() for a in self.escalate_to.split(",") if a.strip()]

    @property
    def webhook_url_list(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @property
    def ses_topic_arn_list(self) -> list[str]:
        return [x.strip() for x in self.ses_topic_arns.split(",") if x.strip()]

    @property
    def trusted_authserv_id_list(self) -> list[str]:
        return [x.strip().lower() for x in self.trusted_authserv_ids.split(",") if x.strip()]

    @property
    def async_database_url(self) -> str:
        return normalise_database_url(self.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url.startswith("sqlite")

    @property
    def smtp_port_effective(self) -> int:
        return self.smtp_port or _DEFAULT_PORTS["smtp"][self.smtp_security]

    @property
    def imap_port_effective(self) -> int:
        return self.imap_port or _DEFAULT_PORTS["imap"][self.imap_security]

    @property
    def reply_address_effective(self) -> str | None:
        return self.reply_address or self.from_address

    @property
    def public_base(self) -> str:
        return (self.public_url or "http://127.0.0.1:8000").rstrip("/")

    # --- checks ---------------------------------------------------------------------------------

    def check(self, mode: Mode) -> None:
        """Raise ConfigError for the first missing or contradictory setting for this mode."""
        needed: list[str] = []
        if mode in ("serve", "worker"):
            needed = ["secret_keys", "public_url", "from_address", "smtp_host"]
        for name in needed:
            if not getattr(self, name):
                raise ConfigError(_env(name), f"is required for `gateway {mode}`")
        for key in self.secret_key_list:
            if len(key) < 16:
                raise ConfigError(_env("secret_keys"), "every key must be at least 16 characters long")
        if self.secret_keys is not None and not self.secret_key_list:
            raise ConfigError(_env("secret_keys"), "is set but holds no key")
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(_env("public_url"), "must be an absolute http:// or https:// URL")
        for name in ("from_address", "reply_address"):
            value = getattr(self, name)
            if value is not None and not _looks_like_address(value):
                raise ConfigError(_env(name), f"{value!r} is not an email address")
        if self.smtp_auth == "password" and bool(self.smtp_username) != bool(self.smtp_password):
            missing = "smtp_password" if self.smtp_username else "smtp_username"
            raise ConfigError(_env(missing), "SMTP_USERNAME and SMTP_PASSWORD must be set together")
        if self.smtp_auth == "oauth2" and not self.smtp_username:
            raise ConfigError(_env("smtp_username"), "SMTP_AUTH=oauth2 logs in as SMTP_USERNAME: set it")
        if self.imap_host and self.imap_auth == "password" and not (self.imap_username and self.imap_password):
            raise ConfigError(_env("imap_username"), "IMAP_HOST is set, so IMAP_USERNAME and IMAP_PASSWORD are needed")
        if self.imap_host and self.imap_auth == "oauth2" and not self.imap_username:
            raise ConfigError(_env("imap_username"), "IMAP_AUTH=oauth2 logs in as IMAP_USERNAME: set it")
        if (self.imap_username or self.imap_password) and not self.imap_host:
            raise ConfigError(_env("imap_host"), "IMAP credentials are set but IMAP_HOST is not")
        if "oauth2" in (self.smtp_auth, self.imap_auth):
            if not self.oauth_client_id:
                raise ConfigError(_env("oauth_client_id"), "SMTP_AUTH or IMAP_AUTH is oauth2: the OAuth client's id")
            if not (self.oauth_token_url or self.oauth_provider):
                raise ConfigError(_env("oauth_token_url"), "set it, or OAUTH_PROVIDER=google|microsoft")
            if self.oauth_provider == "microsoft" and not self.oauth_refresh_token and not self.oauth_tenant:
                raise ConfigError(_env("oauth_tenant"), "Microsoft 365 app-only access needs the tenant (id or domain)")
            if not self.oauth_refresh_token and not self.oauth_client_secret:
                raise ConfigError(
                    _env("oauth_client_secret"), "without OAUTH_REFRESH_TOKEN (client credentials) the secret is needed"
                )
        if self.imap_host and not self.reply_address_effective:
            raise ConfigError(_env("reply_address"), "the IMAP poller needs the address replies go to")
        if self.inbound_require_auth and not self.trusted_authserv_id_list:
            raise ConfigError(
                _env("trusted_authserv_ids"), "INBOUND_REQUIRE_AUTH needs the servers whose results count"
            )
        if self.inbound_secret is not None and len(self.inbound_secret) < 16:
            raise ConfigError(_env("inbound_secret"), "must be at least 16 characters long")
        if self.templates_dir is not None and not self.templates_dir.is_dir():
            raise ConfigError(_env("templates_dir"), f"{self.templates_dir} is not a directory")
        if self.escalate_after and not self.escalate_to_list:
            raise ConfigError(_env("escalate_to"), "ESCALATE_AFTER is set, so say who is added: ESCALATE_TO")
        for address in self.escalate_to_list:
            if not _looks_like_address(address):
                raise ConfigError(_env("escalate_to"), f"{address!r} is not an email address")
        if self.reminder_every and not self.reminder_after:
            raise ConfigError(_env("reminder_after"), "REMINDER_EVERY needs REMINDER_AFTER (when the first goes out)")
        for url in self.webhook_url_list:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(_env("webhook_urls"), f"{url!r} is not an absolute http:// or https:// URL")
        if self.webhook_secret is not None and not _is_webhook_secret(self.webhook_secret):
            raise ConfigError(_env("webhook_secret"), "must be whsec_ followed by base64 of at least 24 random bytes")
        if self.webhook_url_list and not self.webhook_secret:
            raise ConfigError(_env("webhook_secret"), "WEBHOOK_URLS is set, so the secret that signs them is needed")
        url = self.async_database_url
        if not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
            raise ConfigError(_env("database_url"), "must be a sqlite:// or postgresql:// URL")


def _env(field: str) -> str:
    return f"GATEWAY_{field.upper()}"


def _is_webhook_secret(value: str) -> bool:
    if not value.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(value[6:], validate=True)) >= 24
    except ValueError:
        return False


def _looks_like_address(value: str) -> bool:
    local, _, domain = value.rpartition("@")
    return bool(local) and "." in domain and " " not in value


def normalise_database_url(url: str) -> str:
    """Accept the plain scheme users write and pick the async driver the gateway runs on."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def load_settings(mode: Mode = "tool", **overrides: object) -> Settings:
    """Read and check the settings; every failure becomes one ConfigError naming a variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise ConfigError(_env(field), first["msg"]) from None
    settings.check(mode)
    return settings
