"""Request bodies as typed models: the Open Inference Protocol v2 and the repository extension.

Every field at every level has a type, so a wrong JSON type anywhere is a 400 that names the
field, never an exception deeper in. Unknown fields are refused (a typo such as "ouputs" would
otherwise be silently ignored); parameters may carry any scalar besides the ones we read.
"""
from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from service.errors import BadRequest

# A 4-d tensor nests six deep inside an infer body; 32 leaves room and bounds every recursion.
MAX_JSON_DEPTH = 32
# Objects in one body: a request, its inputs, outputs and parameters. Tensor data are numbers;
# a body of 150,000 inputs cost 2.5 s of CPU to parse and validate, a million `{}` 1.4 s.
MAX_JSON_OBJECTS = 1024
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
T = TypeVar("T", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Parameters(BaseModel):
    """OIP parameters: an object of scalars; the ones we read are typed."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, Scalar]


class InputParameters(_Parameters):
    binary_data_size: StrictInt | None = Field(None, ge=0)  # Triton's binary tensor extension


class OutputParameters(_Parameters):
    binary_data: StrictBool | None = None
    classification: StrictInt | None = Field(None, ge=1)  # Triton's classification extension


class RequestParameters(_Parameters):
    binary_data_output: StrictBool = False


class RequestInput(_Strict):
    name: StrictStr
    shape: list[StrictInt] = Field(min_length=1, max_length=8)
    datatype: StrictStr
    parameters: InputParameters | None = None
    data: list[Any] | None = None  # flat or nested numbers; absent with binary data


class RequestOutput(_Strict):
    name: StrictStr
    parameters: OutputParameters | None = None


# A request id addresses its images for feedback and is stored with them: bounded, and printable
# (PostgreSQL text cannot hold NUL, and one such id would lose its whole batch of captures).
REQUEST_ID_PATTERN = r"^[^\x00-\x1f\x7f]*$"


class InferenceRequest(_Strict):
    id: StrictStr | None = Field(None, max_length=128, pattern=REQUEST_ID_PATTERN)
    parameters: RequestParameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class RepositoryParameters(_Strict):
    version: StrictStr | StrictInt | None = None


class RepositoryRequest(_Strict):
    """Body of load/unload: optional, `{"parameters": {"version": "3"}}` pins a version."""

    parameters: RepositoryParameters | None = None


def parse(model: type[T], raw: bytes) -> T:
    """raw JSON bytes as a `model`, or BadRequest saying which field was wrong and what came."""
    depth, objects = json_structure(raw)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested {depth} levels deep, limit {MAX_JSON_DEPTH}")
    if objects > MAX_JSON_OBJECTS:
        raise BadRequest(f"JSON with {objects:,} objects, limit {MAX_JSON_OBJECTS:,} (tensor data are numbers, not objects)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first validation error as 'field: expected …, got …' for a client to read."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "the body"
    got = error.get("input")
    shown = type(got).__name__ if isinstance(got, (dict, list)) else repr(got)[:60]
    return f"{where}: {error['msg']}, got {shown}"


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in raw JSON (brackets inside strings do not count)."""
    return json_structure(raw)[0]


def json_structure(raw: bytes) -> tuple[int, int]:
    """(nesting depth, number of objects) of raw JSON, brackets and braces in strings not counted.

    One vectorised pass, linear in the body: a quote ends or starts a string unless an odd run
    of backslashes escapes it. (The regex this replaces restarted at every escaped quote of an
    unclosed string: 32 KB cost 3 s, 200 KB froze a worker.) Either figure may be an upper bound
    while it is under its limit: the usual body, a flat tensor, needs no pass at all.
    """
    objects = raw.count(b"{")
    opening = raw.count(b"[") + objects
    if opening <= MAX_JSON_DEPTH and objects <= MAX_JSON_OBJECTS:
        return opening, objects
    codes = np.frombuffer(raw, np.uint8)
    steps = np.zeros(len(codes), np.int8)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    quotes = codes == ord('"')
    if quotes.any():
        positions = np.arange(len(codes), dtype=np.int32)
        # Index of the last byte that is not a backslash, at or before each position.
        last_other = np.maximum.accumulate(np.where(codes != ord("\\"), positions, -1))
        escaped = np.zeros(len(codes), bool)
        escaped[1:] = ((positions[1:] - 1 - last_other[:-1]) % 2) == 1  # an odd run of backslashes before it
        delimiters = quotes & ~escaped
        inside = (np.cumsum(delimiters, dtype=np.int32) % 2 == 1) & ~delimiters  # between an opening and a closing quote
        steps[inside] = 0
    objects = int(np.count_nonzero((codes == ord("{")) & (steps == 1)))
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0)), objects
