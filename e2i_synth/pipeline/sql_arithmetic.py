"""SQL expressions that take part in Python arithmetic, so a formula written once for numpy and
polars (core.scenario.CausalModel's) also renders as the SQL a check runs: one owner per rule."""

from __future__ import annotations

from psycopg import sql


class SqlExpr:
    """A psycopg.sql expression; +, -, * and / with numbers or other SqlExprs build new ones
    (numbers as literals, every operation parenthesised)."""

    def __init__(self, expr: sql.Composable | str):
        self.sql = sql.SQL(expr) if isinstance(expr, str) else expr

    @staticmethod
    def _of(value: object) -> sql.Composable:
        if isinstance(value, SqlExpr):
            return value.sql
        if isinstance(value, int | float) and not isinstance(value, bool):
            return sql.SQL("{}::float8").format(sql.Literal(float(value)))
        return NotImplemented

    def _op(self, op: str, left: object, right: object) -> SqlExpr:
        a, b = self._of(left), self._of(right)
        if a is NotImplemented or b is NotImplemented:
            return NotImplemented
        return SqlExpr(sql.SQL("({} {} {})").format(a, sql.SQL(op), b))

    def __add__(self, other: object) -> SqlExpr:
        return self._op("+", self, other)

    def __radd__(self, other: object) -> SqlExpr:
        return self._op("+", other, self)

    def __sub__(self, other: object) -> SqlExpr:
        return self._op("-", self, other)

    def __rsub__(self, other: object) -> SqlExpr:
        return self._op("-", other, self)

    def __mul__(self, other: object) -> SqlExpr:
        return self._op("*", self, other)

    def __rmul__(self, other: object) -> SqlExpr:
        return self._op("*", other, self)

    def __truediv__(self, other: object) -> SqlExpr:
        return self._op("/", self, other)

    def __rtruediv__(self, other: object) -> SqlExpr:
        return self._op("/", other, self)
