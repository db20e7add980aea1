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

import functools
import html as htmllib
import itertools
import re
from typing import NamedTuple

_Q = "[\"']?"  # attribute values come double-quoted, single-quoted or bare
# Each marker: a word that must be in the markup for it to be there at all (a cheap test that spares most mails
# the patterns), and the pattern after the "<".
_Marker = tuple[str, str]
# Everything from here on is history (the marker is a sibling of the history, not its container).
_SECTION_MARKERS: list[_Marker] = [
    # Outlook desktop / web / Hotmail: the header div, the rule above it, the "append on send" anchor
    ("divrplyfwdmsg", rf"div[^>]+id={_Q}divRplyFwdMsg"),
    ("appendonsend", rf"div[^>]+id={_Q}appendonsend"),
    ("border-top", r"div[^>]+style=[\"'][^\"']*border-top:\s*solid\s+#(?:B5C4DF|E1E1E1)"),
    ("stopspelling", rf"hr[^>]+id={_Q}stopSpelling"),
    ("outlookmessageheader", rf"div[^>]+class={_Q}OutlookMessageHeader"),
    ("olk_src_body_section", rf"span[^>]+id={_Q}OLK_SRC_BODY_SECTION"),
    # Thunderbird: the attribution line above its blockquote
    ("moz-cite-prefix", rf"div[^>]+class={_Q}moz-cite-prefix"),
]
# A forwarded message: history too, and worth saying so.
_FORWARD_MARKERS: list[_Marker] = [
    ("moz-forward-container", rf"div[^>]+class={_Q}moz-forward-container"),  # Thunderbird
]
# Containers of history: Gmail, Yahoo, Zimbra, ProtonMail, AOL, Yandex and any blockquote (Apple Mail's
# type=cite, Gmail's class=gmail_quote, Outlook's for plain quoting).
_CONTAINER_MARKERS: list[_Marker] = [
    ("gmail_quote", rf"div[^>]+class={_Q}[^>]*\bgmail_quote\b"),
    ("yahoo_quoted", rf"div[^>]+(?:class|id)={_Q}(?:ydp[a-z0-9]*)?yahoo_quoted"),
    ("zmail_extra", rf"div[^>]+class={_Q}zmail_extra"),
    ("__quoted_text__", rf"div[^>]+data-marker={_Q}__QUOTED_TEXT__"),
    ("protonmail_quote", rf"div[^>]+class={_Q}protonmail_quote"),
    ("aolmsgpart", rf"div[^>]+id={_Q}AOLMsgPart"),
    ("blockquote", r"blockquote\b"),
]


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    # One pattern per combination, starting with a literal "<" so the search skips ahead at C speed.
    return re.compile("<(?:" + "|".join(patterns) + ")", re.IGNORECASE) if patterns else None


def _marker_re(markers: list[_Marker], lowered: str) -> re.Pattern[str] | None:
    return _compiled(tuple(pattern for word, pattern in markers if word in lowered))


_STEP = {"": 1, "/": -1}
_TAG_RE = {name: re.compile(rf"<(/?){name}\b[^>]*>", re.IGNORECASE) for name in ("div", "blockquote")}
# A signature the client marks (Gmail, Thunderbird, Outlook) does not make the text above it an inline reply.
_SIGNATURE_RE = re.compile(rf"<div[^>]+(?:class|id)={_Q}(?:gmail_signature|moz-signature|Signature)\b", re.IGNORECASE)
_DELIMITER_BEFORE_RE = re.compile(r"(?i)--(?:\s|&nbsp;|&#160;)*<br\s*/?>\s*$")
# Each tag (its name, "/name" for a closing one) with the text that follows it, up to the next tag.
_TEXT_AFTER_TAG_RE = re.compile(r"(?:^|<(/?[!\w-]*)[^>]*>)([^<]*)")
_WORDY_RE = re.compile(r"[^\W_]|&(?!nbsp;|#160;)\w+;")
_BREAK = re.compile(r"(?i)<br\s*/?>")
# A block element's edge (opening or closing): a NUL before it marks a line break, however many edges meet.
_BLOCK_EDGE = re.compile(r"(?i)<(?=/?(?:p|div|tr|li|h[1-6]|blockquote|pre|table|hr)[\s/>])")
_HIDDEN_RE = re.compile(r"(?is)<(script|style|head|title)\b.*?</\1\s*>")
_COMMENT_RE = re.compile(r"(?s)<!--.*?-->")
_TAG_ANY_RE = re.compile(r"(?s)<[^>]*>")
_EDGES_RE = re.compile(r"\x00[ \t\x00]*")


