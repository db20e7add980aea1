"""HTML replies: the quote containers mail clients write, removed where they trail the new text, then text.

Two kinds of markers. Some clients open their quoted history with a marker and put the history after it as
siblings (Outlook's header div and rule, Thunderbird's attribution and forward containers): everything from the
first such marker on is history. Others wrap the history in a container (Gmail's gmail_quote, Yahoo's
yahoo_quoted, ProtonMail's, Zimbra's, any <blockquote>): a container is history when only other history, white
space or a signature follows it; one the human wrote below is part of an inline reply and stays (Mailspring's
rule); one that holds the whole body is a wrapper (archives and some clients wrap), and the containers inside it
are judged instead.
"""

from __future__ import annotations

import html as htmllib
import re
from typing import NamedTuple

_Q = "[\"']?"  # attribute values come double-quoted, single-quoted or bare
# Everything from here on is history (the marker is a sibling of the history, not its container).
_SECTION_MARKERS = [
    # Outlook desktop / web / Hotmail: the header div, the rule above it, the "append on send" anchor
    rf"<div[^>]+id={_Q}divRplyFwdMsg",
    rf"<div[^>]+id={_Q}appendonsend",
    r"<div[^>]+style=[\"'][^\"']*border-top:\s*solid\s+#(?:B5C4DF|E1E1E1)",
    rf"<hr[^>]+id={_Q}stopSpelling",
    rf"<div[^>]+class={_Q}OutlookMessageHeader",
    rf"<span[^>]+id={_Q}OLK_SRC_BODY_SECTION",
    # Thunderbird: the attribution line above its blockquote
    rf"<div[^>]+class={_Q}moz-cite-prefix",
]
# A forwarded message: history too, and worth saying so.
_FORWARD_MARKERS = [
    rf"<div[^>]+class={_Q}moz-forward-container",  # Thunderbird
]
# Containers of history: Gmail, Yahoo, Zimbra, ProtonMail, AOL, Yandex and any blockquote (Apple Mail's
# type=cite, Gmail's class=gmail_quote, Outlook's for plain quoting).
_CONTAINER_MARKERS = [
    rf"<div[^>]+class={_Q}[^>]*\bgmail_quote\b",
    rf"<div[^>]+(?:class|id)={_Q}(?:ydp[a-z0-9]*)?yahoo_quoted",
    rf"<div[^>]+class={_Q}zmail_extra",
    rf"<div[^>]+data-marker={_Q}__QUOTED_TEXT__",
    rf"<div[^>]+class={_Q}protonmail_quote",
    rf"<div[^>]+id={_Q}AOLMsgPart",
    r"<blockquote\b",
]
_SECTION_RE = re.compile("|".join(_SECTION_MARKERS), re.IGNORECASE)
_FORWARD_RE = re.compile("|".join(_FORWARD_MARKERS), re.IGNORECASE)
_CONTAINER_RE = re.compile("|".join(_CONTAINER_MARKERS), re.IGNORECASE)
_TAG_RE = {name: re.compile(rf"<(/?){name}\b[^>]*>", re.IGNORECASE) for name in ("div", "blockquote")}
# A signature the client marks (Gmail, Thunderbird, Outlook) does not make the text above it an inline reply.
_SIGNATURE_RE = re.compile(rf"<div[^>]+(?:class|id)={_Q}(?:gmail_signature|moz-signature|Signature)\b", re.IGNORECASE)
_DELIMITER_BEFORE_RE = re.compile(r"(?i)--(?:\s|&nbsp;|&#160;)*<br\s*/?>\s*$")
_INVISIBLE_RE = re.compile(r"(?s)<!--.*?-->|<(script|style|head|title)\b.*?</\1\s*>|<[^>]*>|&nbsp;|&#160;|[\s\-_]+")
_BREAK = re.compile(r"(?i)<br\s*/?>")
_BLOCK_EDGE = re.compile(r"(?i)</(?:p|div|tr|li|h[1-6]|blockquote|pre|table)\s*>|(?=<(?:p|div|tr|li|h[1-6]|hr)[\s/>])")


