"""Request parsing and validation into a float32 matrix, and response shaping. No Flask here.

Everything is read from the model's signature (signature.py). Three contracts:
- records: the original `[{"0": 5.1, "1": 3.5, ...}, ...]`, or the same with feature names as
  keys; one object counts as one record.
- KServe V1: `{"instances": [[...], ...]}` (rows in feature order) or instances keyed by name.
- Open Inference Protocol V2: one [N, n_features] tensor in; `label` and `probabilities`
  (classifiers) or `prediction` (regressors) out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from inference_service.errors import InvalidInput, PayloadTooLarge
from inference_service.model import Model, Prediction
from inference_service.signature import LABEL, PROBABILITIES, Signature

_RECORDS = msgspec.json.Decoder(list[dict[str, float]] | dict[str, float])
_ENCODE = msgspec.json.Encoder().encode

Matrix = npt.NDArray[np.float32]
# msgspec raises UnicodeDecodeError, outside its own errors, for a key or string it must decode.
NOT_UTF8 = "The body is not valid JSON: a string in it is not valid UTF-8."


def _record_type(keys: tuple[str, ...]) -> Any:
    # Decoding straight into struct fields skips a dict per record; gc=False because the fields
    # are floats only. Unknown, missing or mistyped keys fail here and take the dict path below.
    return msgspec.defstruct(
        "Record",
        [(f"x{i}", float, msgspec.field(name=key)) for i, key in enumerate(keys)],
        forbid_unknown_fields=True,
        gc=False,
    )


class Keys:
    """The two key styles of one feature list, and decoders built for them once."""

    def __init__(self, features: tuple[str, ...]) -> None:
        self.features = features
        self.positional = tuple(str(i) for i in range(len(features)))
        self.styles = (self.positional, features)
        self.getters = {style: itemgetter(*style) for style in self.styles}
        self.fast = tuple(
            (style, msgspec.json.Decoder(list[record] | record))  # type: ignore[valid-type]
            for style in self.styles
            for record in [_record_type(style)]
        )
        fields = attrgetter(*(f"x{i}" for i in range(len(features))))
        # attrgetter of one name returns the value, not a 1-tuple.
        self.fields = fields if len(features) > 1 else (lambda r: (fields(r),))


@lru_cache(maxsize=64)
def keys_for(features: tuple[str, ...]) -> Keys:
    return Keys(features)


def parse_records(body: bytes, signature: Signature, max_rows: int) -> Matrix:
    """Decode the records contract into an [N, n_features] float32 matrix, or raise a 4xx."""
    k = keys_for(signature.feature_names)
    for style, decoder in k.fast:
        try:
            fast = decoder.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            continue
        if not isinstance(fast, list):
            fast = [fast]
        _check_count(len(fast), max_rows)
        return _matrix(list(map(k.fields, fast)), style)
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
    return _rows_from_records(records, k)


def _rows_from_records(records: list[dict[str, float]], k: Keys) -> Matrix:
    style = k.positional if k.positional[0] in records[0] else k.features
    try:
        # Every record has exactly the features, in the first record's style.
        if set(map(len, records)) != {len(style)}:
            raise KeyError
        getter = k.getters[style]
        rows = [getter(r) if len(style) > 1 else (getter(r),) for r in records]
    except KeyError:
        raise InvalidInput(_explain_keys(records, style, k)) from None
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


def answers(prediction: Prediction) -> list[Any]:
    """One answer per row: the label (classifiers) or the value (regressors)."""
    if prediction.labels is not None:
        return prediction.labels
    assert prediction.values is not None
    values: list[Any] = prediction.values.tolist()
    return values


def records_response(
    name: str,
    version: str,
    prediction: Prediction,
    classes: tuple[str, ...],
    with_probabilities: bool = False,
) -> bytes:
    answer: dict[str, Any] = {
        "predictions": answers(prediction),
        "model": {"name": name, "version": version},
    }
    if with_probabilities and prediction.probabilities is not None:
        answer["probabilities"] = [
            dict(zip(classes, row, strict=True)) for row in prediction.probabilities.tolist()
        ]
    return _ENCODE(answer)


# --- KServe V1 ---

_V1 = msgspec.json.Decoder(dict[str, Any])


def parse_v1(body: bytes, signature: Signature, max_rows: int) -> Matrix:
    """`{"instances": [[...], ...]}` (rows in feature order) or instances keyed by feature name."""
    try:
        request = _V1.decode(body)
    except msgspec.ValidationError:
        raise InvalidInput('The body must be a JSON object with "instances".') from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"The body is not valid JSON: {_reason(exc)}.") from None
    except UnicodeDecodeError:
        raise InvalidInput(NOT_UTF8) from None
    except RecursionError:
        raise InvalidInput("The body nests arrays or objects too deeply.") from None
    instances = request.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput(f'"instances" must be an array, got {_json_type(instances)}.')
    _check_count(len(instances), max_rows)
    width = signature.width
    if all(isinstance(row, dict) for row in instances):
        return parse_records(msgspec.json.encode(instances), signature, max_rows)
    for i, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else _json_type(row)
            raise InvalidInput(
                f"Instance {i}: expected {width} numbers (features "
                f"{', '.join(signature.feature_names)}), got {got}."
            )
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InvalidInput(
                    f"Instance {i}, feature {signature.feature_names[j]!r}: expected a number, "
                    f"got {_json_type(v)}."
                )
    with np.errstate(over="ignore"):
        try:
            x = np.array(instances, dtype=np.float32)
        except OverflowError:
            x = np.full((1, 1), np.inf, dtype=np.float32)
    if not np.isfinite(x).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput(
            f"Instance {i}, feature {signature.feature_names[j]!r}: the number is out of range "
            "for a 32-bit float."
        )
    return x


def v1_response(prediction: Prediction) -> bytes:
    return _ENCODE({"predictions": answers(prediction)})


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


def _explain_keys(records: list[dict[str, float]], style: tuple[str, ...], k: Keys) -> str:
    other = k.styles[1] if style is k.positional else k.styles[0]
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
                f"Record {i}: unknown key {unknown[0]!r}; keys are {_quoted(k.positional)} "
                f"or {_quoted(k.features)}."
            )
        missing = [key for key in style if key not in keys]
        return (
            f"Record {i}: missing key {missing[0]!r}; every record needs "
            f"{_count(len(style))}: {_quoted(style)}."
        )
    return f"Every record needs exactly {_count(len(style))}."  # unreachable for valid input


# --- Open Inference Protocol V2 ---

_INT_TYPES = {
    f"{prefix}{bits}": np.dtype(f"{prefix.lower()}{bits}")
    for prefix in ("INT", "UINT")
    for bits in (8, 16, 32, 64)
}
DATATYPES = ("FP16", "FP32", "FP64", *_INT_TYPES)
FP16_MAX = float(np.finfo(np.float16).max)


class V2Tensor(msgspec.Struct):
    name: str
    shape: list[int | float]  # JSON has one number type: 4.0 is an integer as much as 4 is
    datatype: str
    # Integers stay exact Python ints, so that UINT64's and INT64's limits are checked exactly.
    data: list[int | float | list[int | float]] | None = None
    """Absent when the tensor travels as binary data (`parameters.binary_data_size`)."""
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
# The binary tensor data extension: raw little-endian values after the JSON header.
_BINARY_DTYPES: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    **{name: dtype.newbyteorder("<") for name, dtype in _INT_TYPES.items()},
}
BINARY_EXTENSION = "binary_tensor_data"


def parse_v2(
    body: bytes, signature: Signature, max_rows: int, header_length: int | None = None
) -> tuple[V2Request, Matrix]:
    """Decode a V2 infer request into the request and its [N, n_features] float32 matrix.

    With `header_length` (the Inference-Header-Content-Length header), the body is that many
    bytes of JSON followed by the binary data of the input whose `binary_data_size` says so.
    """
    binary = b""
    if header_length is not None:
        if header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length}, past the end of the "
                f"{len(body)}-byte body."
            )
        body, binary = body[:header_length], body[header_length:]
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
    width = signature.width
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
        if out.name not in signature.outputs:
            raise InvalidInput(
                f"Unknown output {out.name!r}; this model has {', '.join(signature.outputs)}."
            )
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        values = _binary_values(tensor, shape, size, binary)
    elif binary:
        raise InvalidInput(
            f"{len(binary)} bytes follow the JSON header, but input {tensor.name!r} has no "
            "binary_data_size."
        )
    elif tensor.data is None:
        raise InvalidInput(f"Input {tensor.name!r} has neither data nor binary_data_size.")
    else:
        values = _json_values(tensor, shape, width)
    if tensor.datatype == "FP16" and np.abs(values).max() > FP16_MAX:
        raise InvalidInput(
            f"Input {tensor.name!r}: a value is out of range for FP16 (largest {FP16_MAX:g})."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        x = values.reshape(shape[0], width).astype(np.float32)
    if not np.isfinite(x).all():
        raise InvalidInput(f"Input {tensor.name!r}: a value is out of range for a 32-bit float.")
    return request, x


def _json_values(tensor: V2Tensor, shape: list[int], width: int) -> npt.NDArray[Any]:
    data = tensor.data or []
    nested = [isinstance(v, list) for v in data]
    if any(nested) and not all(nested):
        raise InvalidInput(f"Input {tensor.name!r}: data mixes numbers and lists.")
    if dtype := _INT_TYPES.get(tensor.datatype):
        rows: Any = chain.from_iterable(data) if any(nested) else data  # type: ignore[arg-type]
        _check_integers(tensor, rows, dtype)
    try:
        values = np.array(data, dtype=np.float64)
    except ValueError:
        raise InvalidInput(f"Input {tensor.name!r}: nested data rows differ in length.") from None
    except OverflowError:  # an integer beyond any double
        raise InvalidInput(
            f"Input {tensor.name!r}: a value is out of range for a 32-bit float."
        ) from None
    expected = shape[0] * width
    if values.size != expected or (values.ndim == 2 and values.shape[1] != width):
        raise InvalidInput(
            f"Input {tensor.name!r}: shape {shape} needs {expected} values "
            f"({shape[0]} rows of {width}), got data of shape {list(values.shape)}."
        )
    return values


def _check_integers(tensor: V2Tensor, values: Iterable[int | float], dtype: np.dtype[Any]) -> None:
    """Every value a whole number within the integer type's range, compared exactly."""
    info = np.iinfo(dtype)
    low, high = int(info.min), int(info.max)
    for v in values:
        if isinstance(v, float):
            if not (math.isfinite(v) and v.is_integer()):
                break
            v = int(v)
        if not low <= v <= high:
            break
    else:
        return
    raise InvalidInput(
        f"Input {tensor.name!r}: data must be integers in {tensor.datatype} range "
        f"[{info.min}, {info.max}]."
    )


