"""CSV cells a spreadsheet will not evaluate, and their original values back.

A text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is taken as a
formula by Excel, LibreOffice and Google Sheets (OWASP "CSV Injection"): a tracker run named
``=HYPERLINK("http://evil","click")`` would become a live link in a sustainability lead's
spreadsheet. Every CSV CarbonTrack writes passes its cells through :func:`cell`, which prefixes
such text with a single quote (spreadsheets show the text, without the quote, and do not
evaluate it). A text cell that itself begins with a quote is prefixed too, so the rule is
reversible: :func:`original` drops exactly one leading quote, and our readers give back the
value that was written, whatever it was.

Numbers (int, float; ``bool`` too) are never changed: ``-1.5`` written by the csv module is a
number to every spreadsheet, not a formula, and CodeCarbon-compatible numeric columns must stay
byte-identical.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

# What a spreadsheet evaluates at the start of a cell, plus the quote that marks our escape.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_ESCAPED_STARTS = (*FORMULA_STARTS, QUOTE)


def cell(value: Any) -> Any:
    """The value to hand to ``csv.writer``: None as empty, risky text quoted, anything else
    unchanged."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return QUOTE + value
    return value


def row(values: Iterable[Any]) -> list[Any]:
    return [cell(v) for v in values]


def line(values: Iterable[Any]) -> str:
    """One CSV row ending in ``\\n``, cells through :func:`cell`. Written with ``\\r\\n`` as the
    terminator and then given ``\\n``: the csv module quotes a cell holding any character of the
    terminator, and with ``\\n`` alone a bare carriage return inside a cell is left unquoted (Python
    3.11), and a reader splits the row in two there."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(row(values))
    return buf.getvalue()[:-2] + "\n"


def original(text: str) -> str:
    """The value :func:`cell` was given, from the text read back (one leading quote dropped).
    A quote we did not add can only come from a file we did not write, where it is dropped the
    same way a spreadsheet hides it."""
    return text[1:] if text.startswith(QUOTE) else text


def original_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """A ``csv.DictReader`` row with every cell restored; ``None`` (a short row's missing
    cells) and extra cells (a list under the ``None`` key) are left as the reader gave them."""
    return {k: original(v) if isinstance(v, str) else v for k, v in values.items()}
