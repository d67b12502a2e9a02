"""A subset of hashicorp/go-bexpr: the filter language behind Consul's ``?filter=`` (used by
dev-consul's endpoints and by syncer's service-resolver subsets).

Grammar (go-bexpr grammar.peg): ``or`` / ``and`` / ``not`` / parentheses over match
expressions ``<Selector> ==|!=|contains|not contains|matches|not matches <Value>``,
``<Selector> is [not] empty`` and ``<Value> [not] in <Selector>``. Values are quoted
strings (``"..."`` with escapes or raw backticks), numbers, or bare identifiers.

Evaluation follows the go-bexpr that Consul vendors: selectors are validated against
the endpoint's field schema before anything runs, a selector that crosses a list of
structs (``Checks.Status``) matches when *any* element matches, and the negated
operators are the negation of that (``Checks.Status != "passing"`` means "no check is
passing"). Errors are worded as Consul returns them (wrapped in "Failed to create
boolean expression evaluator: ...").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EQ, NE, IN, NOT_IN, IS_EMPTY, IS_NOT_EMPTY, MATCHES, NOT_MATCHES = (
    "Equal",
    "Not Equal",
    "In",
    "Not In",
    "Is Empty",
    "Is Not Empty",
    "Matches",
    "Not Matches",
)
_POSITIVE = {NE: EQ, NOT_IN: IN, IS_NOT_EMPTY: IS_EMPTY, NOT_MATCHES: MATCHES}
_PREFIX = "Failed to create boolean expression evaluator: "


class FilterError(ValueError):
    """Consul answers these with a 500 and the message as body."""


@dataclass(frozen=True)
class Field:
    """Schema of one selectable value: string, int, bool, strings, map, struct, structs, map_struct."""

    kind: str
    fields: Mapping[str, Field] | None = None

    @property
    def ops(self) -> frozenset[str]:
        return _OPS[self.kind]


_OPS: dict[str, frozenset[str]] = {
    "string": frozenset({EQ, NE, IN, NOT_IN, MATCHES, NOT_MATCHES}),
    "int": frozenset({EQ, NE}),
    "bool": frozenset({EQ, NE}),
    "strings": frozenset({IN, NOT_IN, IS_EMPTY, IS_NOT_EMPTY}),
    "map": frozenset({IS_EMPTY, IS_NOT_EMPTY, IN, NOT_IN}),
    "map_struct": frozenset({IS_EMPTY, IS_NOT_EMPTY, IN, NOT_IN}),
    "struct": frozenset(),
    "structs": frozenset({IS_EMPTY, IS_NOT_EMPTY}),
}


@dataclass(frozen=True)
class Match:
    selector: tuple[str, ...]
    op: str
    value: str | None


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # "and" | "or"
    left: Node
    right: Node


Node = Match | Not | Binary

_WS = re.compile(r"[ \t\r\n]+")
_IDENT = re.compile(r"[a-zA-Z][a-zA-Z0-9_/]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")


class _RuleError(Exception):
    def __init__(self, pos: int, rule: str, message: str) -> None:
        super().__init__(message)
        self.pos, self.rule, self.message = pos, rule, message


class _Parser:
    """Recursive descent over the PEG, recording the farthest failure like pigeon does."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.far = 0
        self.expected: set[str] = set()

    def _fail(self, what: str) -> None:
        if self.pos > self.far:
            self.far, self.expected = self.pos, {what}
        elif self.pos == self.far:
            self.expected.add(what)

    def lit(self, word: str) -> bool:
        if self.text.startswith(word, self.pos):
            self.pos += len(word)
            return True
        self._fail(f'"{word}"')
        return False

    def ws(self) -> bool:
        match = _WS.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return True
        self._fail("[ \\t\\r\\n]")
        return False

    def ows(self) -> None:
        match = _WS.match(self.text, self.pos)
        if match:
            self.pos = match.end()

    def eof(self) -> bool:
        if self.pos == len(self.text):
            return True
        self._fail("EOF")
        return False

    def seq(self, *words: str) -> bool:
        """``_ w1 _ w2 ... _`` with mandatory whitespace around keywords; restores on failure."""
        start = self.pos
        for word in words:
            if not (self.ws() and self.lit(word)):
                self.pos = start
                return False
        if not self.ws():
            self.pos = start
            return False
        return True

    # Grammar rules -----------------------------------------------------------------
    def parse(self) -> Node:
        self.ows()
        node = self.or_expr()
        if node is not None:
            self.ows()
            if self.eof():
                return node
        line = self.text.count("\n", 0, self.far) + 1
        col = self.far - (self.text.rfind("\n", 0, self.far) + 1) + 1
        expected = sorted(self.expected)
        listing = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
        raise FilterError(f"{_PREFIX}{line}:{col} ({self.far}): no match found, expected: {listing}")

    def or_expr(self) -> Node | None:
        left = self.and_expr()
        if left is None:
            return None
        start = self.pos
        if self.seq("or"):
            right = self.or_expr()
            if right is not None:
                return Binary("or", left, right)
            self.pos = start
        return left

    def and_expr(self) -> Node | None:
        left = self.not_expr()
        if left is None:
            return None
        start = self.pos
        if self.seq("and"):
            right = self.and_expr()
            if right is not None:
                return Binary("and", left, right)
            self.pos = start
        return left

    def not_expr(self) -> Node | None:
        start = self.pos
        if self.lit("not") and self.ws():
            operand = self.not_expr()
            if operand is not None:
                return operand.operand if isinstance(operand, Not) else Not(operand)
        self.pos = start
        return self.paren_expr()

    def paren_expr(self) -> Node | None:
        start = self.pos
        if self.lit("("):
            self.ows()
            inner = self.or_expr()
            if inner is not None:
                self.ows()
                if self.lit(")"):
                    return inner
            self.pos = start
        return self.match_expr()

    def match_expr(self) -> Node | None:
        start = self.pos
        selector = self.selector()
        if selector is not None:
            for words, op in (
                (("not", "contains"), NOT_IN),
                (("contains",), IN),
                (("not", "matches"), NOT_MATCHES),
                (("matches",), MATCHES),
            ):
                if self.seq(*words):
                    value = self.value()
                    if value is not None:
                        return Match(selector, op, value)
            for symbol, op in (("==", EQ), ("!=", NE)):
                here = self.pos
                self.ows()
                if self.lit(symbol):
                    self.ows()
                    value = self.value()
                    if value is not None:
                        return Match(selector, op, value)
                self.pos = here
            here = self.pos
            if self.ws() and self.lit("is") and self.ws():
                if self.lit("empty"):
                    return Match(selector, IS_EMPTY, None)
                if self.lit("not") and self.ws() and self.lit("empty"):
                    return Match(selector, IS_NOT_EMPTY, None)
            self.pos = here
        self.pos = start
        value = self.value()
        if value is not None:
            for words, op in ((("not", "in"), NOT_IN), (("in",), IN)):
                if self.seq(*words):
                    target = self.selector()
                    if target is not None:
                        return Match(target, op, value)
        self.pos = start
        return None

    def selector(self) -> tuple[str, ...] | None:
        match = _IDENT.match(self.text, self.pos)
        if not match:
            self._fail("[a-zA-Z]")
            return None
        self.pos = match.end()
        self._fail("[a-zA-Z0-9_/]")  # the identifier could have gone on
        parts = [match.group()]
        while True:
            start = self.pos
            if self.lit("."):
                ident = _IDENT.match(self.text, self.pos) or _DIGITS.match(self.text, self.pos)
                if ident:
                    self.pos = ident.end()
                    parts.append(ident.group())
                    continue
                self._fail("[a-zA-Z0-9_]")
            elif self.lit("["):
                self.ows()
                key = self.string()
                if key is not None:
                    self.ows()
                    if self.lit("]"):
                        parts.append(key)
                        continue
            self.pos = start
            return tuple(parts)

    def value(self) -> str | None:
        selector = self.selector()
        if selector is not None:
            return ".".join(selector)
        start = self.pos
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            rest = self.text[self.pos : self.pos + 1]
            if rest in ("", ")") or rest in " \t\r\n":
                return number.group()
            raise _RuleError(self.pos, "number", "Invalid number literal")
        self.pos = start
        self._fail("number")
        return self.string()

    def string(self) -> str | None:
        start = self.pos
        quote = self.text[self.pos : self.pos + 1]
        if quote not in ('"', "`"):
            self._fail("string")
            return None
        end = self.text.find(quote, self.pos + 1)
        if quote == '"':
            # A backslash-escaped quote does not end the literal.
            end = self.pos + 1
            while end < len(self.text) and self.text[end] != '"':
                end += 2 if self.text[end] == "\\" else 1
            end = end if end < len(self.text) else -1
        if end < 0:
            raise _RuleError(len(self.text), "string", "Unterminated string literal")
        raw = self.text[start : end + 1]
        self.pos = end + 1
        if quote == "`":
            return raw[1:-1]
        try:
            value = ast.literal_eval(raw)
        except (SyntaxError, ValueError):
            raise _RuleError(start, "string", "invalid syntax") from None
        return str(value)


