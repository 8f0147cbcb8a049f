"""Large request bodies are validated in a worker thread, so the event loop keeps answering meanwhile.

BentoML 1.4 reads an API's body with `input_spec.from_http_request(request, serde)`, which runs pydantic
on the event loop: an 18 MB book takes over a second, during which health probes and every other request
wait. This replaces that one classmethod on the API's generated input model. The serde, the model (so the
validation and `/docs.json`) and the 400 (BentoML's handler catches the `ValidationError` re-raised from
the thread) stay BentoML's own; only where the work runs changes. Small bodies, validated in well under
a millisecond, stay on the loop: a thread hand-off would cost them more than it saves.

It relies on BentoML internals (`_bentoml_impl.serde.Payload`, `APIMethod.input_spec`), which is why the
lock pins BentoML and a test checks both the 400 and that the loop stays free.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from serving import memory

INLINE_BODY_BYTES = 256 * 1024
# Validation holds the GIL most of the time: more threads would not finish sooner.
_VALIDATORS = anyio.CapacityLimiter(2)


async def _from_http_request(cls: type, request: Any, serde: Any) -> Any:
    # BentoML's own type, as JSONSerde.parse_request builds it.
    from _bentoml_impl.serde import Payload

    body = await request.body()
    payload = Payload((body,), metadata=request.headers)
    if len(body) <= INLINE_BODY_BYTES:
        return serde.deserialize_model(payload, cls)
    try:
        return await anyio.to_thread.run_sync(serde.deserialize_model, payload, cls, limiter=_VALIDATORS)
    finally:  # valid or not, the parse left hundreds of megabytes of freed heap behind
        memory.trimmer.large_request_done()


def validate_off_loop(*apis: Any) -> None:
    """Make these BentoML API methods (`Service.apis[name]`) validate large JSON bodies in a worker thread."""
    for api in apis:
        if api.input_spec.mime_type() != "application/json":
            raise ValueError(f"{api.name}: only JSON bodies are validated off the loop")
        api.input_spec.from_http_request = classmethod(_from_http_request)
