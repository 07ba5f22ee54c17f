"""gunicorn for the web: ``gunicorn -c config/gunicorn.conf.py 'app:create_app()'``.

Everything comes from the environment (see deploy/env.example). The app writes its own access
line per request (JSON with a request id when LOG_FORMAT=json), so gunicorn's is off; with JSON
logs, gunicorn's own lines are JSON too.

This file imports nothing of the project: the master process never loads the app, so each
worker it starts, after ``systemctl reload`` (SIGHUP) too, loads the code on disk afresh.
"""

import json
import logging
import multiprocessing
import os
from datetime import UTC, datetime

bind = os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
# Each worker builds its own app after the fork, so no database or Redis connection is ever
# shared between processes (create_app also disposes the one its start-up check opened).
preload_app = False
# A request taking longer than this is killed (its worker is replaced); reports and exports
# are the slowest pages.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On SIGTERM, requests in flight get this long to finish (keep the service manager's stop
# timeout above it).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Replace workers now and then, staggered, so slow leaks cannot build up. Not too often: a
# new worker costs about 1.2 s of CPU (imports, create_app); at 2,000 requests that was 0.6 ms
# a request, and four restarts in every 20 s of a load test.
max_requests = 20000
max_requests_jitter = 2000
# Addresses whose X-Forwarded-Proto gunicorn believes (the load balancer's); the app's own
# ProxyFix (TRUSTED_PROXY_COUNT) decides the client address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# The app's rule (config/__init__.py): LOG_FORMAT, else JSON in production.
_production = os.environ.get("FANGANG_ENV") == "production"
_log_format = (os.environ.get("LOG_FORMAT") or ("json" if _production else "text")).lower()


class JsonFormatter(logging.Formatter):
    """gunicorn's own lines in the shape of app/core/logs.py's."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


if _log_format == "json":
    # Replaces gunicorn's logging wholesale (dictConfig): its lines as JSON on stdout, not
    # propagated to the root logger, whose handler the app installs in each worker.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
            # Any logconfig_dict turns gunicorn's access log back on, with the query string
            # (phone numbers, IDs): it must go nowhere.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "formatters": {"json": {"()": JsonFormatter}},
    }