def parse(expression: str) -> Node:
    """Parse a filter expression, raising FilterError with go-bexpr's wording."""
    parser = _Parser(expression)
    try:
        return parser.parse()
    except _RuleError as exc:
        line = expression.count("\n", 0, exc.pos) + 1
        col = exc.pos - (expression.rfind("\n", 0, exc.pos) + 1) + 1
        raise FilterError(f'{_PREFIX}{line}:{col} ({exc.pos}): rule "{exc.rule}": {exc.message}') from None


def _go_quote_path(path: tuple[str, ...]) -> str:
    return "[" + " ".join(f'"{part}"' for part in path) + "]"


def _child(schema: Field, part: str) -> Field | None:
    if schema.kind in ("struct", "structs"):
        return (schema.fields or {}).get(part)
    if schema.kind == "map":
        return Field("string")
    if schema.kind == "map_struct":
        return Field("struct", schema.fields)
    return None


_BOOLS = {
    "1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
    "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False,
}  # fmt: skip


def _coerce(raw: str, kind: str, selector: str) -> Any:
    """Convert a match value like go-bexpr's CoerceInt64/CoerceBool (strconv semantics)."""
    try:
        if kind == "int":
            return int(raw, 0)
        if kind == "bool":
            return _BOOLS[raw]
    except (ValueError, KeyError):
        func = "ParseInt" if kind == "int" else "ParseBool"
        raise FilterError(
            f'{_PREFIX}Failed to coerce value "{raw}" for selector "{selector}": '
            f'strconv.{func}: parsing "{raw}": invalid syntax'
        ) from None
    return raw


