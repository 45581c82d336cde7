"""Numbers, dates, times, money, units and abbreviations written out as English words."""

from __future__ import annotations

import re
from collections.abc import Callable

_ONES: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ONES += ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen")
_ONES += ("nineteen",)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July")
MONTHS += ("August", "September", "October", "November", "December")
_MONTH_BY_PREFIX = {month[:3].lower(): month for month in MONTHS}


def cardinal(n: int) -> str:
    """``1234`` -> "one thousand two hundred thirty-four"; very long numbers digit by digit."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    if n >= 1000 * _SCALES[0][0]:
        return digits(str(n))
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{cardinal(high)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """``21`` -> "twenty-first"."""
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words else words.rpartition(" ")
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year(n: int) -> str:
    """``1999`` -> "nineteen ninety-nine", ``2005`` -> "two thousand five"."""
    if not 1100 <= n <= 2099 or 2000 <= n <= 2009:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {cardinal(low)}"
    return f"{cardinal(high)} {cardinal(low)}"


def digits(text: str) -> str:
    """``"0451"`` -> "zero four five one"."""
    return " ".join(_ONES[int(d)] for d in text if d.isdigit())


def _decimal(whole: str, fraction: str) -> str:
    return f"{cardinal(int(whole.replace(',', '')))} point {digits(fraction)}"


def _number(text: str) -> str:
    """A written number (commas, decimals) as words."""
    whole, _, fraction = text.partition(".")
    return _decimal(whole, fraction) if fraction else cardinal(int(whole.replace(",", "")))


# Titles, only when a name follows.
_TITLES = {
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Dr.": "Doctor",
    "Prof.": "Professor",
    "St.": "Saint",
}
_ABBREVIATIONS = {
    "jr.": "junior",
    "sr.": "senior",
    "vs.": "versus",
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "approx.": "approximately",
}
_UNITS = {
    "km/h": "kilometers per hour",
    "mph": "miles per hour",
    "km": "kilometers",
    "kg": "kilograms",
    "cm": "centimeters",
    "mm": "millimeters",
    "ms": "milliseconds",
    "kHz": "kilohertz",
    "Hz": "hertz",
    "GB": "gigabytes",
    "MB": "megabytes",
    "TB": "terabytes",
    "°C": "degrees Celsius",
    "°F": "degrees Fahrenheit",
    "°": "degrees",
}
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents")}
_CURRENCIES["£"] = ("pound", "pounds", "penny", "pence")
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "%": " percent "}
_FRACTIONS = {"1/2": "one half", "1/3": "one third", "1/4": "one quarter", "3/4": "three quarters"}

_NUM = r"\d{1,3}(?:,\d{3})+|\d+"
_MONTH_ABBREVIATIONS = ("Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec")
_MONTH_WORD = "(?:" + "|".join(MONTHS + _MONTH_ABBREVIATIONS) + r")\b\.?"

Rule = Callable[[re.Match[str]], str]
_RULES: list[tuple[re.Pattern[str], Rule]] = []


def _rule(pattern: str, flags: int = 0) -> Callable[[Rule], Rule]:
    """Register a rewrite; rules run in the order they are defined."""

    def register(function: Rule) -> Rule:
        _RULES.append((re.compile(pattern, flags), function))
        return function

    return register


def _month(word: str) -> str:
    return _MONTH_BY_PREFIX.get(word[:3].lower(), word)


@_rule(r"\b(\d{4})-(\d{2})-(\d{2})\b")
def _iso_date(m: re.Match[str]) -> str:
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m[0]
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


@_rule(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
def _us_date(m: re.Match[str]) -> str:
    mo, d, y = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m[0]
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


@_rule(rf"\b({_MONTH_WORD})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?")
def _month_day(m: re.Match[str]) -> str:
    if not 1 <= int(m[2]) <= 31:
        return m[0]
    spoken = f"{_month(m[1])} {ordinal(int(m[2]))}"
    return f"{spoken}, {year(int(m[3]))}" if m[3] else spoken


@_rule(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_WORD})(?:,?\s+(\d{{4}})\b)?")
def _day_month(m: re.Match[str]) -> str:
    if not 1 <= int(m[1]) <= 31:
        return m[0]
    spoken = f"{ordinal(int(m[1]))} of {_month(m[2])}"
    return f"{spoken}, {year(int(m[3]))}" if m[3] else spoken


@_rule(r"\b(\d{1,2}):(\d{2})(?::\d{2})?\s*([ap])\.?\s?m\b\.?", re.IGNORECASE)
def _clock_ampm(m: re.Match[str]) -> str:
    minutes = int(m[2])
    spoken = cardinal(int(m[1]))
    if minutes:
        spoken += f" {'oh ' + cardinal(minutes) if minutes < 10 else cardinal(minutes)}"
    return f"{spoken} {m[3].lower()} m"


@_rule(r"\b(\d{1,2}):(\d{2})\b")
def _clock(m: re.Match[str]) -> str:
    hours, minutes = int(m[1]), int(m[2])
    if hours > 24 or minutes > 59:
        return m[0]
    if minutes == 0:
        return f"{cardinal(hours)} o'clock"
    return f"{cardinal(hours)} {'oh ' + cardinal(minutes) if minutes < 10 else cardinal(minutes)}"


@_rule(r"\b(1[0-2]|[1-9]) ?([ap])\.?m\b\.?", re.IGNORECASE)
def _hour_ampm(m: re.Match[str]) -> str:
    return f"{cardinal(int(m[1]))} {m[2].lower()} m"


@_rule(rf"([$€£])\s?({_NUM})(?:\.(\d{{1,2}}))?(?:\s?(thousand|million|billion|trillion|[kKmMbB])\b)?")
def _money(m: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCIES[m[1]]
    whole = int(m[2].replace(",", ""))
    scale = {"k": "thousand", "m": "million", "b": "billion"}.get((m[4] or "").lower(), m[4] or "")
    if scale:
        amount = _decimal(m[2], m[3]) if m[3] else cardinal(whole)
        return f"{amount} {scale} {many}"
    spoken = f"{cardinal(whole)} {one if whole == 1 else many}"
    if m[3]:
        fraction = int(m[3].ljust(2, "0"))
        if fraction:
            spoken += f" and {cardinal(fraction)} {cent if fraction == 1 else cents}"
    return spoken


@_rule(r"(?<![\w.])(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
def _ordinal(m: re.Match[str]) -> str:
    return ordinal(int(m[1]))


@_rule(r"(?<![\w/])([1-3])/([234])(?![\w/])")
def _fraction(m: re.Match[str]) -> str:
    return _FRACTIONS.get(m[0], f"{cardinal(int(m[1]))} over {cardinal(int(m[2]))}")


@_rule(rf"(?<![\w.,])({_NUM})(?:\.(\d+))?\s?%")
def _percent(m: re.Match[str]) -> str:
    return f"{_decimal(m[1], m[2]) if m[2] else cardinal(int(m[1].replace(',', '')))} percent"


@_rule(rf"(?<![\w.,])({_NUM}(?:\.\d+)?)\s?({'|'.join(re.escape(unit) for unit in _UNITS)})(?![\w/])")
def _unit(m: re.Match[str]) -> str:
    return f"{_number(m[1])} {_UNITS[m[2]]}"


@_rule(r"(?<![\w.,])((?:1[1-9]|20)\d\d)(s?)(?![\w.,]\d|\d)")
def _year(m: re.Match[str]) -> str:
    spoken = year(int(m[1]))
    if m[2]:
        spoken = spoken[:-1] + "ies" if spoken.endswith("y") else spoken + "s"
    return spoken


@_rule(r"(?:(?<=\s)|^)-(?=\d)")
def _minus(m: re.Match[str]) -> str:
    return "minus "


@_rule(rf"(?<![\w])({_NUM})(?:\.(\d+))?(?![\w])")
def _plain_number(m: re.Match[str]) -> str:
    return _decimal(m[1], m[2]) if m[2] else cardinal(int(m[1].replace(",", "")))


def verbalize(text: str) -> str:
    """``text`` with everything a voice would misread spelled out as words."""
    for written, spoken in _TITLES.items():
        text = re.sub(rf"\b{re.escape(written)}(?=\s+[A-Z])", spoken, text)
    for written, spoken in _ABBREVIATIONS.items():
        text = re.sub(rf"(?<![\w.]){re.escape(written)}", spoken, text, flags=re.IGNORECASE)
    text = re.sub(r"\bNo\.\s?(?=\d)", "number ", text)
    text = re.sub(r"#(?=\d)", "number ", text)
    for pattern, function in _RULES:
        text = pattern.sub(function, text)
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    # Anything left between two words: "and/or", "read/write".
    text = re.sub(r"(?<=\w)/(?=\w)", " or ", text)
    return re.sub(r"\s+", " ", text).strip()
