"""The TTS text chunker, cleaner and verbaliser: pure functions, no model."""

from __future__ import annotations

import re
import time

import pytest

from services.tts.text import FIRST_PIECE_MAX_WORDS, MAX_PIECE_CHARS, Chunker, Piece, clean
from services.tts.verbalize import cardinal, ordinal, verbalize, year


def stream(text: str, size: int = 3) -> list[Piece]:
    """Feed ``text`` the way an LLM streams it: tokens cut into a few characters each."""
    chunker = Chunker()
    pieces = []
    for token in re.findall(r"\S*\s*", text):
        for start in range(0, len(token), size):
            pieces += chunker.push(token[start : start + size])
    return pieces + chunker.flush()


def texts(pieces: list[Piece]) -> list[str]:
    return [piece.text for piece in pieces]


def test_first_piece_ends_at_first_clause_later_ones_at_sentences() -> None:
    pieces = stream("Sure, here is the plan for today. We meet at noon, then we walk. Bye.")
    assert texts(pieces) == ["Sure,", "here is the plan for today.", "We meet at noon, then we walk.", "Bye."]


def test_a_long_first_clause_is_cut_after_a_few_words() -> None:
    pieces = stream("I can help with any kind of business you have, just ask. Bye.")
    assert texts(pieces) == ["I can help", "with any kind of business you have,", "just ask.", "Bye."]
    assert len(texts(pieces)[0].split()) == FIRST_PIECE_MAX_WORDS


def test_second_piece_may_end_at_a_clause_so_it_is_ready_before_the_first_ends() -> None:
    pieces = stream("Well, that depends on a few things, like your budget, and how much time you have.")
    assert texts(pieces) == [
        "Well,",
        "that depends on a few things,",
        "like your budget, and how much time you have.",
    ]


def test_piece_is_released_as_soon_as_its_boundary_arrives() -> None:
    chunker = Chunker()
    assert chunker.push("Hello there") == []
    assert chunker.push(".") == []  # "." could still be "3.5" or ".com"
    assert texts(chunker.push(" How")) == ["Hello there."]
    assert texts(chunker.push(" are you?\n")) == ["How are you?"]
    assert chunker.flush() == []


def test_flush_releases_an_unfinished_sentence_and_restarts_the_utterance() -> None:
    chunker = Chunker()
    chunker.push("Okay, so the first thing to do")
    assert texts(chunker.flush()) == ["so the first thing to do"]
    assert texts(chunker.push("Right, next.")) == ["Right,"]


def test_long_sentences_are_cut_at_clauses_once_long_enough() -> None:
    sentence = (
        "Yes. The committee discussed the budget for the coming year in great detail, "
        "and after a long debate, the members voted to approve it."
    )
    assert texts(stream(sentence)) == [
        "Yes.",
        "The committee discussed the budget for the coming year in great detail,",
        "and after a long debate, the members voted to approve it.",
    ]


def test_abbreviations_initials_decimals_and_list_markers_do_not_end_sentences() -> None:
    pieces = stream("Well... Dr. Smith met J. R. Tolkien e.g. in the U.S. at 3.5 p.m. today. 1. Then go.")
    assert texts(pieces) == [
        "Well...",
        "Dr. Smith met J. R. Tolkien e.g. in the U.S. at 3.5 p.m. today.",
        "Then go.",
    ]


def test_text_without_punctuation_is_cut_at_spaces_below_the_limit() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    pieces = stream(words)
    assert len(pieces) > 1
    assert all(len(piece.text) <= MAX_PIECE_CHARS for piece in pieces)
    assert " ".join(texts(pieces)) == words


def test_a_huge_text_in_one_message_is_cut_in_linear_time() -> None:
    """Ten times the text costs about ten times as long (a quadratic cut would cost a hundred)."""

    def cost(words: int) -> float:
        chunker = Chunker()
        started = time.process_time()
        chunker.push(" ".join(f"word{i}" for i in range(words)))
        chunker.flush()
        return time.process_time() - started

    assert cost(30_000) < 30 * max(cost(3_000), 1e-3)
    text = " ".join(f"word{i}" for i in range(30_000))
    chunker = Chunker()
    pieces = chunker.push(text) + chunker.flush()
    assert all(len(piece.text) <= MAX_PIECE_CHARS for piece in pieces)
    assert " ".join(texts(pieces)) == text


