"""Request parsing and validation into a float32 matrix, and response shaping. No Flask here.

Two contracts:
- records: the original `[{"0": 5.1, "1": 3.5, "2": 1.4, "3": 0.2}, ...]`, or the same with feature
  names as keys; one object counts as one record.
- Open Inference Protocol V2: one [N, 4] tensor in, `label` and `probabilities` tensors out.
"""

from __future__ import annotations

import json
import math
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from inference_service import FEATURES
from inference_service.errors import InvalidInput, PayloadTooLarge

POSITIONAL = tuple(str(i) for i in range(len(FEATURES)))
KEY_STYLES = (POSITIONAL, FEATURES)
_GETTERS = {style: itemgetter(*style) for style in KEY_STYLES}
_RECORDS = msgspec.json.Decoder(list[dict[str, float]] | dict[str, float])


def _record_type(keys: tuple[str, ...]) -> Any:
    # Decoding straight into struct fields skips a dict per record; gc=False because the fields
    # are floats only. Unknown, missing or mistyped keys fail here and take the dict path below.
    return msgspec.defstruct(
        "Record",
        [(f"x{i}", float, msgspec.field(name=key)) for i, key in enumerate(keys)],
        forbid_unknown_fields=True,
        gc=False,
    )


_FAST = tuple(
    (style, msgspec.json.Decoder(list[record] | record))  # type: ignore[valid-type]
    for style in KEY_STYLES
    for record in [_record_type(style)]
)
_FIELDS = attrgetter(*(f"x{i}" for i in range(len(FEATURES))))
_ENCODE = msgspec.json.Encoder().encode

Matrix = npt.NDArray[np.float32]
# msgspec raises UnicodeDecodeError, outside its own errors, for a key or string it must decode.
NOT_UTF8 = "The body is not valid JSON: a string in it is not valid UTF-8."


