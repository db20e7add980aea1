"""What a reply decides: an approval starts with an approve word; anything else is feedback (a rejection)."""

from __future__ import annotations

import re
from typing import Literal

Decision = Literal["approve", "reject"]

_APPROVE_WORDS = frozenset(
    [
        "approve",
        "approved",
        "approves",
        "approving",
        "approval",
        "accept",
        "accepted",
        "agree",
        "agreed",
        "confirm",
        "confirmed",
        "yes",
        "yep",
        "yeah",
        "yup",
        "y",
        "ok",
        "okay",
        "okey",
        "k",
        "kk",
        "lgtm",
        "sure",
        "fine",
        "granted",
        "allow",
        "allowed",
        "authorized",
        "authorised",
        "proceed",
        "+1",
        "ack",
        "affirmative",
        "ja",
        "jawohl",
        "genehmigt",
        "genehmige",
        "einverstanden",
        "zugestimmt",
        "freigegeben",
        "passt",
        "oui",
        "approuvé",
        "approuve",
        "validé",
        "valide",
        "accepté",
        "sí",
        "si",
        "aprobado",
        "apruebo",
        "vale",
        "claro",
        "dale",
        "sì",
        "approvato",
        "approvo",
        "certo",
        "va",
        "bene",
        "akkoord",
        "goedgekeurd",
        "prima",
        "godkänd",
        "godkänt",
        "godkendt",
        "godkjent",
        "jo",
        "tak",
        "zatwierdzam",
        "zatwierdzone",
        "zgoda",
        "da",
        "одобряю",
        "одобрено",
        "да",
        "ок",
        "согласен",
        "sim",
        "aprovado",
        "aprovo",
        "claro",
        "evet",
        "onay",
        "kabul",
        "はい",
        "承認",
        "承認します",
        "了解",
        "ok",
        "です",
        "好",
        "好的",
        "同意",
        "批准",
        "可以",
        "是",
        "네",
        "승인",
        "예",
        "igen",
        "jóváhagyva",
        "ano",
        "schváleno",
        "schvaluji",
        "kyllä",
        "hyväksytty",
        "hyväksyn",
        "ναι",
        "εγκρίνεται",
    ]
)
_APPROVE_PHRASES = (
    "go ahead",
    "go for it",
    "sounds good",
    "looks good",
    "ship it",
    "do it",
    "all good",
    "good to go",
    "let's go",
    "lets go",
    "mach es",
    "mach das",
    "c'est bon",
    "d'accord",
    "vas-y",
    "adelante",
    "de acuerdo",
    "va bene",
    "ga je gang",
    "prosseguir",
    "pode seguir",
)
_APPROVE_EMOJI = ("👍", "✅", "✔", "☑", "👌", "🆗", "💯")
# A yes that comes with a condition is feedback, not approval: "ok, but change the subject".
_QUALIFIER_RE = re.compile(
    r"^\W*(?:but|however|except|only if|unless|although|though|aber|jedoch|außer|ausser|mais|sauf|pero|excepto|"
    r"salvo|però|tranne|maar|behalve|men|utom|ale|но|кроме|mas|exceto|ama|fakat|しかし|但是|不过)\b",
    re.I,
)
_FIRST_TOKEN_RE = re.compile(r"^\s*([^\s,.!?;:()\[\]\"'«»、。！？，：；]+)")


def parse_decision(text: str) -> tuple[Decision, str]:
    """("approve", the rest as comment) when the reply starts with an approve word; else ("reject", the text).

    The comment is the human's feedback for the agent, so a rejection keeps all of the new text. Anything that is
    not text is a rejection without comment.
    """
    if not isinstance(text, str):
        return "reject", ""
    stripped = text.strip()
    lowered = stripped.lower()
    rest: str | None = None
    for emoji in _APPROVE_EMOJI:
        if stripped.startswith(emoji):
            rest = stripped[len(emoji) :].lstrip("\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")
            break
    if rest is None:
        for phrase in _APPROVE_PHRASES:
            if lowered.startswith(phrase) and not lowered[len(phrase) : len(phrase) + 1].isalnum():
                rest = stripped[len(phrase) :]
                break
    if rest is None:
        match = _FIRST_TOKEN_RE.match(stripped)
        if match and match.group(1).lower() in _APPROVE_WORDS:
            rest = stripped[match.end() :]
    if rest is None or rest.lstrip().startswith("?") or _QUALIFIER_RE.match(rest):
        return "reject", stripped
    comment = rest.lstrip(" \t,.!:;-–—、，。：！").strip()
    return "approve", comment
