"""Escaping of outside text: canvas markdown, Slack mrkdwn and plain text."""

from __future__ import annotations

import re

import pytest

from canvas.escape import (
    ELLIPSIS,
    canvas_text,
    mrkdwn_text,
    plain_text,
    single_line,
    truncate,
)

HOSTILE = {
    "pipe": "a | b || c",
    "newlines": "line one\nline two\r\n| x | y |",
    "link": "[x](http://evil)",
    "image_mention": "![](@U123)",
    "channel_mention": "![](#C0123ABCD)",
    "broadcast": "<!channel> <!here> <!everyone>",
    "user_mention": "<@U123>",
    "www": "see www.evil.com now",
    "www_upper": "see WWW.Evil.com now",
    "url": "https://evil.example/path",
    "autolink": "<https://evil.example>",
    "heading": "# Title",
    "emphasis": "**bold** _it_ `code` ~~gone~~",
    "backslash": "\\| \\[x\\](http://evil)",
    "html": "<img src=x onerror=alert(1)>",
    "reference": "[x]: http://evil",
}

# CommonMark: a backslash escapes the ASCII punctuation character after it.
_ESCAPE_PAIR = re.compile(r"\\(.)")


def unescaped(text: str, chars: str) -> list[str]:
    """Return the characters of ``chars`` in ``text`` that no backslash escapes."""
    found = []
    escaped = False
    for char in text:
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif char in chars:
            found.append(char)
    return found


def visible(escaped_text: str) -> str:
    """Return the text a CommonMark reader shows for ``escaped_text``."""
    return _ESCAPE_PAIR.sub(r"\1", escaped_text)


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_canvas_text_opens_no_markup(text: str) -> None:
    out = canvas_text(text, 200)

    assert "\n" not in out
    assert "\r" not in out
    assert unescaped(out, "|[]()!<>`*_#~") == []
    assert re.search(r"(?i)[a-z0-9]://", out) is None
    assert re.search(r"(?i)www\.", out) is None


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_canvas_text_keeps_visible_text(text: str) -> None:
    out = canvas_text(text, 200)

    assert visible(out) == single_line(text)


def test_canvas_text_breaks_url_scheme() -> None:
    assert canvas_text("http://evil", 100) == "http\\://evil"


def test_canvas_text_breaks_www() -> None:
    assert canvas_text("www.evil.com", 100) == "www\\.evil.com"


def test_canvas_text_drops_control_and_bidi_characters() -> None:
    out = canvas_text("ok\x00\x07\u202eevil\u200b", 100)

    assert out == "okevil"


def test_canvas_text_cuts_long_text() -> None:
    out = canvas_text("word " * 100, 50)

    assert len(visible(out)) <= 50
    assert out.endswith(ELLIPSIS)


def test_canvas_text_cuts_before_escaping() -> None:
    out = canvas_text("|" * 100, 20)

    assert visible(out) == "|" * 19 + ELLIPSIS
    assert unescaped(out, "|") == []


def test_canvas_text_of_nothing_is_empty() -> None:
    assert canvas_text(None, 10) == ""
    assert canvas_text("", 10) == ""


def test_truncate_keeps_short_text() -> None:
    assert truncate("abc", 3) == "abc"


def test_truncate_cuts_to_exact_length() -> None:
    out = truncate("abcdefghij", 5)

    assert out == "abcd" + ELLIPSIS
    assert len(out) == 5


def test_single_line_folds_white_space() -> None:
    assert single_line("  a\n\n b\t c  ") == "a b c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!channel> now", "&lt;!channel&gt; now"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<https://evil|click>", "&lt;https://evil|click&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;!here&gt;", "&amp;lt;!here&amp;gt;"),
    ],
)
def test_mrkdwn_text_escapes_control_characters(text: str, expected: str) -> None:
    assert mrkdwn_text(text, 100) == expected


def test_mrkdwn_text_cuts_long_text() -> None:
    out = mrkdwn_text("x" * 300, 100)

    assert len(out) == 100
    assert out.endswith(ELLIPSIS)


def test_plain_text_cuts_and_folds() -> None:
    out = plain_text("a\nb" + "c" * 100, 10)

    assert out == "a bcccccc" + ELLIPSIS
