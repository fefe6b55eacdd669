"""``--eligible EXPR``: who a trial's policy is offered to, as a small safe expression.

The expression reads the population table's columns by name and is evaluated on
whole columns at once, e.g. ``prevent_risk_10y_ascvd >= 0.075 and age_years <= 75``
or ``diabetes and not on_statin``. Only names, numbers, True/False, comparisons
(``< <= > >= == !=``), ``and``, ``or``, ``not`` and parentheses are allowed: it is
parsed, never ``eval``-ed. A missing value (NaN) fails every comparison, so a
patient without the number is not eligible by it.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

_COMPARE: Final[dict[type[ast.cmpop], Callable[[Any, Any], Any]]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class EligibilityError(ValueError):
    """An expression that is not allowed or names an unknown column."""


def evaluate(expr: str, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """A boolean mask of length ``n``: the rows for which ``expr`` holds."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise EligibilityError(f"--eligible {expr!r} does not parse: {exc.msg}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.BoolOp):
            values = [np.asarray(ev(v), dtype=bool) for v in node.values]
            out = values[0]
            for v in values[1:]:
                out = out & v if isinstance(node.op, ast.And) else out | v
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~np.asarray(ev(node.operand), dtype=bool)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            out = np.ones(n, dtype=bool)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                fn = _COMPARE.get(type(op))
                if fn is None:
                    raise EligibilityError(f"--eligible: operator {type(op).__name__} not allowed")
                right = ev(comparator)
                with np.errstate(invalid="ignore"):
                    out = out & np.asarray(fn(left, right), dtype=bool)
                left = right
            return out
        if isinstance(node, ast.Name):
            if node.id not in columns:
                raise EligibilityError(
                    f"--eligible: no column {node.id!r}; known: {', '.join(sorted(columns))}"
                )
            return columns[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, bool | int | float):
            return node.value
        raise EligibilityError(f"--eligible: {type(node).__name__} not allowed in {expr!r}")

    result = np.asarray(ev(tree.body))
    if result.dtype != bool:
        raise EligibilityError(f"--eligible {expr!r} is not a condition (true/false per patient)")
    return np.broadcast_to(result, (n,)).copy()
