"""results.parquet: the run's rows with the data dictionary's types, written with pyarrow
alone (no pandas), so a run can write it without loading pandas.

Only with the ``iobench[parquet]`` extra installed; CSV is always written.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from iobench.dictionary import ColumnDoc
from iobench.metrics import is_flag, is_missing, is_number


def available() -> bool:
    """Whether pyarrow can be imported here."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _int(value: Any) -> int | None:
    if is_missing(value) or not is_number(value):
        return None
    number = float(value)
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _float(value: Any) -> float | None:
    if is_missing(value) or not is_number(value):
        return None
    return float(value)


def _flag(value: Any) -> bool | None:
    if is_flag(value):
        return bool(value)
    if isinstance(value, str) and value.strip() in ("True", "False"):
        return value.strip() == "True"
    return None


def _text(value: Any) -> str | None:
    return None if is_missing(value) else str(value)


def to_parquet(rows: Sequence[Mapping[str, Any]], docs: Iterable[ColumnDoc], columns: Sequence[str]) -> bytes:
    """Parquet bytes of ``rows`` in ``columns`` order, typed from ``docs`` (undeclared columns:
    numbers as float64 or int64, anything else as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_name = {doc.name: doc for doc in docs}
    arrays, fields = [], []
    for name in columns:
        values = [row.get(name) for row in rows]
        doc = by_name.get(name)
        dtype = doc.dtype if doc else _guess(values)
        if dtype == "Int64":
            converted = [_int(v) for v in values]
            if any(c is None and not is_missing(v) for c, v in zip(converted, values, strict=True)):
                array = pa.array([_float(v) for v in values], pa.float64())  # not whole numbers after all
            else:
                array = pa.array(converted, pa.int64())
        elif dtype == "boolean":
            array = pa.array([_flag(v) for v in values], pa.bool_())
        elif dtype == "category":
            array = pa.array([_text(v) for v in values], pa.string()).dictionary_encode()
        elif dtype == "string":
            array = pa.array([_text(v) for v in values], pa.string())
        else:
            array = pa.array([_float(v) for v in values], pa.float64())
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _guess(values: list[Any]) -> str:
    present = [v for v in values if not is_missing(v)]
    if present and all(is_flag(v) for v in present):
        return "boolean"
    if present and all(is_number(v) for v in present):
        return "Int64" if all(float(v).is_integer() for v in present) else "float64"
    return "string"
