"""Large request bodies are validated in a worker thread, so the event loop keeps answering meanwhile.

BentoML 1.4 reads an API's body with `input_spec.from_http_request(request, serde)`, which runs pydantic
on the event loop: a large book holds it for long enough that health probes and every other request
wait. This replaces that one classmethod on the API's generated input model. The serde, the model (so the
validation and `/docs.json`) and the 400 (BentoML's handler catches the `ValidationError` re-raised from
the thread) stay BentoML's own; only where the work runs changes. Small bodies, validated in well under
a millisecond, stay on the loop: a thread hand-off would cost them more than it saves.

BentoML has no public hook for where a body is validated, so this is the one module that relies on its
internals (`_bentoml_impl.serde.Payload`, the input model's `from_http_request`). It checks them when the
service is defined and refuses to start on any other BentoML minor version than the one it was written
for (`TESTED_BENTOML`), so an upgrade fails loudly instead of silently validating on the loop again. The
lock pins BentoML; a test checks both the 400 and that the loop stays free.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pydantic_core
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from serving import memory

TESTED_BENTOML = "1.4."  # the minor version whose internals this module uses
INLINE_BODY_BYTES = 256 * 1024
# Validation holds the GIL most of the time: more threads would not finish sooner.
_VALIDATORS = anyio.CapacityLimiter(2)


# What Python's and pydantic's JSON parsers accept but JSON does not: `"account_id": NaN` must not become "nan".
NON_JSON_NUMBERS = (b"NaN", b"Infinity")


def _non_finite(value: Any, location: tuple) -> Iterator[tuple]:
    """The path of every NaN or Infinity in parsed JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        yield location
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _non_finite(inner, (*location, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _non_finite(inner, (*location, index))


# Occurrences of a token's first byte checked one by one before leaving the rest to a substring search.
_FIRST_BYTE_CHECKS = 16


def holds(body: bytes, token: bytes) -> bool:
    """`token in body`, found by jumping between occurrences of its first byte (memchr) while they are few.

    A substring search for a short token steps through the body a few bytes at a time (about 60 us for "NaN" in a
    100 KB body); a capital N or I is rare in a JSON body, and a body without one is ruled out in about a microsecond.
    """
    first = token[:1]
    at = body.find(first)
    for _ in range(_FIRST_BYTE_CHECKS):
        if at < 0:
            return False
        if body.startswith(token, at):
            return True
        at = body.find(first, at + 1)
    return at >= 0 and body.find(token, at) >= 0


def refuse_non_json_numbers(body: bytes, model: type) -> None:
    """A ValidationError (so BentoML's own 400) naming each field that holds NaN or Infinity, which JSON does not
    have but Python's and pydantic's parsers accept: `"account_id": NaN` must not be scored as the text "nan"."""
    if not any(holds(body, token) for token in NON_JSON_NUMBERS):  # a byte search: no parse for ordinary bodies
        return
    try:
        parsed = pydantic_core.from_json(body)
    except ValueError:
        return  # not JSON at all: pydantic reports that itself
    locations = list(_non_finite(parsed, ()))
    if locations:  # else the letters were inside strings ("NaNa Corp")
        raise ValidationError.from_exception_data(
            getattr(model, "__name__", "request"),
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "finite_number",
                        "NaN and Infinity are not JSON numbers: send a finite number, or null for a missing value",
                    ),
                    loc=location,
                    input=None,
                )
                for location in locations[:1000]
            ],
        )


def _deserialize(serde: Any, payload: Any, cls: type, body: bytes) -> Any:
    refuse_non_json_numbers(body, cls)
    return serde.deserialize_model(payload, cls)


class UnsupportedBentoML(RuntimeError):
    """The installed BentoML is not the one whose internals this module was written against."""


FIX = "install the locked version (make install), or port serving/offloop.py to it and raise TESTED_BENTOML"


def check_bentoml_version(installed: str) -> None:
    if not installed.startswith(TESTED_BENTOML):
        raise UnsupportedBentoML(
            f"serving/offloop.py validates large bodies off the event loop through BentoML {TESTED_BENTOML}x "
            f"internals, and BentoML {installed} is installed: {FIX}"
        )


@functools.cache
def payload_type() -> type:
    """BentoML's own request payload type, as JSONSerde.parse_request builds it, once the version is checked."""
    import bentoml

    check_bentoml_version(bentoml.__version__)
    try:
        from _bentoml_impl.serde import Payload
    except ImportError as error:
        missing = f"BentoML {bentoml.__version__} has no _bentoml_impl.serde.Payload ({error})"
        raise UnsupportedBentoML(f"{missing}: {FIX}") from None
    return Payload


async def _from_http_request(cls: type, request: Any, serde: Any) -> Any:
    body = await request.body()
    payload = payload_type()((body,), metadata=request.headers)
    if len(body) <= INLINE_BODY_BYTES:
        return _deserialize(serde, payload, cls, body)
    try:
        return await anyio.to_thread.run_sync(_deserialize, serde, payload, cls, body, limiter=_VALIDATORS)
    finally:  # valid or not, the parse left hundreds of megabytes of freed heap behind
        memory.trimmer.large_request_done()


def validate_off_loop(*apis: Any) -> None:
    """Make these BentoML API methods (`Service.apis[name]`) validate large JSON bodies in a worker thread."""
    payload_type()  # fails loudly now, not on the first large request
    for api in apis:
        if not callable(getattr(api.input_spec, "from_http_request", None)):
            raise UnsupportedBentoML(f"{api.name}: BentoML's input model has no from_http_request to run off the loop")
        if api.input_spec.mime_type() != "application/json":
            raise ValueError(f"{api.name}: only JSON bodies are validated off the loop")
        api.input_spec.from_http_request = classmethod(_from_http_request)