def _binary_values(
    tensor: V2Tensor, shape: list[int], size: Any, binary: bytes
) -> npt.NDArray[Any]:
    """The input's values from the bytes after the JSON header (binary tensor data extension)."""
    if tensor.data is not None:
        raise InvalidInput(f"Input {tensor.name!r} has both data and binary_data_size.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(
            f"Input {tensor.name!r}: binary_data_size must be a byte count, got {size!r}."
        )
    if size != len(binary):
        raise InvalidInput(
            f"Input {tensor.name!r}: binary_data_size is {size}, but {len(binary)} bytes follow "
            "the JSON header."
        )
    dtype = _BINARY_DTYPES[tensor.datatype]
    expected = shape[0] * shape[1] * dtype.itemsize
    if size != expected:
        raise InvalidInput(
            f"Input {tensor.name!r}: shape {shape} of {tensor.datatype} needs {expected} bytes "
            f"({shape[0] * shape[1]} values of {dtype.itemsize}), got {size}."
        )
    values: npt.NDArray[Any] = np.frombuffer(binary, dtype=dtype)
    if tensor.datatype in ("FP32", "FP64", "FP16"):
        if not np.isfinite(values).all():
            raise InvalidInput(f"Input {tensor.name!r}: the binary data holds NaN or infinity.")
        return values
    wide: npt.NDArray[Any] = values.astype(np.float64)
    return wide


