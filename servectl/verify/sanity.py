"""Is this model output language or gibberish? Pure; no server needed.

Built for the failure modes a broken quantized deployment shows (e.g. FP8 KV cache on a hybrid
model): loops of one token or phrase, characters that are not language (replacement characters,
control codes, a mix of scripts), and token salad (sub-word fragments that are not words).
The salad test scores words with the `wordfreq` frequency lists (English, since the checks
prompt in English); a word is "known" at Zipf >= 2 (about 1 in 10^7 words).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass, field

_ALLOWED_PUNCT = set(".,;:!?'\"()[]{}-–—…/*#%&+=<>@_`~|$€£’‘“”\\")
KNOWN_ZIPF = 2.0
# one character 16+ times in a row; markdown rules (---, ===, ___, ***, ###) and spaces are fine
_CHAR_RUN = re.compile(r"([^\s\-=_*#~.])\1{15,}")


@dataclass(frozen=True)
class Verdict:
    """ok is False when any signal fires; reasons say which, scores give the numbers."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


def _scripts(text: str) -> set[str]:
    """Unicode scripts of the letters (first word of the character name: LATIN, CYRILLIC, CJK, ...)."""
    out = set()
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "UNKNOWN")
            out.add("CJK" if name.startswith(("CJK", "HIRAGANA", "KATAKANA")) else name.split(" ")[0])
    return out


def _longest_run(items: list[str]) -> int:
    best = run = 0
    prev = None
    for item in items:
        run = run + 1 if item == prev else 1
        best, prev = max(best, run), item
    return best


def _known_fraction(words: list[str], numbers_ok: bool) -> float:
    from wordfreq import zipf_frequency  # imported lazily: loading the lists takes ~0.5 s

    scored = [w for w in words if len(w) > 1 or not w.isalpha()]
    if not scored:
        return 1.0
    known = sum(
        1 for w in scored if (w.isdigit() and numbers_ok) or (w.isalpha() and zipf_frequency(w.lower(), "en") >= KNOWN_ZIPF)
    )
    return known / len(scored)


def assess(text: str) -> Verdict:
    """Judge one completion. Short answers are judged only on what they can show."""
    text = text.strip()
    if not text:
        return Verdict(False, ["empty output"], {})
    reasons: list[str] = []
    scores: dict[str, float] = {}

    odd = sum(1 for ch in text if not (ch.isalnum() or ch.isspace() or ch in _ALLOWED_PUNCT))
    scores["non_language_chars"] = round(odd / len(text), 3)
    if "\ufffd" in text:
        reasons.append("replacement characters (broken byte sequences)")
    if scores["non_language_chars"] > 0.15:
        reasons.append(f"{scores['non_language_chars']:.0%} of characters are not language")
    alnum = sum(1 for ch in text if ch.isalnum())
    scores["letters_and_digits"] = round(alnum / len(text), 3)
    if len(text) >= 8 and scores["letters_and_digits"] < 0.3:
        reasons.append("hardly any letters")
    run = max((m.group(0) for m in _CHAR_RUN.finditer(text)), key=len, default="")
    scores["longest_char_run"] = len(run)
    if run:
        reasons.append(f"{run[0]!r} repeated {len(run)} times (the FP8-KV-cache collapse looks like this)")
    scripts = _scripts(text)
    scores["scripts"] = len(scripts)
    if len(scripts) >= 3:
        reasons.append(f"letters from {len(scripts)} writing systems ({', '.join(sorted(scripts))})")

    tokens = text.split()
    scores["longest_repeat_run"] = _longest_run([t.lower() for t in tokens])
    if scores["longest_repeat_run"] >= 4:  # prose almost never says one word four times running
        reasons.append(f"one word repeated {scores['longest_repeat_run']} times in a row")
    if len(text) >= 200:
        ratio = len(zlib.compress(text.encode())) / len(text.encode())
        scores["compression_ratio"] = round(ratio, 3)
        if ratio < 0.2:
            reasons.append(f"highly repetitive (compresses to {ratio:.0%})")
    if len(tokens) >= 24:
        trigrams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
        top = Counter(trigrams).most_common(1)[0][1]
        scores["top_trigram_share"] = round(top * 3 / len(tokens), 3)
        if top >= 4 and scores["top_trigram_share"] > 0.3:
            reasons.append("a phrase loops")
    stripped = [w for w in (t.strip("".join(_ALLOWED_PUNCT)) for t in tokens) if w]
    if len(stripped) >= 8:
        # share of whitespace-separated tokens that are known words once punctuation is stripped:
        # prose scores ~0.9; sub-word fragments and markup drive it down. Numbers count as words
        # in prose that merely mentions some, not in a stream that is mostly numbers.
        numeric = sum(1 for w in stripped if w.isdigit())
        numbers_ok = numeric <= 0.3 * len(stripped)
        scores["known_words"] = round(_known_fraction(stripped, numbers_ok), 3)
        if scores["known_words"] < 0.6:
            reasons.append(f"token salad: only {scores['known_words']:.0%} of the words are words")
    return Verdict(not reasons, reasons, scores)
