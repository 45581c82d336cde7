"""Streamed text cut into speakable pieces, and cleaned of what is not meant to be read aloud.

An LLM streams text in fragments that split words, numbers and markdown. ``Chunker``
collects them and cuts at sentence ends and, where it keeps latency down, at clause
ends, dropping fenced code on the way. ``clean`` strips markdown, emoji and markup from
a piece; ``services.tts.verbalize`` then spells out numbers and abbreviations.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from services.tts.verbalize import verbalize

# Shortest piece that may end at a clause, for the 1st, 2nd and later pieces of an
# utterance: the first sound comes early, the second is ready before the first ends,
# and later ones keep whole sentences where they are not too long.
MIN_CLAUSE_CHARS = (1, 20, 60)
# The first piece of an utterance ends after this many words even with no boundary:
# the model streams ~15-25 ms a token, and a long first clause would hold the first sound.
# Three words (~70 ms of Piper, ~0.8 s of speech) gave the first audio ~20 ms sooner than
# five, and the next piece was still ready before the first had played.
FIRST_PIECE_MAX_WORDS = 3
# Silence kept before each piece, and after one that ends in a clause or between two words
# (the first piece's cut): the voice ends every synthesis with a sentence's pause (~200 ms),
# which between two words of one phrase is a stumble.
LEAD_SILENCE_MS = 20
CLAUSE_PAUSE_MS = 150
WORD_GAP_MS = 30
# Longer text with no boundary is cut at a space so no single synthesis runs long.
MAX_PIECE_CHARS = 300
FENCE = "```"

# What may close a sentence or clause after its punctuation: quotes, brackets, Markdown emphasis.
_CLOSERS = "\"'”’)]*_~`"
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]*_~`]*(?=\s)|\n")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[-–—]|[–—])[\"'”’)\]*_~`]*(?=\s)")
# Words whose final dot does not end a sentence.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "approx", "no", "fig"}
    | {"mt", "ft", "sgt", "capt", "gen", "col", "lt", "gov", "sen", "rep", "rev", "hon"}
)
_WORD = re.compile(r"\S+(?=\s)")
_LIST_MARKER = re.compile(r"(?:^|\n)\s*(?:\d+|[a-zA-Z])[.)]$")


@dataclass(frozen=True)
class Piece:
    """One synthesis: ``text`` as written (markup removed), ``speech`` as it is to be said."""

    text: str
    speech: str


def _is_sentence_end(text: str, end: int) -> bool:
    """Whether the punctuation ending at ``end`` ends a sentence and not "Dr." or "1."."""
    head = text[:end].rstrip(_CLOSERS)
    if not head.endswith(".") or head.endswith(".."):
        return True
    if _LIST_MARKER.search(head):
        return False
    word = re.split(r"[\s(\[\"'“‘]", head[:-1])[-1]
    if "." in word or (len(word) == 1 and word.isalpha()):
        return False  # "e.g.", "U.S.", initials
    return word.lower() not in _ABBREVIATIONS


class Chunker:
    """Cuts streamed text into pieces; one per stream, reset at each flush or cancel."""

    def __init__(self) -> None:
        self._raw = ""  # received, not yet checked for code fences
        self._pending = ""  # outside code fences, not yet cut
        self._in_fence = False
        self._emitted = 0

    def push(self, fragment: str) -> list[Piece]:
        """Add streamed text; return the pieces it completes."""
        pieces = []
        # A long text goes in a bit at a time so that what is pending stays short.
        for start in range(0, len(fragment), MAX_PIECE_CHARS):
            self._raw += fragment[start : start + MAX_PIECE_CHARS]
            self._drop_fenced_code()
            while (cut := self._next_cut()) is not None:
                pieces.extend(self._emit(cut))
        return pieces

    def flush(self) -> list[Piece]:
        """Everything pending, an unfinished sentence too; the next text starts a new utterance."""
        if not self._in_fence:
            self._pending += self._raw
            self._raw = ""
        pieces = []
        while (cut := self._next_cut()) is not None:
            pieces.extend(self._emit(cut))
        pieces.extend(self._emit(len(self._pending)))
        self._emitted = 0
        return pieces

    def clear(self) -> None:
        """Drop everything pending."""
        self._raw = self._pending = ""
        self._in_fence = False
        self._emitted = 0

    def _drop_fenced_code(self) -> None:
        while True:
            if self._in_fence:
                end = self._raw.find(FENCE)
                if end < 0:
                    # Keep a trailing backtick or two: they may begin the closing fence.
                    self._raw = self._raw[len(self._raw.rstrip("`")) :][-2:]
                    return
                self._raw = self._raw[end + len(FENCE) :]
                self._in_fence = False
                continue
            start = self._raw.find(FENCE)
            if start < 0:
                keep = len(self._raw) - len(self._raw.rstrip("`"))
                self._pending += self._raw[: len(self._raw) - keep]
                self._raw = self._raw[len(self._raw) - keep :]
                return
            self._pending += self._raw[:start] + "\n"
            self._raw = self._raw[start + len(FENCE) :]
            self._in_fence = True

    def _next_cut(self) -> int | None:
        """Where the next piece ends in ``_pending``, or None to wait for more text."""
        # A cut needs the character after it, so look one past the longest piece.
        text = self._pending[: MAX_PIECE_CHARS + 1]
        min_clause = MIN_CLAUSE_CHARS[min(self._emitted, len(MIN_CLAUSE_CHARS) - 1)]
        best: int | None = None
        for match in _SENTENCE_END.finditer(text):
            if match.group() == "\n" or _is_sentence_end(text, match.end()):
                best = match.end()
                break
        for match in _CLAUSE_END.finditer(text, 0, best if best is not None else len(text)):
            if match.end() >= min_clause and text[: match.end()].strip(" ,;:-–—"):
                best = match.end()
                break
        if best is not None:
            return best
        if self._emitted == 0:
            words = list(_WORD.finditer(text))
            if len(words) >= FIRST_PIECE_MAX_WORDS:
                return words[FIRST_PIECE_MAX_WORDS - 1].end()
        if len(self._pending) <= MAX_PIECE_CHARS:
            return None
        window = text[:MAX_PIECE_CHARS]
        clauses = [m.end() for m in _CLAUSE_END.finditer(window)]
        if clauses:
            return clauses[-1]
        space = window.rfind(" ")
        return space if space > 0 else MAX_PIECE_CHARS

    def _emit(self, cut: int) -> list[Piece]:
        raw, self._pending = self._pending[:cut], self._pending[cut:].lstrip()
        piece = to_piece(raw)
        if piece is None:
            return []
        self._emitted += 1
        return [piece]


def pause_after_ms(text: str) -> int | None:
    """The silence to keep after a piece that ends ``text``; None: the voice's own (a sentence)."""
    end = text.rstrip().rstrip(_CLOSERS)[-1:]
    if not end or end in ".!?…":
        return None
    return CLAUSE_PAUSE_MS if end in ",;:-–—" else WORD_GAP_MS


