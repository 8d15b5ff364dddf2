"""A small evaluator of GitHub Actions expressions, for testing workflow `if:` conditions.

It follows the documented language (docs.github.com, "Evaluate expressions in workflows and
actions"): literals, property dereference, index, `!`, comparisons (strings compare without regard
to case; mixed types compare as numbers), `&&` and `||` returning one of their operands, and the
functions the workflows here use. A status function (`success()`, `failure()`, ...) reads the
`job_status` given; an `if:` without one gets GitHub's implicit `success() &&`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<number>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?))"
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>!().,\[\]*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")


class ExpressionError(ValueError):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def compare(left: Any, right: Any, op: str) -> bool:
    if type(left) is not type(right) and not (
        isinstance(left, int | float) and isinstance(right, int | float)
    ):
        a: Any = to_number(left)
        b: Any = to_number(right)
    elif isinstance(left, str):
        a, b = left.casefold(), right.casefold()
    elif left is None:
        a = b = 0
    else:
        a, b = left, right
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(compare(element, item, "==") for element in search)
    return text(item).casefold() in text(search).casefold()


@dataclass
class Evaluator:
    context: Mapping[str, Any]
    job_status: str = "success"

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "contains": contains,
            "startswith": lambda a, b: text(a).casefold().startswith(text(b).casefold()),
            "endswith": lambda a, b: text(a).casefold().endswith(text(b).casefold()),
            "fromjson": lambda a: json.loads(text(a)),
            "tojson": lambda a: json.dumps(a, indent=2),
            "format": lambda f, *a: re.sub(r"\{(\d+)\}", lambda m: text(a[int(m[1])]), text(f)),
            "join": lambda a, sep=",": (
                text(sep).join(map(text, a)) if isinstance(a, list) else text(a)
            ),
            "success": lambda: self.job_status == "success",
            "failure": lambda: self.job_status == "failure",
            "cancelled": lambda: self.job_status == "cancelled",
            "always": lambda: True,
        }

    def evaluate(self, expression: str) -> Any:
        self.tokens = tokenize(expression)
        self.position = 0
        value = self.parse_or()
        if self.position != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.position][1]!r} in {expression!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ExpressionError("unexpected end of expression")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, got {token[1]!r}")
        self.position += 1
        return token

    def parse_or(self) -> Any:
        value = self.parse_and()
        while self.peek() == "||":
            self.take()
            right = self.parse_and()
            value = value if truthy(value) else right
        return value

    def parse_and(self) -> Any:
        value = self.parse_comparison()
        while self.peek() == "&&":
            self.take()
            right = self.parse_comparison()
            value = right if truthy(value) else value
        return value

    def parse_comparison(self) -> Any:
        value = self.parse_unary()
        while self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            value = compare(value, self.parse_unary(), op)
        return value

    def parse_unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.parse_unary())
        return self.parse_postfix()

    def parse_postfix(self) -> Any:
        value = self.parse_primary()
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name" and name != "*":
                    raise ExpressionError(f"bad property {name!r}")
                value = self.member(value, name)
            else:
                key = self.parse_or()
                self.take("]")
                value = self.member(value, key)
        return value

    @staticmethod
    def member(value: Any, key: Any) -> Any:
        if isinstance(value, Mapping):
            wanted = text(key).casefold()
            return next((v for k, v in value.items() if k.casefold() == wanted), None)
        if isinstance(value, list) and isinstance(key, int | float):
            index = int(key)
            return value[index] if 0 <= index < len(value) else None
        return None

    def parse_primary(self) -> Any:
        kind, value = self.take()
        if kind == "number":
            number = to_number(value)
            return int(number) if number.is_integer() else number
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if value == "(":
            inner = self.parse_or()
            self.take(")")
            return inner
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r}")
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "null":
            return None
        if self.peek() == "(":
            self.take()
            arguments = []
            while self.peek() != ")":
                arguments.append(self.parse_or())
                if self.peek() == ",":
                    self.take()
            self.take(")")
            function = self.functions().get(lowered)
            if function is None:
                raise ExpressionError(f"unknown function {value}()")
            return function(*arguments)
        return Evaluator.member(self.context, value)


def evaluate(expression: str, context: Mapping[str, Any], job_status: str = "success") -> Any:
    """The value of `expression` (with or without `${{ }}`) in `context`."""
    stripped = expression.strip()
    if stripped.startswith("${{") and stripped.endswith("}}"):
        stripped = stripped[3:-2]
    return Evaluator(context, job_status).evaluate(stripped)


def condition(
    expression: str | None, context: Mapping[str, Any], job_status: str = "success"
) -> bool:
    """Whether a job or step with this `if:` runs. GitHub adds `success() &&` when no status
    function is called."""
    if expression is None or expression.strip() == "":
        expression = "success()"
    body = expression.strip()
    if body.startswith("${{") and body.endswith("}}"):
        body = body[3:-2]
    if not re.search(rf"\b({'|'.join(STATUS_FUNCTIONS)})\s*\(", body):
        body = f"success() && ({body})"
    return truthy(Evaluator(context, job_status).evaluate(body))
