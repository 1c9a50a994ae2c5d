"""Text that is not what it looks like: names confusable with other names,
bidirectional controls, and text made only of invisible characters.

`skeleton()` follows the idea of Unicode TR39's confusable skeleton with a
small table of our own instead of the full confusables.txt: compatibility
forms folded (NFKC: fullwidth, mathematical letters, ligatures), invisible
characters dropped, accents dropped, the common Cyrillic, Greek, Armenian and
Latin look-alikes of Latin letters mapped to them, case folded, and i/l/1/|
and o/0 each made one letter, "rn" read as "m" and "vv" as "w". Two names
with the same skeleton look alike to a reader: `аdmin` (Cyrillic а),
`ADMIN`, `adrnin`, `admín` and `admin` all have the skeleton `admln`. It
errs toward calling names alike: a name refused for that is cheap to change,
an impersonation is not.
"""

from __future__ import annotations

import unicodedata

# Characters that reorder text: embeddings, overrides and isolates (Trojan
# Source, U+202E "right-to-left override" names), and the bidi marks.
BIDI_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
BIDI_CONTROLS = BIDI_OVERRIDES | frozenset("\u200e\u200f\u061c")

# Unicode's Default_Ignorable_Code_Point ranges (drawn as nothing), plus the
# braille blank, which is drawn as an empty cell.
_IGNORABLE_RANGES = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
]
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


def is_ignorable(char: str) -> bool:
    """Drawn as nothing at all (zero-width spaces and joiners, bidi controls,
    variation selectors, Hangul fillers, tags…)."""
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE_RANGES)


def is_invisible(char: str) -> bool:
    """Leaves no mark of its own: whitespace, controls, format characters,
    combining marks, and the ignorables above."""
    return (
        char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES or is_ignorable(char)
    )


def is_blank(text: str) -> bool:
    """Nothing a reader could see: empty, or invisible characters only."""
    return all(is_invisible(char) for char in text)


def has_hidden(text: str) -> bool:
    """Holds a character a reader cannot see as such: an ignorable, a
    control or format character, a line or paragraph separator. (Spaces and
    combining marks are fine inside a name.)"""
    return any(
        is_ignorable(char) or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
        for char in text
    )


def has_bidi_override(text: str) -> bool:
    return any(char in BIDI_OVERRIDES for char in text)


# Capitals whose small letters look different (Greek Η is H, η looks like n):
# mapped before case folding.
_CAPITALS = str.maketrans(
    {
        # Greek
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
        "Ϲ": "C",
        "Ϳ": "J",
        # Cyrillic
        "А": "A",
        "В": "B",
        "Е": "E",
        "Ѕ": "S",
        "І": "I",
        "Ј": "J",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "У": "Y",
        "Х": "X",
        "Ү": "Y",
        "Һ": "H",
        "Ӏ": "I",
        "Ԛ": "Q",
        "Ԝ": "W",
        "Ԍ": "G",
        # Latin
        "ǀ": "l",
    }
)

# Small letters and symbols, after case folding (one pass: every i-like
# letter maps to "l" directly). The last group makes each of i/l/1/| and o/0
# one letter.
_SMALL = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "і": "l",
        "ј": "j",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "һ": "h",
        "ӏ": "l",
        "ү": "y",
        "ɡ": "g",
        # Greek
        "α": "a",
        "ο": "o",
        "ρ": "p",
        "ν": "v",
        "υ": "u",
        "κ": "k",
        "ι": "l",
        "χ": "x",
        "γ": "y",
        "η": "n",
        "ϲ": "c",
        "ϳ": "j",
        # Armenian
        "օ": "o",
        "ս": "u",
        "հ": "h",
        "ո": "n",
        "ց": "g",
        "զ": "q",
        # Latin
        "ɑ": "a",
        "ı": "l",
        "ɩ": "l",
        "ɪ": "l",
        "ʏ": "y",
        # Dashes
        "‐": "-",
        "‑": "-",
        "‒": "-",
        "–": "-",
        "—": "-",
        "―": "-",
        "−": "-",
        # One letter each
        "i": "l",
        "1": "l",
        "|": "l",
        "0": "o",
    }
)
_SEQUENCES = [("rn", "m"), ("vv", "w")]


def skeleton(text: str) -> str:
    """What `text` looks like: equal skeletons mean confusable texts."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if not is_ignorable(char))
    text = unicodedata.normalize("NFD", text)
    text = "".join(char for char in text if unicodedata.category(char) not in ("Mn", "Me"))
    text = text.translate(_CAPITALS).casefold().translate(_SMALL)
    for sequence, letter in _SEQUENCES:
        text = text.replace(sequence, letter)
    return " ".join(text.split())
