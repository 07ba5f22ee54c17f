"""Language and time zone: Chinese by default, English on request."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app, request, session
from flask_babel import format_date, format_time, get_locale
from flask_login import current_user

from app.core.access import ROLE_NAMES
from app.extensions import babel

# Babel spells zh_CN in full as zh_Hans_CN, so that is the catalogue's folder name under
# app/translations/; English needs no catalogue (the source strings are English).


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    if request.path.startswith("/api/"):  # machines say what they read in Accept-Language
        best = request.accept_languages.best_match(
            [*languages, *(code.replace("_", "-") for code in languages), "zh"]
        )
        if best:
            return "en" if best.startswith("en") else current_app.config["BABEL_DEFAULT_LOCALE"]
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    chosen = session.get("locale")
    if chosen in languages:
        return chosen
    if current_user and current_user.is_authenticated and current_user.locale in languages:
        return current_user.locale
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def html_lang() -> str:
    """The page's ``lang`` attribute (BCP 47): zh-CN or en."""
    return str(get_locale()).replace("_", "-")


def format_to_minute(moment: datetime) -> str:
    """A moment as staff read it on a trip's pages, in the user's time zone: the date and the
    clock time ("2026年11月29日 06:30", "Nov 29, 2026 6:30 AM"); a departure's seconds are noise."""
    return f"{format_date(moment, 'medium')} {format_time(moment, 'short')}"


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(
        html_lang=html_lang, current_locale=lambda: str(get_locale()), role_names=ROLE_NAMES
    )
    app.jinja_env.filters["minuteformat"] = format_to_minute