def _validate(node: Node, root: Field) -> Node:
    if isinstance(node, Not):
        return Not(_validate(node.operand, root))
    if isinstance(node, Binary):
        return Binary(node.op, _validate(node.left, root), _validate(node.right, root))
    schema: Field | None = root
    for idx, part in enumerate(node.selector):
        schema = _child(schema, part) if schema else None
        if schema is None:
            raise FilterError(f"{_PREFIX}Selector {_go_quote_path(node.selector[: idx + 1])} is not valid")
    assert schema is not None
    selector = ".".join(node.selector)
    if node.op not in schema.ops:
        raise FilterError(f'{_PREFIX}Invalid match operator "{node.op}" for selector "{selector}"')
    if node.value is not None and schema.kind in ("int", "bool"):
        _coerce(node.value, schema.kind, selector)
    if node.op in (MATCHES, NOT_MATCHES) and node.value is not None:
        try:
            re.compile(node.value)
        except re.error as exc:
            raise FilterError(f'{_PREFIX}Failed to compile regular expression "{node.value}": {exc}') from None
    return node


_ZERO: dict[str, Any] = {"string": "", "int": 0, "bool": False, "strings": [], "map": {}, "map_struct": {}}


def _leaf(op: str, raw: str | None, value: Any, schema: Field) -> bool:
    if value is None:
        value = _ZERO.get(schema.kind)
    if op == IS_EMPTY:
        return not value
    if op == EQ:
        assert raw is not None
        return bool(_coerce(raw, schema.kind, "") == value)
    if op == IN:
        if isinstance(value, str):
            return str(raw) in value
        return raw in (value or ())
    if op == MATCHES:
        return re.search(str(raw), str(value)) is not None
    return False


def _recurse(match: Match, op: str, depth: int, value: Any, schema: Field) -> bool:
    if schema.kind == "structs" and depth < len(match.selector):
        element = Field("struct", schema.fields)
        return any(_recurse(match, op, depth, item, element) for item in (value or []))
    if depth == len(match.selector):
        return _leaf(op, match.value, value, schema)
    part = match.selector[depth]
    child = _child(schema, part)
    assert child is not None
    inner = value.get(part) if isinstance(value, dict) else None
    return _recurse(match, op, depth + 1, inner, child)


def _evaluate(node: Node, datum: Any, root: Field) -> bool:
    if isinstance(node, Not):
        return not _evaluate(node.operand, datum, root)
    if isinstance(node, Binary):
        if node.op == "and":
            return _evaluate(node.left, datum, root) and _evaluate(node.right, datum, root)
        return _evaluate(node.left, datum, root) or _evaluate(node.right, datum, root)
    positive = _POSITIVE.get(node.op, node.op)
    result = _recurse(node, positive, 0, datum, root)
    return not result if positive != node.op else result


class Filter:
    """A compiled filter for items shaped like ``schema`` (a struct Field)."""

    def __init__(self, expression: str, schema: Field) -> None:
        self.expression = expression
        self.schema = schema
        self.node = _validate(parse(expression), schema) if expression else None

    def matches(self, item: Any) -> bool:
        return self.node is None or _evaluate(self.node, item, self.schema)

    def apply(self, items: list[Any]) -> list[Any]:
        return [item for item in items if self.matches(item)]
