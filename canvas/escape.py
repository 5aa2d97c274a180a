"""Escaping of outside text (webhook, EPM) for canvas markdown and Slack mrkdwn.

Text from a webhook must not break a table, add a link or an image, or mention
anyone. Canvas markdown renders ``![](@U123)`` as a mention and ``[text](url)`` as
a link, so the characters that open markdown constructs are backslash-escaped
(CommonMark escapes; GFM tables take a backslash before a pipe too), and bare URLs
are broken so that they do not autolink or unfurl.

NOTE: Slack documents no escaping for canvas markdown. This relies on its parser
honouring CommonMark backslash escapes; if it does not, readers see the backslashes,
but the text still cannot form a link, image, mention or table cell.
"""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation character.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()#!|<>~])")
_URL_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):/")
_WWW = re.compile(r"(?i)\b(www)\.")
_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u2028\u2029\u202a-\u202e]")

ELLIPSIS = "…"


def truncate(text: str, max_length: int) -> str:
    """Cut ``text`` to ``max_length`` characters, ending with an ellipsis if cut."""
    if len(text) <= max_length:
        return text
    return text[: max_length - 1].rstrip() + ELLIPSIS


def single_line(text: str) -> str:
    """Fold line breaks and runs of white space into single spaces, drop controls."""
    return _WHITESPACE.sub(" ", _CONTROL.sub("", text)).strip()


def canvas_text(text: str | None, max_length: int) -> str:
    """Make outside text safe for a canvas table cell or heading."""
    if not text:
        return ""
    cleaned = truncate(single_line(text), max_length)
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", cleaned)
    escaped = _URL_SCHEME.sub(r"\1\\:/", escaped)
    return _WWW.sub(r"\1\\.", escaped)


def mrkdwn_text(text: str | None, max_length: int) -> str:
    """Make outside text safe for Slack mrkdwn (messages, Block Kit sections).

    Slack's documented escaping is ``&``, ``<`` and ``>`` as HTML entities, which is
    what keeps ``<!channel>`` and ``<@U123>`` from notifying anyone. mrkdwn has no
    backslash escape, so ``*bold*`` in the text still renders bold; that is harmless.
    """
    if not text:
        return ""
    cleaned = truncate(single_line(text), max_length)
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain_text(text: str | None, max_length: int) -> str:
    """Cut outside text for a Block Kit ``plain_text`` object (no markup there)."""
    if not text:
        return ""
    return truncate(single_line(text), max_length)
