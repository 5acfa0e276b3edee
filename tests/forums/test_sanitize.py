"""sanitize.clean_html against a corpus of XSS payloads: nothing executable may survive."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sanitize

XSS_CORPUS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<<script>script>alert(1)<</script>/script>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<img src=x oNeRrOr=alert(1)//",
    "<body onload=alert(1)>",
    "<p onclick=\"alert(1)\">click</p>",
    "<p onmouseover='alert(1)' style='color:red'>hover</p>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
    "<a href=\" javascript:alert(1)\">x</a>",
    "<a href=\"java\tscript:alert(1)\">x</a>",
    "<a href=\"java&#x09;script:alert(1)\">x</a>",
    "<a href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)\">x</a>",
    "<a href=\"&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)\">x</a>",
    "<a href=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116"
    "&#0000058alert(1)\">x</a>",
    "<a href=\"jav&#x0A;ascript:alert(1)\">x</a>",
    "<a href=\"javascript&colon;alert(1)\">x</a>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "<a href=\"DATA:text/html,<script>alert(1)</script>\">x</a>",
    "<a href=\"%6A%61%76%61%73%63%72%69%70%74:alert(1)\">x</a>",
    "<a href='javascript:alert(1)' onclick=alert(2) rel=opener target=_blank>x</a>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text x=20 y=20>x</text></a></svg>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<math href=\"javascript:alert(1)\">x</math>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    "<object data=\"javascript:alert(1)\"></object>",
    "<embed src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\">",
    "<form action=\"javascript:alert(1)\"><button>go</button></form>",
    "<input autofocus onfocus=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=\"alert(1)\"></video>",
    "<div style=\"background:url(javascript:alert(1))\">x</div>",
    "<p style=\"width: expression(alert(1))\">x</p>",
    "<style>@import 'javascript:alert(1)';</style>",
    "<link rel=stylesheet href=\"javascript:alert(1)\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<base href=\"javascript:alert(1)//\">",
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
    "<template><script>alert(1)</script></template>",
    "<textarea><script>alert(1)</script></textarea>",
    "<title><script>alert(1)</script></title>",
    "<xmp><script>alert(1)</script></xmp>",
    "<a href=\"http://ok.example\" onmouseover=\"alert(1)\">ok</a>",
    "<code onclick=alert(1)>x</code>",
    "<blockquote cite=\"javascript:alert(1)\">q</blockquote>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<a href=\"http://x\"\"onclick=alert(1)>x</a>",
    "<p/onclick=alert(1)>x</p>",
    "<a\nhref\n=\njavascript:alert(1)>x</a>",
    "<\x00script>alert(1)</script>",
    "<isindex type=image src=1 onerror=alert(1)>",
    "<marquee onstart=alert(1)>",
    "javascript:alert(1)",
    "www.example.com/<script>alert(1)</script>",
]

_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


class _Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer would see them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


def assert_inert(out: str) -> None:
    assert "<script" not in out.lower()
    parser = _Tags()
    parser.feed(out)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in sanitize.ALLOWED_TAGS, tag
        for name, value in attrs:
            assert not name.startswith("on") and name != "style", (tag, name)
            assert name in ("href", "title", "rel"), (tag, name)
            if name == "href":
                # the parser has decoded entities, as a browser does for an attribute value
                decoded = _CONTROL.sub("", value or "").lower()
                assert not decoded.startswith(("javascript:", "vbscript:", "data:")), value
                scheme = re.match(r"^([a-z][a-z0-9+.\-]*):", decoded)
                assert scheme is None or scheme.group(1) in ("http", "https", "mailto"), value


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_nothing_executable_survives(payload):
    out = sanitize.clean_html(payload)
    assert_inert(out)
    # Cleaning is stable: a second pass neither changes nor "repairs" anything.
    assert sanitize.clean_html(out) == out


@given(st.lists(st.sampled_from(XSS_CORPUS + ["<p>", "</p>", "<a href=\"", "\">", "x", "<", ">", "\"", "'", "&#"]),
                max_size=12))
@settings(max_examples=500, deadline=None)
def test_concatenated_payloads_stay_inert(parts):
    assert_inert(sanitize.clean_html("".join(parts)))


def test_allowlisted_markup_is_kept():
    body = (
        "<p>Hello <strong>bold</strong> <em>it</em></p><ul><li>one</li></ul><ol><li>two</li></ol>"
        "<pre><code>x = 1</code></pre><blockquote>quoted</blockquote>"
    )
    assert sanitize.clean_html(body) == body


def test_links_get_nofollow_noopener():
    out = sanitize.clean_html('<a href="https://example.com/a" rel="opener" target="_blank">x</a> see www.example.org')
    assert out.count('rel="nofollow noopener"') == 2
    assert "target" not in out and 'rel="opener"' not in out
    assert 'href="http://www.example.org"' in out


def test_to_text_and_clean_line():
    assert sanitize.to_text("<p>one</p><p>two &amp; three</p>") == "one two & three"
    assert sanitize.clean_line("  <b>Hi</b> &lt;script&gt;  there ") == "Hi script there"