def parse_records(body: bytes, max_rows: int) -> Matrix:
    """Decode the original contract into an [N, 4] float32 matrix, or raise a 4xx error."""
    for style, decoder in _FAST:
        try:
            fast = decoder.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            continue
        if not isinstance(fast, list):
            fast = [fast]
        _check_count(len(fast), max_rows)
        return _matrix(list(map(_FIELDS, fast)), style)
    try:
        records = _RECORDS.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidInput(_explain_types(body, str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"The body is not valid JSON: {_reason(exc)}.") from None
    except UnicodeDecodeError:
        raise InvalidInput(NOT_UTF8) from None
    if isinstance(records, dict):
        records = [records]
    _check_count(len(records), max_rows)
    style = POSITIONAL if POSITIONAL[0] in records[0] else FEATURES
    try:
        # Every record has exactly 4 keys in the first record's style.
        if set(map(len, records)) != {len(style)}:
            raise KeyError
        rows = list(map(_GETTERS[style], records))
    except KeyError:
        raise InvalidInput(_explain_keys(records, style)) from None
    return _matrix(rows, style)


def _check_count(n: int, max_rows: int) -> None:
    if not n:
        raise InvalidInput("The body is an empty array; send at least one record.")
    if n > max_rows:
        raise PayloadTooLarge(f"{n} records is more than the limit of {max_rows}.")


def _matrix(rows: list[Any], style: tuple[str, ...]) -> Matrix:
    n = len(rows)
    # One flat pass in C; np.array on a list of tuples costs twice as much.
    with np.errstate(over="ignore"):
        x = np.fromiter(chain.from_iterable(rows), dtype=np.float32, count=n * len(style))
    x = x.reshape(n, len(style))
    if not np.isfinite(x).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput(
            f"Record {i}, key {style[j]!r}: {rows[i][j]!r} is out of range for a 32-bit float."
        )
    return x


def records_response(
    name: str,
    version: str,
    labels: list[str],
    probabilities: Matrix | None,
    classes: tuple[str, ...],
) -> bytes:
    answer: dict[str, Any] = {"predictions": labels, "model": {"name": name, "version": version}}
    if probabilities is not None:
        answer["probabilities"] = [
            dict(zip(classes, row, strict=True)) for row in probabilities.tolist()
        ]
    return _ENCODE(answer)


def _explain_types(body: bytes, fallback: str) -> str:
    """Name the record and key behind a type error (the slow path, taken only for bad input)."""
    try:
        # The standard library reads 1e309 as infinity instead of failing, so the key can be named;
        # integers as floats too, since a 5,000-digit integer would exceed its digit limit.
        value = json.loads(body, parse_int=float)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond the stack
        return f"The body does not match the contract: {fallback}."
    records = [value] if isinstance(value, dict) else value
    if not isinstance(records, list):
        return (
            "The body must be a JSON array of records (objects), or one record; "
            f"got {_json_type(value)}."
        )
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            return f"Record {i} must be a JSON object, got {_json_type(record)}."
        for key, v in record.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"Record {i}, key {key!r}: expected a number, got {_json_type(v)}."
            try:
                finite = math.isfinite(v)
            except OverflowError:
                finite = False
            if not finite:
                return f"Record {i}, key {key!r}: the number is out of range."
    return f"The body does not match the contract: {fallback}."


def _explain_keys(records: list[dict[str, float]], style: tuple[str, ...]) -> str:
    other = KEY_STYLES[1] if style is POSITIONAL else KEY_STYLES[0]
    for i, record in enumerate(records):
        keys = set(record)
        if keys == set(style):
            continue
        unknown = sorted(keys - set(style))
        if unknown and set(unknown) <= set(other):
            return (
                f"Record {i} mixes key styles: {unknown[0]!r} with record 0's keys "
                f"{_quoted(style)}; use one style for the whole request."
            )
        if unknown:
            return (
                f"Record {i}: unknown key {unknown[0]!r}; keys are {_quoted(POSITIONAL)} "
                f"or {_quoted(FEATURES)}."
            )
        missing = [k for k in style if k not in keys]
        return f"Record {i}: missing key {missing[0]!r}; every record needs {_quoted(style)}."
    return "Every record needs exactly four features."  # unreachable for well-formed input


# --- Open Inference Protocol V2 ---

OUTPUT_NAMES = ("label", "probabilities")
_INT_TYPES = {
    f"{prefix}{bits}": np.dtype(f"{prefix.lower()}{bits}")
    for prefix in ("INT", "UINT")
    for bits in (8, 16, 32, 64)
}
DATATYPES = ("FP16", "FP32", "FP64", *_INT_TYPES)


class V2Tensor(msgspec.Struct):
    name: str
    shape: list[int | float]  # JSON has one number type: 4.0 is an integer as much as 4 is
    datatype: str
    data: list[float | list[float]]
    parameters: dict[str, Any] | None = None


class V2Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class V2Request(msgspec.Struct):
    inputs: list[V2Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2Output] | None = None


_V2 = msgspec.json.Decoder(V2Request)


def parse_v2(body: bytes, max_rows: int) -> tuple[V2Request, Matrix]:
    """Decode a V2 infer request into the request and its [N, 4] float32 matrix."""
    try:
        request = _V2.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"Not a valid V2 inference request: {_reason(exc)}.") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"The body is not valid JSON: {_reason(exc)}.") from None
    except UnicodeDecodeError:
        raise InvalidInput(NOT_UTF8) from None
    except RecursionError:  # free-form `parameters` nested beyond the interpreter's stack
        raise InvalidInput("The body nests arrays or objects too deeply.") from None
    if len(request.inputs) != 1:
        raise InvalidInput(f"Send exactly one input tensor, got {len(request.inputs)}.")
    tensor = request.inputs[0]
    if not all(isinstance(d, int) or d.is_integer() for d in tensor.shape):
        raise InvalidInput(f"Input {tensor.name!r}: shape must hold integers, got {tensor.shape}.")
    shape = [int(d) for d in tensor.shape]
    width = len(FEATURES)
    if len(shape) != 2 or shape[1] != width or shape[0] < 1:
        raise InvalidInput(f"Input {tensor.name!r}: shape must be [N, {width}], got {shape}.")
    if shape[0] > max_rows:
        raise PayloadTooLarge(f"{shape[0]} rows is more than the limit of {max_rows}.")
    if tensor.datatype not in DATATYPES:
        raise InvalidInput(
            f"Input {tensor.name!r}: datatype {tensor.datatype!r} is not supported; "
            f"use one of {', '.join(DATATYPES)}."
        )
    for out in request.outputs or ():
        if out.name not in OUTPUT_NAMES:
            raise InvalidInput(
                f"Unknown output {out.name!r}; this model has {', '.join(OUTPUT_NAMES)}."
            )
    nested = [isinstance(v, list) for v in tensor.data]
    if any(nested) and not all(nested):
        raise InvalidInput(f"Input {tensor.name!r}: data mixes numbers and lists.")
    try:
        values = np.array(tensor.data, dtype=np.float64)
    except ValueError:
        raise InvalidInput(f"Input {tensor.name!r}: nested data rows differ in length.") from None
    expected = shape[0] * width
    if values.size != expected or (values.ndim == 2 and values.shape[1] != width):
        raise InvalidInput(
            f"Input {tensor.name!r}: shape {shape} needs {expected} values "
            f"({shape[0]} rows of {width}), got data of shape {list(values.shape)}."
        )
    if dtype := _INT_TYPES.get(tensor.datatype):
        info = np.iinfo(dtype)
        if not (
            np.all(values == np.round(values))
            and values.min() >= info.min
            and values.max() <= info.max
        ):
            raise InvalidInput(
                f"Input {tensor.name!r}: data must be integers in {tensor.datatype} range."
            )
    with np.errstate(over="ignore"):
        x = values.reshape(shape[0], width).astype(np.float32)
    if not np.isfinite(x).all():
        raise InvalidInput(f"Input {tensor.name!r}: a value is out of range for a 32-bit float.")
    return request, x


def v2_response(
    name: str, version: str, request: V2Request, labels: list[str], probabilities: Matrix
) -> bytes:
    wanted = [o.name for o in request.outputs] if request.outputs else OUTPUT_NAMES

    def tensor(name: str) -> dict[str, Any]:  # built only when asked for
        if name == "label":
            return {"name": name, "shape": [len(labels)], "datatype": "BYTES", "data": labels}
        return {
            "name": name,
            "shape": list(probabilities.shape),
            "datatype": "FP32",
            "data": probabilities.ravel().tolist(),
        }

    answer: dict[str, Any] = {"model_name": name, "model_version": version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = [tensor(n) for n in wanted]
    return _ENCODE(answer)


def _reason(exc: Exception) -> str:
    return str(exc).rstrip(".")


def _json_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _quoted(keys: tuple[str, ...]) -> str:
    return ", ".join(repr(k) for k in keys)
