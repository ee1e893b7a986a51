"""Pinyin initials of security names, for the Market page's search ("payh" finds 平安银行), and the search itself.

The readings come from `pypinyin` (its phrase dictionary first, then each character's most common reading): 银行 is
"yh" (háng, not xíng), 重庆 "cq", 长江 "cj". Names are short and some characters have several readings that its
phrase dictionary does not settle (朝阳: zhāo or cháo), so a name also matches the initials of its characters'
other readings (every combination, at most `MAX_VARIANTS`); the first reading is the one shown (`pinyin`) and ranks
first. Latin letters and digits of a name are kept as they are, lower case ("万科A" -> "wka", "*ST华仪" -> "sthy");
other symbols are dropped."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice, product

from pypinyin import Style, lazy_pinyin, pinyin

MAX_VARIANTS = 32  # readings combined per name: names of 4 characters with 2 polyphones give 4
_KEEP = re.compile(r"[^0-9a-z]")


def _clean(part: str) -> str:
    return _KEEP.sub("", part.lower())


@lru_cache(maxsize=20_000)
def initials(name: str) -> tuple[str, ...]:
    """The name's initials: the usual reading first, then those of the other readings (no repeats)."""
    primary = "".join(_clean(p) for p in lazy_pinyin(name, style=Style.FIRST_LETTER))
    per_char: list[list[str]] = []
    for options in pinyin(name, style=Style.FIRST_LETTER, heteronym=True):
        cleaned = list(dict.fromkeys(c for c in (_clean(o) for o in options)))
        per_char.append(cleaned or [""])
    out = [primary]
    for combo in islice(product(*per_char), MAX_VARIANTS):
        text = "".join(combo)
        if text not in out:
            out.append(text)
    return tuple(out)


@dataclass(frozen=True)
class Candidate:
    ts_code: str
    symbol: str
    name: str


def rank(query: str, candidate: Candidate) -> int | None:
    """How well `candidate` matches `query` (lower is better), None when it does not: 0 the code or symbol itself,
    1 a code prefix, 2 a name prefix or the usual initials' prefix, 3 another reading's prefix, 4 the code, name or
    initials containing the query."""
    q = query.strip().lower()
    if not q:
        return None
    code = candidate.ts_code.lower()
    if q in (code, candidate.symbol.lower()):
        return 0
    if code.startswith(q):
        return 1
    name = candidate.name.lower()
    readings = initials(candidate.name)
    if name.startswith(q) or readings[0].startswith(q):
        return 2
    if any(r.startswith(q) for r in readings[1:]):
        return 3
    if q in code or q in name or any(q in r for r in readings):
        return 4
    return None


def search(query: str, candidates: Iterable[Candidate], limit: int) -> list[tuple[Candidate, str]]:
    """The best `limit` matches, best first (ties by code), each with its usual initials."""
    scored: list[tuple[int, str, Candidate]] = []
    for c in candidates:
        r = rank(query, c)
        if r is not None:
            scored.append((r, c.ts_code, c))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [(c, initials(c.name)[0]) for _, _, c in scored[:limit]]