def v2_metadata(model: Model) -> dict[str, Any]:
    """V2 model metadata, from the signature; the card's key fields go in `parameters`."""
    sig, card = model.signature, model.card
    outputs = [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(sig.labels)]},
    ]
    if not sig.is_classifier:
        outputs = [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, sig.width]}],
        "outputs": outputs,
        "parameters": {
            "version": model.version,
            "task": sig.task,
            "trained_at": card["created_at"],
            "data_sha256": card["data_sha256"],
            "features": list(sig.feature_names),
            "labels": list(sig.labels),
            "metrics": {k: v for k, v in card["metrics"].items() if k != "confusion_matrix"},
        },
    }


def v2_response(
    name: str, version: str, request: V2Request, prediction: Prediction, signature: Signature
) -> tuple[bytes, int | None]:
    """The answer, and the JSON header's length when some outputs travel as binary data."""
    if request.outputs:
        wanted = [(o.name, bool((o.parameters or {}).get("binary_data"))) for o in request.outputs]
    else:
        everything = bool((request.parameters or {}).get("binary_data_output"))
        wanted = [(o, everything) for o in signature.outputs]
    blobs: list[bytes] = []

    def tensor(output: str, binary: bool) -> dict[str, Any]:  # built only when asked for
        if output == LABEL:
            labels = prediction.labels or []
            answer: dict[str, Any] = {"name": output, "shape": [len(labels)], "datatype": "BYTES"}
            if not binary:
                return {**answer, "data": labels}
            blob = b"".join(map(_LENGTH_PREFIXED.__getitem__, labels))
        else:
            values = prediction.probabilities if output == PROBABILITIES else prediction.values
            assert values is not None
            answer = {"name": output, "shape": list(values.shape), "datatype": "FP32"}
            if not binary:
                return {**answer, "data": values.ravel().tolist()}
            blob = np.ascontiguousarray(values, dtype="<f4").tobytes()
        blobs.append(blob)
        return {**answer, "parameters": {"binary_data_size": len(blob)}}

    answer: dict[str, Any] = {"model_name": name, "model_version": version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = [tensor(n, binary) for n, binary in wanted]
    header = _ENCODE(answer)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


class _LengthPrefixed(dict[str, bytes]):
    """A BYTES element in binary form: its length as 4 little-endian bytes, then the bytes.

    Labels come from the served models' classes, so the dict stays as small as their union; a
    plain dict lookup costs half of an lru_cache call, which shows at 1,000 labels a request.
    """

    def __missing__(self, text: str) -> bytes:
        raw = text.encode()
        self[text] = value = len(raw).to_bytes(4, "little") + raw
        return value


_LENGTH_PREFIXED = _LengthPrefixed()


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


def _count(n: int) -> str:
    return f"{n} key" if n == 1 else f"{n} keys"


def _quoted(keys: tuple[str, ...]) -> str:
    return ", ".join(repr(k) for k in keys)
