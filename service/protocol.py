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


class InferenceRequest(_Strict):
    id: StrictStr | None = None
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
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested {depth} levels deep, limit {MAX_JSON_DEPTH}")
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
    """How deeply arrays and objects nest in raw JSON (brackets inside strings do not count).

    One vectorised pass, linear in the body: a quote ends or starts a string unless an odd run
    of backslashes escapes it. (The regex this replaces restarted at every escaped quote of an
    unclosed string: 32 KB cost 3 s, 200 KB froze a worker.)
    """
    opening = raw.count(b"[") + raw.count(b"{")
    if opening <= MAX_JSON_DEPTH:
        return opening  # an upper bound, below the limit: the usual flat tensor stops here
    codes = np.frombuffer(raw, np.uint8)
    steps = np.zeros(len(codes), np.int32)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    quotes = codes == ord('"')
    if quotes.any():
        positions = np.arange(len(codes))
        # Index of the last byte that is not a backslash, at or before each position.
        last_other = np.maximum.accumulate(np.where(codes != ord("\\"), positions, -1))
        escaped = np.zeros(len(codes), bool)
        escaped[1:] = ((positions[1:] - 1 - last_other[:-1]) % 2) == 1  # an odd run of backslashes before it
        delimiters = quotes & ~escaped
        inside = (np.cumsum(delimiters) % 2 == 1) & ~delimiters  # between an opening and a closing quote
        steps[inside] = 0
    return int(np.cumsum(steps).max(initial=0))
