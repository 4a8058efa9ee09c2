"""The SID vocabulary every stage spells semantic IDs with: code tokens, SID strings and their strict parser.

It stands on nothing of gr2, so the tokenizer that assigns SIDs and the stages that show, parse and serve
them all import it from here rather than from one another.

L levels of C codes. Level i has the prefix chr(ord('a') + i), so a code token is `<a_12>` and a SID
is the concatenation of one token per level in level order: `<a_12><b_200><c_7><d_31>`. In prompts
a SID sits between `<|sid_begin|>` and `<|sid_end|>`. Code numbers are written in canonical
decimal (no sign, no leading zeros), so text -> codes -> text round-trips exactly.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

DEFAULT_LEVELS = 4
DEFAULT_CODES = 256
MAX_LEVELS = 26  # one letter per level: a..z

SID_BEGIN = "<|sid_begin|>"
SID_END = "<|sid_end|>"
SPECIAL_TOKENS = (SID_BEGIN, SID_END)

_TOKEN = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")


def level_prefix(level: int) -> str:
    """The letter of a level: 0 -> 'a', 1 -> 'b', ..."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < MAX_LEVELS:
        raise ValueError(f"SID level must be an integer in [0, {MAX_LEVELS}), got {level!r}")
    return chr(ord("a") + level)


def level_token(level: int, code: int) -> str:
    """The token of one code at one level: level_token(1, 200) == '<b_200>'."""
    prefix = level_prefix(level)
    if isinstance(code, bool) or not isinstance(code, numbers.Integral) or int(code) < 0:
        raise ValueError(f"SID code must be a non-negative integer, got {code!r} at level {level}")
    return f"<{prefix}_{int(code)}>"


def sid_string(codes: Sequence[int]) -> str:
    """The SID of a code tuple: sid_string([12, 200, 7, 31]) == '<a_12><b_200><c_7><d_31>'."""
    codes = list(codes)
    if not codes:
        raise ValueError("a SID needs at least one code")
    return "".join(level_token(i, c) for i, c in enumerate(codes))


def wrap(sid: str) -> str:
    """'<a_1><b_2>' -> '<|sid_begin|><a_1><b_2><|sid_end|>'."""
    return f"{SID_BEGIN}{sid}{SID_END}"


def unwrap(text: str) -> str:
    """The SID inside '<|sid_begin|>...<|sid_end|>'; ValueError when the markers are missing."""
    if not (text.startswith(SID_BEGIN) and text.endswith(SID_END)) or len(text) < len(SID_BEGIN) + len(SID_END):
        raise ValueError(f"expected {SID_BEGIN}...{SID_END}, got {text!r}")
    return text[len(SID_BEGIN) : -len(SID_END)]


def parse_sid(text: str, levels: int | None = None, codes: int | None = None) -> list[int]:
    """The codes of a SID string, strictly: '<a_12><b_200>' -> [12, 200].

    The text may also be wrapped in `<|sid_begin|>`/`<|sid_end|>`. Raises ValueError on anything else:
    stray characters or whitespace, a malformed token, levels out of order (token i must be level i),
    a number of levels other than `levels` (when given), or a code >= `codes` (when given).
    """
    if not isinstance(text, str):
        raise ValueError(f"a SID must be a string, got {type(text).__name__}")
    if text.startswith(SID_BEGIN) or text.endswith(SID_END):
        text = unwrap(text)
    if not text:
        raise ValueError("empty SID")
    out: list[int] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(
                f"malformed SID {text!r} at position {pos}: expected a token like "
                f"<{chr(ord('a') + min(len(out), MAX_LEVELS - 1))}_0> (lower-case level letter, '_', "
                "decimal code without leading zeros)"
            )
        letter, number = m.group(1), m.group(2)
        expected = chr(ord("a") + len(out))
        if letter != expected:
            raise ValueError(
                f"SID {text!r}: token {len(out) + 1} has level '{letter}' but level '{expected}' was expected "
                "(levels must appear once each, in order a, b, c, ...)"
            )
        code = int(number)
        if codes is not None and code >= codes:
            raise ValueError(f"SID {text!r}: code {code} at level '{letter}' is out of range [0, {codes})")
        out.append(code)
        pos = m.end()
    if levels is not None and len(out) != levels:
        raise ValueError(f"SID {text!r} has {len(out)} levels, expected {levels}")
    return out


def canonical_sid(sid: str) -> str:
    """A SID as every comparison reads it: unwrapped, no surrounding whitespace, each code as written by
    `sid_string` ('<|sid_begin|><a_012>...' and ' <a_12>...' are the same SID); ValueError when it is none."""
    return sid_string(parse_sid(sid.strip()))


def parse_token(token: str) -> tuple[int, int]:
    """One code token -> (level, code): '<b_200>' -> (1, 200). ValueError on anything else."""
    m = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if m is None:
        raise ValueError(f"not a SID code token: {token!r} (expected e.g. <a_12>)")
    return ord(m.group(1)) - ord("a"), int(m.group(2))


def all_tokens(levels: int = DEFAULT_LEVELS, codes: int = DEFAULT_CODES) -> list[str]:
    """Every code token, level-major (<a_0> .. <a_{C-1}>, <b_0>, ...), then the two special tokens."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer in [1, {MAX_LEVELS}], got {levels!r}")
    if isinstance(codes, bool) or not isinstance(codes, int) or codes < 1:
        raise ValueError(f"codes must be a positive integer, got {codes!r}")
    return [level_token(level, code) for level in range(levels) for code in range(codes)] + list(SPECIAL_TOKENS)
