"""Celery: the app (``workers.celery``) and its named tasks, one module per domain.

Start with ``celery -A workers worker`` and ``celery -A workers beat``; both need REDIS_URL.
Tasks take ids, never ORM objects or PII, and are safe to run twice.
"""
