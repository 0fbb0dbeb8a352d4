"""The ordered classification scale shared by every stage.

    UNCLASSIFIED < RESTRICTED < CONFIDENTIAL < SECRET < TOP_SECRET

Korean and US names map onto the same five levels (DESIGN.md §3):

    UNCLASSIFIED  평문, U, UNCLASS
    RESTRICTED    대외비, CUI, FOUO, FOR OFFICIAL USE ONLY
    CONFIDENTIAL  Ⅲ급비밀 (3급비밀), C
    SECRET        Ⅱ급비밀 (2급비밀), 군사Ⅱ급비밀, S
    TOP_SECRET    Ⅰ급비밀 (1급비밀), 군사Ⅰ급비밀, TS

An artifact is as classified as the most classified thing it was made from (`max_level`). Recognising *markings*
inside documents (banners, portion marks) is the screen package's job; this module only names and orders levels.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable


class Level(enum.IntEnum):
    """A classification level; comparison follows the scale (``Level.SECRET > Level.RESTRICTED``)."""

    UNCLASSIFIED = 0
    RESTRICTED = 1
    CONFIDENTIAL = 2
    SECRET = 3
    TOP_SECRET = 4

    def __str__(self) -> str:  # "SECRET", the spelling used in manifests and on the CLI
        return self.name


# Aliases are matched after `_canonical` (NFKC, upper case, spaces/underscores/hyphens removed), so
# "top secret", "TOP-SECRET" and "TopSecret" all land on the same key. NFKC also folds Roman numerals
# (Ⅱ → II), which is why the Korean levels are listed with ASCII numerals.
_ALIASES: dict[str, Level] = {
    # UNCLASSIFIED
    "UNCLASSIFIED": Level.UNCLASSIFIED,
    "UNCLASS": Level.UNCLASSIFIED,
    "U": Level.UNCLASSIFIED,
    "평문": Level.UNCLASSIFIED,
    "일반": Level.UNCLASSIFIED,
    # RESTRICTED
    "RESTRICTED": Level.RESTRICTED,
    "대외비": Level.RESTRICTED,
    "군사대외비": Level.RESTRICTED,
    "CUI": Level.RESTRICTED,
    "FOUO": Level.RESTRICTED,
    "FOROFFICIALUSEONLY": Level.RESTRICTED,
    "CONTROLLEDUNCLASSIFIEDINFORMATION": Level.RESTRICTED,
    # CONFIDENTIAL
    "CONFIDENTIAL": Level.CONFIDENTIAL,
    "C": Level.CONFIDENTIAL,
    "III급비밀": Level.CONFIDENTIAL,
    "3급비밀": Level.CONFIDENTIAL,
    "군사III급비밀": Level.CONFIDENTIAL,
    "군사3급비밀": Level.CONFIDENTIAL,
    # SECRET
    "SECRET": Level.SECRET,
    "S": Level.SECRET,
    "II급비밀": Level.SECRET,
    "2급비밀": Level.SECRET,
    "군사II급비밀": Level.SECRET,
    "군사2급비밀": Level.SECRET,
    # TOP_SECRET
    "TOPSECRET": Level.TOP_SECRET,
    "TS": Level.TOP_SECRET,
    "I급비밀": Level.TOP_SECRET,
    "1급비밀": Level.TOP_SECRET,
    "군사I급비밀": Level.TOP_SECRET,
    "군사1급비밀": Level.TOP_SECRET,
}

_STRIP = re.compile(r"[\s_\-.]+")


def _canonical(text: str) -> str:
    return _STRIP.sub("", unicodedata.normalize("NFKC", text).upper())


def parse_level(value: str | int | Level) -> Level:
    """Parse a level name or alias (``"secret"``, ``"Ⅱ급비밀"``, ``"CUI"``, ``3``) into a `Level`.

    Raises ValueError naming the accepted spellings when the value is not a known level.
    """
    if isinstance(value, Level):
        return value
    if isinstance(value, int):
        try:
            return Level(value)
        except ValueError:
            raise ValueError(f"classification level {value} is out of range 0..{len(Level) - 1}") from None
    level = _ALIASES.get(_canonical(str(value)))
    if level is None:
        names = ", ".join(level.name for level in Level)
        raise ValueError(
            f"unknown classification level {value!r}; use one of {names} "
            "(or an alias such as 대외비, Ⅱ급비밀, CUI, TS)"
        )
    return level


def max_level(levels: Iterable[str | int | Level]) -> Level:
    """The highest level among `levels`; UNCLASSIFIED for an empty iterable (nothing classified went in)."""
    return max((parse_level(level) for level in levels), default=Level.UNCLASSIFIED)


def allows(clearance: str | int | Level, classification: str | int | Level) -> bool:
    """True when a holder of `clearance` may see something marked `classification`."""
    return parse_level(clearance) >= parse_level(classification)


def level_names() -> list[str]:
    """Level names in scale order, for CLI help and error messages."""
    return [level.name for level in Level]
