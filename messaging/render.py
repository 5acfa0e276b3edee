"""Email rendering: one Jinja template per notification kind, HTML and text, in the member's locale.

The email templates have their own Jinja environment (autoescaped HTML, plain text left as is),
with ``{% trans %}`` bound to the Babel catalogue of ``messaging/translations`` (one environment
per locale, made once, so no string is looked up through a request locale), and
filters that format dates and numbers for the member's locale and time zone with Babel.

Catalogues: the ``.po`` files are the source (committed); ``ensure_compiled`` writes the ``.mo``
next to each when it is missing or older (at app start, so a fresh checkout just works).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from .catalog import LABELS, kind_info

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
TRANSLATIONS = HERE / "translations"
LOCALES = ("en", "zh-CN")
# Babel's name for each of our locales (the catalogue folder names).
BABEL_LOCALES = {"en": "en", "zh-CN": "zh_Hans_CN"}
# Longest rendered email (both parts) we send; a bigger one is a template or data bug.
MAX_RENDERED_BYTES = 256 * 1024

_compile_lock = threading.Lock()
_compiled = False


class RenderError(ValueError):
    """A message could not be rendered (missing data, oversized result): a permanent failure."""


def ensure_compiled() -> None:
    """Compile every ``.po`` to its ``.mo`` if missing or stale (atomic replace; safe in parallel)."""
    global _compiled
    if _compiled:
        return
    with _compile_lock:
        for po in TRANSLATIONS.glob("*/LC_MESSAGES/*.po"):
            mo = po.with_suffix(".mo")
            if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
                continue
            with po.open("rb") as fh:
                catalog = read_po(fh)
            fd, tmp = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalog)
            os.replace(tmp, mo)
            log.info("compiled %s", mo.relative_to(HERE))
        _compiled = True


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _make_env(translations: NullTranslations) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES))]),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code: no stat() of every file on every render.
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


@dataclass(frozen=True)
class _Localised:
    """Everything one locale renders with, made once per process: its Jinja environment with the
    catalogue bound (no per-string locale lookup through Flask-Babel) and its Babel ``Locale``."""

    env: Environment
    translations: NullTranslations
    locale: Locale


_localised: dict[str, _Localised] = {}
_localised_lock = threading.Lock()


def localised(locale: str) -> _Localised:
    """The environment of ``locale`` (``en`` or ``zh-CN``)."""
    found = _localised.get(locale)
    if found is None:
        ensure_compiled()
        babel_name = BABEL_LOCALES[locale]
        with _localised_lock:
            translations = Translations.load(str(TRANSLATIONS), [babel_name], domain="messages")
            found = _localised.setdefault(locale, _Localised(_make_env(translations), translations,
                                                             Locale.parse(babel_name)))
    return found


def environment() -> Environment:
    return localised("en").env


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def normalise_locale(locale: str | None, default: str = "en") -> str:
    if locale in LOCALES:
        return locale  # type: ignore[return-value]
    if locale and locale.lower().replace("_", "-").startswith("zh"):
        return "zh-CN"
    return default if default in LOCALES else "en"


def render(kind: str, context: dict, *, locale: str, time_zone: str | None) -> Rendered:
    """Render ``kind``'s subject, text and HTML parts in ``locale`` (``en`` or ``zh-CN``)."""
    info = kind_info(kind)
    locale = normalise_locale(locale)
    here = localised(locale)
    zone = _zone(time_zone)
    babel_locale = here.locale

    formatted: dict = {}  # a value appears in the subject, the title and both parts: format it once

    def when(value, fmt: str = "medium") -> str:
        key = ("when", str(value), fmt)
        if key not in formatted:
            dt = _parse_time(value)
            formatted[key] = "" if dt is None else format_datetime(dt, format=fmt, tzinfo=zone, locale=babel_locale)
        return formatted[key]

    def number(value) -> str:
        key = ("number", repr(value))
        if key not in formatted:
            try:
                formatted[key] = format_decimal(value, locale=babel_locale)
            except (TypeError, ValueError, ArithmeticError):
                formatted[key] = str(value)
        return formatted[key]

    def label(word) -> str:
        return here.translations.gettext(str(word)) if word in LABELS else str(word or "")

    ctx = {**context, "kind": kind, "category": info.category, "locale": locale,
           "when": when, "number": number, "label": label}
    try:
        html_t = here.env.get_template(f"messaging/email/{info.template}.html")
        text_t = here.env.get_template(f"messaging/email/{info.template}.txt")
        # Rendered with the HTML part's escaping; the header wants the plain text back.
        # The block's output is already escaped by autoescape; unescape() only reverses it.
        subject = Markup("".join(html_t.blocks["subject"](html_t.new_context(ctx)))).unescape()  # noqa: S704
        html = html_t.render(ctx)
        text = text_t.render(ctx)
    except Exception as exc:  # a template that cannot render this data will never render it
        raise RenderError(f"cannot render {kind}: {exc.__class__.__name__}: {exc}") from exc
    subject = " ".join(subject.split())[:200]
    if len(html.encode()) + len(text.encode()) > MAX_RENDERED_BYTES:
        raise RenderError(f"rendered {kind} is larger than {MAX_RENDERED_BYTES} bytes")
    return Rendered(subject=subject, text=text.strip() + "\n", html=html)
