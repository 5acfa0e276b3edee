"""Email rendering: one Jinja template per notification kind, HTML and text, in the member's locale.

The email templates have their own Jinja environment (autoescaped HTML, plain text left as is),
with ``{% trans %}`` bound to the Babel catalogue of ``messaging/translations`` (one environment
per locale, made once, so no string is looked up through a request locale), and
filters that format dates and numbers for the member's locale and time zone with Babel.

Catalogues: the ``.po`` files are the source (committed); ``ensure_compiled`` writes the ``.mo``
next to each when it is missing or older (at app start, so a fresh checkout just works).
"""

from __future__ import annotations

import functools
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
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, nodes, select_autoescape
from jinja2.ext import InternationalizationExtension
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


class _CompiledTrans(InternationalizationExtension):
    """``{% trans %}`` translated when the template is compiled, not on every render.

    Each environment is one locale's with its catalogue bound (``env.kinship_translations``),
    so a ``{% trans %}`` block without plural or context compiles to its translated text, marked
    safe where autoescaping is on and formatted with its variables (escaped like the runtime
    newstyle ``gettext`` would: ``Markup(translated) % variables``).  Same output, without the
    two ``Context.call``s, the catalogue lookup and the ``Markup`` wrapping per block per render.
    Plurals and contexts keep the runtime call.
    """

    def _make_node(self, singular, plural, context, variables, plural_expr, vars_referenced, num_called_num):
        translations = getattr(self.environment, "kinship_translations", None)
        if translations is None or plural_expr is not None or context is not None \
                or not self.environment.newstyle_gettext:  # type: ignore[attr-defined]
            return super()._make_node(singular, plural, context, variables, plural_expr, vars_referenced,
                                      num_called_num)
        node = nodes.Mod(nodes.MarkSafeIfAutoescape(nodes.Const(translations.gettext(singular))),
                         nodes.Dict([nodes.Pair(nodes.Const(key), value) for key, value in variables.items()]))
        return nodes.Output([node])


def _make_env(translations: NullTranslations) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES))]),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        extensions=[_CompiledTrans],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code: no stat() of every file on every render.
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    env.kinship_translations = translations  # type: ignore[attr-defined]  # read when a template compiles
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


@functools.lru_cache(maxsize=4096)
def _format_when(value: str, fmt: str, zone_name: str, babel_name: str) -> str:
    """A timestamp from a payload in a member's locale and zone (a fan-out repeats the same few)."""
    dt = _parse_time(value)
    return "" if dt is None else format_datetime(dt, format=fmt, tzinfo=_zone(zone_name),
                                                 locale=localised(_LOCALE_OF[babel_name]).locale)


@functools.lru_cache(maxsize=4096)
def _format_number(kind: type, value, babel_name: str) -> str:
    try:
        return format_decimal(value, locale=localised(_LOCALE_OF[babel_name]).locale)
    except (TypeError, ValueError, ArithmeticError):
        return str(value)


_LOCALE_OF = {v: k for k, v in BABEL_LOCALES.items()}
# Templates whose <title> is their subject block (they extend base.html, which puts it there).
_TITLE_IS_SUBJECT: dict[str, bool] = {}


def _title_is_subject(env: Environment, name: str) -> bool:
    found = _TITLE_IS_SUBJECT.get(name)
    if found is None:
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        found = _TITLE_IS_SUBJECT[name] = source.lstrip().startswith('{% extends "messaging/email/base.html" %}') \
            and "<title>" not in source
    return found


def render(kind: str, context: dict, *, locale: str, time_zone: str | None) -> Rendered:
    """Render ``kind``'s subject, text and HTML parts in ``locale`` (``en`` or ``zh-CN``)."""
    info = kind_info(kind)
    locale = normalise_locale(locale)
    here = localised(locale)
    babel_name = BABEL_LOCALES[locale]
    zone_name = time_zone or "UTC"

    def when(value, fmt: str = "medium") -> str:
        if isinstance(value, str):
            return _format_when(value, fmt, zone_name, babel_name)
        dt = _parse_time(value)
        return "" if dt is None else format_datetime(dt, format=fmt, tzinfo=_zone(zone_name), locale=here.locale)

    def number(value) -> str:
        try:
            return _format_number(type(value), value, babel_name)
        except TypeError:  # unhashable: formatted (or shown) as it is
            return _format_number.__wrapped__(type(value), value, babel_name)

    def label(word) -> str:
        return here.translations.gettext(str(word)) if word in LABELS else str(word or "")

    ctx = {**context, "kind": kind, "category": info.category, "locale": locale,
           "when": when, "number": number, "label": label}
    html_name = f"messaging/email/{info.template}.html"
    try:
        html_t = here.env.get_template(html_name)
        text_t = here.env.get_template(f"messaging/email/{info.template}.txt")
        html = html_t.render(ctx)
        text = text_t.render(ctx)
        # The subject block, rendered with the HTML part's escaping; the header wants the plain
        # text back (unescape() only reverses autoescape).  base.html renders it as the <title>:
        # taken from there rather than rendered a second time.
        start, end = html.find("<title>"), html.find("</title>")
        if _title_is_subject(here.env, html_name) and 0 <= start < end:
            subject = Markup(html[start + 7:end]).unescape()  # noqa: S704
        else:
            subject = Markup("".join(html_t.blocks["subject"](html_t.new_context(ctx)))).unescape()  # noqa: S704
    except Exception as exc:  # a template that cannot render this data will never render it
        raise RenderError(f"cannot render {kind}: {exc.__class__.__name__}: {exc}") from exc
    subject = " ".join(subject.split())[:200]
    if len(html.encode()) + len(text.encode()) > MAX_RENDERED_BYTES:
        raise RenderError(f"rendered {kind} is larger than {MAX_RENDERED_BYTES} bytes")
    return Rendered(subject=subject, text=text.strip() + "\n", html=html)