def to_piece(raw: str) -> Piece | None:
    """``raw`` cleaned and spelled out, or None when nothing in it is speakable."""
    text = clean(raw)
    speech = verbalize(text)
    if not any(ch.isalnum() for ch in speech):
        return None
    return Piece(text=text, speech=speech)


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)([^\s/]+)\S*")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_LINE_MARKUP = re.compile(
    r"^\s*(?:#{1,6}\s+|>+\s?|[-*+•]\s+|\d+[.)]\s+|[-*_=]{3,}\s*$|\|?[-:| ]+\|[-:| ]*$)", re.M
)
_EMPHASIS = re.compile(r"(\*{1,3}|_{1,3}|~~)(?=\S)(.+?)(?<=\S)\1")
# Kept although unicodedata calls them symbols: "°C" is spoken.
_SPOKEN_SYMBOLS = frozenset("°")
_INVISIBLE = frozenset("\u200d\ufe0e\ufe0f\u20e3")


def _drop_emoji(text: str) -> str:
    return "".join(
        ch
        for ch in text
        if ch in _SPOKEN_SYMBOLS
        or (ch not in _INVISIBLE and unicodedata.category(ch) not in ("So", "Sk", "Cs", "Co", "Cn"))
    )


def clean(text: str) -> str:
    """Markdown, links, HTML, emoji and stray symbols removed; whitespace collapsed."""
    text = text.replace(FENCE, " ")
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _LINE_MARKUP.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = re.sub(r"^\s*\||\|\s*$", "", text, flags=re.M)
    text = text.replace("`", "").replace("|", ", ")
    text = re.sub(r"[*~^<>\\{}\[\]]|#(?!\d)", " ", text)
    text = re.sub(r"(?<=\w)_(?=\w)", " ", text).replace("_", " ")
    text = _drop_emoji(text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    return re.sub(r"\s+", " ", text).strip().lstrip(",;: ")
