"""Settings classes. The environment overrides the defaults here; nothing else does.

With nothing set the service runs embedded: SQLite under ``instance/`` and background jobs
in-process right after the commit that caused them. ``DATABASE_URL`` moves the data to
PostgreSQL, ``REDIS_URL`` moves jobs to Celery workers and shares rate limits through Redis.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

INSTANCE_PATH = Path(os.environ.get("FANGANG_INSTANCE_PATH", Path.cwd() / "instance")).resolve()


def normalize_database_url(url: str) -> str:
    """Pick the psycopg 3 driver for PostgreSQL URLs written the usual ways."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Config:
    ENV_NAME = "development"
    SECRET_KEY: str | None = None
    SQLALCHEMY_DATABASE_URI = f"sqlite:///{INSTANCE_PATH / 'fangang.db'}"
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {"pool_pre_ping": True}
    REDIS_URL: str | None = None

    # Sessions: HttpOnly and SameSite=Lax always; Secure where served over HTTPS.
    SESSION_COOKIE_NAME = "fangang_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = False
    REMEMBER_COOKIE_DURATION = timedelta(days=14)
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    WTF_CSRF_TIME_LIMIT = 12 * 3600
    HSTS = False

    BABEL_DEFAULT_LOCALE = "zh_CN"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    LANGUAGES = ("zh_CN", "en")
    API_RATE_LIMIT = "300/minute"  # per token

    # Sign-in attempts: failed ones count against the address and the account.
    LOGIN_RATE_LIMIT_PER_IP = "20 per 5 minutes"
    LOGIN_RATE_LIMIT_PER_ACCOUNT = "5 per 5 minutes"
    RATELIMIT_STORAGE_URI = "memory://"
    # If Redis goes away, limits fall back to this process's memory instead of failing sign-in.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_ENABLED = True

    # Fail at start with one clear line when DATABASE_URL or REDIS_URL cannot be reached.
    STARTUP_CHECKS = True
    STARTUP_CHECK_TIMEOUT = 3
    # /readyz: how long each check (database, Redis) may take before it counts as failed.
    READINESS_TIMEOUT = 2.0
    # Logs on stdout: "json" (one object a line, for a log collector) or "text" (for people).
    LOG_FORMAT = "text"
    LOG_LEVEL = "INFO"

    CELERY: ClassVar[dict] = {}
    # ID and phone numbers at rest (app/core/pii.py): comma-separated base64 32-byte keys, the
    # first one encrypting; and the key of the lookup hash. Generated into instance/ in development.
    PII_KEYS: str | None = None
    PII_HASH_KEY: str | None = None
    # Behind a reverse proxy, how many X-Forwarded-* hops to trust (the client address is what
    # sign-in rate limits count by).
    TRUSTED_PROXY_COUNT = 0
    ITEMS_PER_PAGE = 25
    # Health (app/health/rules.py): a pass must be issued at most this long before departure,
    # and a temperature at or above this keeps a worker off the vehicle.
    HEALTH_FRESHNESS_HOURS = 72
    FEVER_CELSIUS = "37.3"
    # Everyone departing within this many hours is checked again by a periodic job.
    HEALTH_RECHECK_HOURS = 48
    # Until trips give exact times, a request's workers are taken to leave at this local time
    # on its earliest departure day.
    DEFAULT_DEPARTURE_TIME = "06:00"
    # Notifications (app/notify/): without a gateway or mail server, messages go to files in
    # instance/ (sms.log, mail.log), as in development.
    # Links in messages point here.
    BASE_URL = "http://127.0.0.1:5000"
    SMS_GATEWAY_URL: str | None = None
    SMS_GATEWAY_USERNAME = ""
    SMS_GATEWAY_PASSWORD = ""
    SMS_GATEWAY_TIMEOUT = 5.0
    SMS_PER_SECOND = 0.0  # 0: no limit of our own (the gateway's contract may set one)
    SMTP_HOST: str | None = None
    SMTP_PORT = 25
    SMTP_USERNAME = ""
    SMTP_PASSWORD = ""
    SMTP_STARTTLS = False
    SMTP_TIMEOUT = 10.0
    MAIL_SENDER = "返岗直通车 <noreply@fangang.local>"
    NOTIFY_MAX_ATTEMPTS = 6
    NOTIFY_RETRY_BASE_SECONDS = 30
    # A row left 'sending' this long (its worker or its queued batch was lost) is sent again;
    # keep it above the longest a batch can take (SMS_GATEWAY_TIMEOUT per 100 messages).
    NOTIFY_STALE_MINUTES = 10
    # Uploads (roster files) are refused above this, before they are read into memory.
    MAX_CONTENT_LENGTH = 12 * 1024 * 1024
    # Plausible working age at the travel date; outside it, a typo in the ID is likelier.
    WORKER_MIN_AGE = 16
    WORKER_MAX_AGE = 70

    @classmethod
    def from_environment(cls) -> dict:
        """The settings of this class with the environment's values laid over them."""
        settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
        env = os.environ
        if env.get("SECRET_KEY"):
            settings["SECRET_KEY"] = env["SECRET_KEY"]
        if env.get("DATABASE_URL"):
            settings["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(env["DATABASE_URL"])
        if env.get("REDIS_URL"):
            settings["REDIS_URL"] = env["REDIS_URL"]
        for name in ("PII_KEYS", "PII_HASH_KEY"):
            if env.get(name):
                settings[name] = env[name]
        for name in ("SMTP_PORT", "NOTIFY_MAX_ATTEMPTS", "NOTIFY_RETRY_BASE_SECONDS"):
            if env.get(name):
                settings[name] = int(env[name])
        # NOTIFY_STALE_MINUTES may be a fraction (0.5: half a minute).
        for name in (
            "SMS_GATEWAY_TIMEOUT",
            "SMS_PER_SECOND",
            "SMTP_TIMEOUT",
            "NOTIFY_STALE_MINUTES",
        ):
            if env.get(name):
                settings[name] = float(env[name])
        if env.get("SMTP_STARTTLS"):
            settings["SMTP_STARTTLS"] = env["SMTP_STARTTLS"].lower() in ("1", "true", "yes")
        for name in (
            "FEVER_CELSIUS",
            "DEFAULT_DEPARTURE_TIME",
            "BASE_URL",
            "SMS_GATEWAY_URL",
            "SMS_GATEWAY_USERNAME",
            "SMS_GATEWAY_PASSWORD",
            "SMTP_HOST",
            "SMTP_USERNAME",
            "SMTP_PASSWORD",
            "MAIL_SENDER",
        ):
            if env.get(name):
                settings[name] = env[name]
        if env.get("TIMEZONE"):
            settings["BABEL_DEFAULT_TIMEZONE"] = env["TIMEZONE"]
        if env.get("TRUSTED_PROXY_COUNT"):
            settings["TRUSTED_PROXY_COUNT"] = int(env["TRUSTED_PROXY_COUNT"])
        for name in (
            "WORKER_MIN_AGE",
            "WORKER_MAX_AGE",
            "HEALTH_FRESHNESS_HOURS",
            "HEALTH_RECHECK_HOURS",
        ):
            if env.get(name):
                settings[name] = int(env[name])
        if env.get("LOG_FORMAT"):
            settings["LOG_FORMAT"] = env["LOG_FORMAT"].strip().lower()
        if env.get("LOG_LEVEL"):
            settings["LOG_LEVEL"] = env["LOG_LEVEL"].strip().upper()
        if env.get("READINESS_TIMEOUT"):
            settings["READINESS_TIMEOUT"] = float(env["READINESS_TIMEOUT"])
        if env.get("ITEMS_PER_PAGE"):
            settings["ITEMS_PER_PAGE"] = int(env["ITEMS_PER_PAGE"])
        return settings


class DevelopmentConfig(Config):
    pass


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key"  # noqa: S105 - tests only
    PII_KEYS = "dGVzdGluZy1rZXktdGVzdGluZy1rZXktdGVzdGluZzE"
    PII_HASH_KEY = "dGVzdGluZy1oYXNoLWtleS10ZXN0aW5nLWhhc2gta2V5"


class ProductionConfig(Config):
    ENV_NAME = "production"
    # No SQLite fallback: every process on every machine must share one database.
    SQLALCHEMY_DATABASE_URI = None
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    HSTS = True
    LOG_FORMAT = "json"
    # A failed statement's error (logged) shows the SQL but not its values.
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {"pool_pre_ping": True, "hide_parameters": True}


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(name: str | None = None) -> dict:
    """Settings for ``name`` (default: ``FANGANG_ENV``, else development)."""
    name = name or os.environ.get("FANGANG_ENV", "development")
    if name not in CONFIGS:
        raise SystemExit(f"fangang: FANGANG_ENV={name!r} is not one of {', '.join(CONFIGS)}.")
    return CONFIGS[name].from_environment()
