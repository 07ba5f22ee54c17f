"""Language and time zone: Chinese by default, English on request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import Flask, current_app, request, session
from flask_babel import format_date, format_time, get_locale, gettext
from flask_login import current_user
from jinja2 import pass_eval_context
from markupsafe import Markup, escape

from app.core.access import ROLE_NAMES
from app.extensions import babel

# Babel spells zh_CN in full as zh_Hans_CN, so that is the catalogue's folder name under
# app/translations/; English needs no catalogue (the source strings are English).


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    # Machines say what they read in Accept-Language; the API's reference is a page, read by
    # people in the language they chose on the other pages.
    if request.path.startswith("/api/") and request.endpoint != "api.reference":
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


# Punctuation between the parts of a phrase comes from the catalogue: a comma or colon typed in
# a template or an f-string is an English one inside Chinese text ("项目部, 济南市").


def joined(*parts: object) -> str:
    """The parts that are not empty, in one phrase with the language's comma:
    "云阳汽车站，滨江大道" / "Yunyang bus station, Binjiang Ave"."""
    kept = [part for part in parts if part]
    text = kept[0] if kept else ""
    for part in kept[1:]:
        text = gettext("%(first)s, %(second)s", first=text, second=part)
    return text


def labelled(label: object, value: object) -> str:
    """A value after its label, with the language's colon: "出发地：云阳县" / "From: Yunyang"."""
    return gettext("%(label)s: %(value)s", label=label, value=value)


def _for_templates(phrase: Callable[..., str]):
    """``phrase`` for the templates: on HTML pages its parts escaped (those already markup
    kept) and the result markup; in text messages, plain text."""

    @pass_eval_context
    def template_phrase(eval_context, *parts):
        if not eval_context.autoescape:
            return phrase(*parts)
        return Markup(phrase(*(escape(part) if part else part for part in parts)))  # noqa: S704 - parts escaped above

    return template_phrase


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(
        html_lang=html_lang,
        current_locale=lambda: str(get_locale()),
        role_names=ROLE_NAMES,
        joined=_for_templates(joined),
        labelled=_for_templates(labelled),
    )
    app.jinja_env.filters["minuteformat"] = format_to_minute