class Stripped(NamedTuple):
    markup: str
    inline: bool  # a quote the human wrote below was kept: the text is an inline reply, read as it is
    forwarded: bool


def html_to_text(markup: str) -> str:
    """Readable text from HTML: blocks become lines, entities are decoded, nothing else is interpreted."""
    lowered = markup.lower()
    text = markup
    if "<script" in lowered or "<style" in lowered or "<head" in lowered or "<title" in lowered:
        text = _HIDDEN_RE.sub("", text)
    if "<!--" in text:
        text = _COMMENT_RE.sub("", text)
    text = _BREAK.sub("\n", text)
    text = _BLOCK_EDGE.sub("\x00<", text)
    text = _TAG_ANY_RE.sub("", text)
    text = _EDGES_RE.sub("\n", text)
    if "&" in text:
        text = htmllib.unescape(text)
    text = text.replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _visible(markup: str) -> bool:
    """Whether the markup shows any text (a letter or digit, not only white space, rules or entities for space).
    Stops at the first such text: a mail's markup is long, its visible text starts early."""
    hidden = ""
    for found in _TEXT_AFTER_TAG_RE.finditer(markup):
        tag, text = (found.group(1) or "").lower(), found.group(2)
        if hidden:
            if tag == "/" + hidden:
                hidden = ""
            continue
        if tag in ("script", "style", "head", "title"):
            hidden = tag
            continue
        if tag.startswith("!--"):
            continue
        if _WORDY_RE.search(text.replace("&nbsp;", " ").replace("&#160;", " ")):
            return True
    return False


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
    tags = _TAG_RE["blockquote" if markup[start + 1 : start + 3].lower() == "bl" else "div"]
    # The depth after each tag, computed at C speed (a mail may nest hundreds of divs), then the closing tag.
    depths = list(itertools.accumulate(map(_STEP.__getitem__, tags.findall(markup, start))))
    try:
        closing = depths.index(0)
    except ValueError:
        return len(markup)
    return next(itertools.islice(tags.finditer(markup, start), closing, None)).end()


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


def _containers(markup: str, lo: int, hi: int, pattern: re.Pattern[str] | None) -> list[tuple[int, int]]:
    """The outermost quote containers between lo and hi, in order."""
    found: list[tuple[int, int]] = []
    pos = lo
    while pattern is not None:
        match = pattern.search(markup, pos, hi)
        if match is None:
            break
        end = min(_element_end(markup, match.start()), hi)
        found.append((match.start(), end))
        pos = end
    return found


def strip_quotes(markup: str) -> Stripped:
    """The markup without its trailing quoted history."""
    lowered = markup.lower()
    forwarded = False
    section_re, forward_re = _marker_re(_SECTION_MARKERS, lowered), _marker_re(_FORWARD_MARKERS, lowered)
    section = section_re.search(markup) if section_re is not None else None
    forward = forward_re.search(markup) if forward_re is not None else None
    if forward is not None and (section is None or forward.start() <= section.start()):
        section, forwarded = forward, True
    if section is not None:
        markup = markup[: section.start()]
    container_re = _marker_re(_CONTAINER_MARKERS, lowered)
    containers = _containers(markup, 0, len(markup), container_re)
    # A container that holds all there is to see is a wrapper: judge the ones inside it instead.
    while len(containers) == 1:
        start, end = containers[0]
        if _visible(markup[:start]) or _visible(markup[end:]):
            break
        opening = markup.index(">", start) + 1 if ">" in markup[start:end] else end
        inner = _containers(markup, opening, end, container_re)
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