def test_code_fences_are_dropped_even_when_split_across_fragments() -> None:
    text = "Here is how. ```python\nprint('hi. there')\n``` That prints a greeting."
    assert texts(stream(text, size=2)) == ["Here is how.", "That prints a greeting."]


def test_unclosed_code_fence_is_never_spoken() -> None:
    assert texts(stream("Look: ```bash\nrm -rf /tmp/x\n")) == ["Look:"]


def test_cancel_clears_pending_text() -> None:
    chunker = Chunker()
    chunker.push("Half a sente")
    chunker.clear()
    assert texts(chunker.push("New one. ")) == ["New one."]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("**Bold** and *italic* and __under__ and ~~gone~~", "Bold and italic and under and gone"),
        ("## Heading", "Heading"),
        ("- a bullet", "a bullet"),
        ("> quoted", "quoted"),
        ("See [the docs](https://example.com/docs) now", "See the docs now"),
        ("Visit https://www.example.com/a/b?c=d today", "Visit www.example.com today"),
        ("Great job 🎉👍🏽!", "Great job!"),
        ("Call `run_tests` now", "Call run tests now"),
        ("| a | b |", "a, b"),
        ("<b>bold</b> text", "bold text"),
        ("It is 20°C", "It is 20°C"),
    ],
)
def test_clean_removes_what_is_not_read_aloud(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_pieces_with_nothing_to_say_are_dropped() -> None:
    assert stream("🎉🎉 --- **") == []


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (42, "forty-two"),
        (100, "one hundred"),
        (1234, "one thousand two hundred thirty-four"),
        (2_000_005, "two million five"),
    ],
)
def test_cardinal(n: int, words: str) -> None:
    assert cardinal(n) == words


def test_ordinal_and_year() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 5, 12, 20, 21, 100)] == [
        "first",
        "second",
        "third",
        "fifth",
        "twelfth",
        "twentieth",
        "twenty-first",
        "one hundredth",
    ]
    assert [year(n) for n in (1999, 1905, 1900, 2005, 2024)] == [
        "nineteen ninety-nine",
        "nineteen oh five",
        "nineteen hundred",
        "two thousand five",
        "twenty twenty-four",
    ]


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("It costs $5.50.", "It costs five dollars and fifty cents."),
        ("Only $1 and €3", "Only one dollar and three euros"),
        ("A $2.5M deal", "A two point five million dollars deal"),
        ("Up 12% to 1,234 units", "Up twelve percent to one thousand two hundred thirty-four units"),
        ("Pi is 3.14", "Pi is three point one four"),
        ("It is -5 outside", "It is minus five outside"),
        ("Meet at 3:30 pm", "Meet at three thirty p m"),
        ("Meet at 9am or 10:05", "Meet at nine a m or ten oh five"),
        ("Lunch at 12:00", "Lunch at twelve o'clock"),
        ("Due 2024-05-01", "Due May first, twenty twenty-four"),
        ("Due 12/25/2023", "Due December twenty-fifth, twenty twenty-three"),
        ("On May 5th, 1999 we met", "On May fifth, nineteen ninety-nine we met"),
        ("On 3 March", "On third of March"),
        ("Maybe 5 people", "Maybe five people"),
        ("The 21st century, the 1990s", "The twenty-first century, the nineteen nineties"),
        ("Dr. Smith and Mr. Jones", "Doctor Smith and Mister Jones"),
        ("Fruit, e.g. apples, etc.", "Fruit, for example apples, et cetera"),
        ("Go 5 km at 20 km/h", "Go five kilometers at twenty kilometers per hour"),
        ("It is 20°C", "It is twenty degrees Celsius"),
        ("R&D and C++", "R and D and C plus plus"),
        ("Room #4, No. 7", "Room number four, number seven"),
        ("Add 1/2 cup", "Add one half cup"),
        ("and/or", "and or or"),
    ],
)
def test_verbalize(written: str, spoken: str) -> None:
    assert verbalize(written) == spoken
