"""Parts of a data step: ``--part I/N`` picks a deterministic, contiguous share of an ordered listing.

A share is a range of positions in the source's sorted listing of names (never of contents), so a re-run or
a retried part gets the same items, and the parts concatenated in order are the single-machine order:
merging is concatenation (prepare) or addition (stats), never a re-sort.

>>> parse_part("2/3")
(1, 3)
>>> [part_range(10, i, 3) for i in range(3)]
[range(0, 3), range(3, 6), range(6, 10)]
"""

from __future__ import annotations


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` (1-based, as a user counts: ``1/3`` .. ``3/3``) -> ``(index, count)`` with a 0-based index."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ValueError(f"part must be I/N with integers 1 <= I <= N, got {text!r}") from None
    check_part((i - 1, n))
    return i - 1, n


def check_part(part: tuple[int, int]) -> tuple[int, int]:
    """Validate a 0-based ``(index, count)``; return it."""
    i, n = part
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise ValueError(f"part must be (index, count) with 0 <= index < count, got {part!r}")
    return i, n


def part_range(n_items: int, index: int, count: int) -> range:
    """Positions ``[index * n // count, (index + 1) * n // count)`` of ``n_items``: the parts tile the range."""
    return range(index * n_items // count, (index + 1) * n_items // count)


def part_name(part: tuple[int, int]) -> str:
    """``(0, 3)`` -> ``"part00001of00003"`` (1-based, sorts in part order)."""
    return f"part{part[0] + 1:05d}of{part[1]:05d}"


def check_cover(parts: list[tuple[int, int]], what: str) -> int:
    """Check that ``parts`` are exactly ``0..N-1`` of one ``N``, in order; return ``N``."""
    counts = {n for _, n in parts}
    if len(counts) != 1:
        raise ValueError(f"{what}: parts of different counts N: {sorted(counts)}")
    n = counts.pop()
    got = [i for i, _ in parts]
    if got != list(range(n)):
        missing = sorted(set(range(n)) - set(got))
        raise ValueError(
            f"{what}: need parts 1..{n} once each, in order; got {[i + 1 for i in got]} (missing {[m + 1 for m in missing]})"
        )
    return n


def part_list(count: int) -> list[str]:
    """The ``"I/N"`` names of all parts: ``part_list(3) == ["1/3", "2/3", "3/3"]``."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of parts must be an int >= 1, got {count!r}")
    return [f"{i}/{count}" for i in range(1, count + 1)]
