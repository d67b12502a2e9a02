"""Regexes from config entries, checked before nginx (PCRE) ever sees them.

Consul hands Envoy's RE2 syntax through; nginx compiles the same text with PCRE (map
regexes in reload mode, ``ngx.re`` in api mode). A pattern is accepted only if it is
in the part of the language both agree on and that cannot blow up at run time: no
backreferences, lookaround, atomic groups, possessive quantifiers, recursion, callouts
or verbs (RE2 has none of them, PCRE would backtrack on them), no control characters,
and at most ``MAX_LENGTH`` characters. What remains is compiled here with Python's
``re`` (PCRE-compatible for this subset) so a syntax error is refused with a reason;
api mode compiles it once more with PCRE itself in the Lua endpoint before storing it.
"""

from __future__ import annotations

import re

MAX_LENGTH = 512

_FORBIDDEN = (
    (re.compile(r"\\[1-9]"), "backreferences are not RE2"),
    (re.compile(r"\\[gkK]"), "backreferences and \\K are not RE2"),
    (re.compile(r"\(\?[=!]"), "lookahead is not RE2"),
    (re.compile(r"\(\?<[=!]"), "lookbehind is not RE2"),
    (re.compile(r"\(\?>"), "atomic groups are not RE2"),
    (re.compile(r"\(\?(?:R|[0-9]|[+-][0-9]|&|P>)"), "recursion is not RE2"),
    (re.compile(r"\(\?C"), "callouts are not RE2"),
    (re.compile(r"\(\*"), "PCRE verbs are not RE2"),
    (re.compile(r"\(\?\|"), "branch reset is not RE2"),
    (re.compile(r"\(\?P="), "backreferences are not RE2"),
    (re.compile(r"(?<!\\)[*+?}]\+"), "possessive quantifiers are not RE2"),
    (re.compile(r"\\[CRXE]"), "this escape is not RE2"),
)


class RegexError(ValueError):
    pass


def check(pattern: str) -> str:
    """The pattern itself when it is safe to hand to nginx; RegexError with the reason otherwise."""
    if len(pattern) > MAX_LENGTH:
        raise RegexError(f"longer than {MAX_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
        raise RegexError("contains a control character")
    if not pattern.isascii():
        raise RegexError("contains non-ASCII characters (write them as \\x{...})")
    unescaped = re.sub(r"\\\\", "", pattern)  # an escaped backslash cannot start a construct
    for construct, reason in _FORBIDDEN:
        if construct.search(unescaped):
            raise RegexError(reason)
    if _nested_quantifier(unescaped):
        raise RegexError("a quantified group contains a quantifier (catastrophic backtracking in PCRE)")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise RegexError(f"does not compile: {exc}") from None
    return pattern


def _nested_quantifier(pattern: str) -> bool:
    """``(a+)+`` and friends: a group holding a quantifier, itself quantified."""
    text = re.sub(r"\\.", "x", pattern)  # escapes are single atoms
    text = re.sub(r"\[[^\]]*\]", "x", text)  # so are classes
    stack: list[bool] = []  # per open group: does it hold a quantifier?
    for i, c in enumerate(text):
        if c == "(":
            stack.append(False)
        elif c in "*+{" or (c == "?" and i > 0 and text[i - 1] != "("):
            if stack:
                stack[-1] = True
        elif c == ")" and stack:
            inner = stack.pop()
            after = text[i + 1 : i + 2]
            if inner and after and after in "*+{":
                return True
            if inner and stack:
                stack[-1] = True
    return False


def literal(text: str) -> str:
    """A PCRE pattern matching ``text`` literally: every non-alphanumeric character escaped."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


def anchored(pattern: str) -> str:
    """Envoy's safe_regex matches the whole value; nginx's and ngx.re's are unanchored
    (and PCRE's ``$`` would also match before a final newline: ``\\z`` does not)."""
    return f"^(?:{pattern})\\z"