class Stripped(NamedTuple):
    markup: str
    inline: bool  # a quote the human wrote below was kept: the text is an inline reply, read as it is
    forwarded: bool


def html_to_text(markup: str) -> str:
    """Readable text from HTML: blocks become lines, entities are decoded, nothing else is interpreted."""
    text = re.sub(r"(?is)<(script|style|head|title)\b.*?</\1\s*>", "", markup)
    text = re.sub(r"(?is)<!--.*?-->", "", text)
    text = _BREAK.sub("\n", text)
    text = _BLOCK_EDGE.sub("\x00", text)  # block edges: one line break however many meet
    text = re.sub(r"(?s)<[^>]*>", "", text)
    text = re.sub(r"[ \t]*\x00(?:[ \t]*\x00)*[ \t]*", "\n", text)
    text = htmllib.unescape(text).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _visible(markup: str) -> bool:
    return bool(_INVISIBLE_RE.sub("", markup))


def _only_signature(markup: str) -> bool:
    """Whether what follows a quote is nothing, or only a signature: the client's marked one, or text under a
    "-- " line shaped as talon reads signatures (a few lines, none longer than 60 characters)."""
    markup = _without_signatures(markup)
    if not _visible(markup):
        return True
    lines = [x.strip() for x in html_to_text(markup).splitlines() if x.strip()]
    return len(lines) <= 16 and lines[0].rstrip() in ("--", "__", "-- ") and all(len(x) <= 60 for x in lines)


def _element_end(markup: str, start: int) -> int:
    """Where the element opening at ``start`` closes (its end tag balanced against nested ones of its name), or
    the end of the markup when it never does."""
    name = "blockquote" if markup[start + 1 : start + 3].lower() == "bl" else "div"
    depth = 0
    for tag in _TAG_RE[name].finditer(markup, start):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            return tag.end()
    return len(markup)


def _without_signatures(markup: str) -> str:
    """The markup without the signatures its client marked, each with the "-- " line Gmail writes above it."""
    out, pos = [], 0
    for found in _SIGNATURE_RE.finditer(markup):
        if found.start() < pos:
            continue
        out.append(_DELIMITER_BEFORE_RE.sub("", markup[pos : found.start()]))
        pos = _element_end(markup, found.start())
    out.append(markup[pos:])
    return "".join(out)


def _containers(markup: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The outermost quote containers between lo and hi, in order."""
    found: list[tuple[int, int]] = []
    pos = lo
    while True:
        match = _CONTAINER_RE.search(markup, pos, hi)
        if match is None:
            return found
        end = min(_element_end(markup, match.start()), hi)
        found.append((match.start(), end))
        pos = end


def strip_quotes(markup: str) -> Stripped:
    """The markup without its trailing quoted history."""
    forwarded = False
    section = _SECTION_RE.search(markup)
    forward = _FORWARD_RE.search(markup)
    if forward is not None and (section is None or forward.start() <= section.start()):
        section, forwarded = forward, True
    if section is not None:
        markup = markup[: section.start()]
    containers = _containers(markup, 0, len(markup))
    # A container that holds all there is to see is a wrapper: judge the ones inside it instead.
    while len(containers) == 1:
        start, end = containers[0]
        if _visible(markup[:start]) or _visible(markup[end:]):
            break
        opening = markup.index(">", start) + 1 if ">" in markup[start:end] else end
        inner = _containers(markup, opening, end)
        if not inner:
            break  # nothing but a quote: no new text (never the quote handed back as the human's words)
        containers = inner
    cut = None
    for start, end in reversed(containers):
        following = markup[end : cut if cut is not None else len(markup)]
        if not _only_signature(following):
            break
        cut = start
    if cut is None:
        return Stripped(markup, bool(containers), forwarded)
    kept = containers[0][0] < cut
    return Stripped(markup[:cut], kept, forwarded)
