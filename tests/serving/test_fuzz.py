"""Schema fuzzing: every operation of the service's own OpenAPI document, called in-process.

Schemathesis generates requests from `/docs.json`, valid and invalid, and each answer must be what the
document says (status code, content type, body schema), never a server error; a request the document
calls invalid must be refused. With `TIERING_API_KEY` set, requests carrying the key are fuzzed the
same way and each is sent again without it, which must get the documented 401 (but on health probes).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from serving.middleware import OPEN_PATHS

from .conftest import serving

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone

KEY = "fuzzing-key-not-a-secret"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# No example database: one test function fuzzes every operation, so saved examples would replay on the wrong one.
FUZZING = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", params=[None, KEY], ids=["without a key", "with a key"])
def service(request, trained):
    """The in-process service on the trained champion, and the key it wants (None: none)."""
    key = request.param
    with serving(trained.folder, **({"TIERING_API_KEY": key} if key else {})) as client:
        yield client, key


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def send(client, case, key: str | None):
    """The generated request through the test client (which owns the app's lifespan), with `key` as its only
    Authorization: an Authorization header the case generated is dropped."""
    request = case.as_transport_kwargs(base_url=str(client.base_url))
    headers = {name: value for name, value in request["headers"].items() if name.lower() != "authorization"}
    return client.request(
        request["method"],
        request["url"],
        params=request["params"],
        headers={**headers, **bearer(key)},
        json=request.get("json"),
        content=request.get("data"),
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_answer_is_documented_and_none_is_a_server_error(service, mode):
    client, key = service
    document = client.get("/docs.json", headers=bearer(key))
    document.raise_for_status()
    operations = [result.ok() for result in schemathesis.openapi.from_dict(document.json()).get_all_operations()]
    assert {operation.path for operation in operations} >= {"/score", "/tier", "/model", *OPEN_PATHS}

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (operation.body or any(operation.iter_parameters())):
            continue  # it takes no input, so no request to it is invalid

        @FUZZING
        @given(case=operation.as_strategy(mode))
        def answers_as_documented(case):
            case.validate_response(send(client, case, key), checks=CHECKS)
            if key is None:
                return
            without_key = send(client, case, None)
            if case.path not in OPEN_PATHS:
                assert without_key.status_code == 401, without_key.text
            case.validate_response(without_key, checks=CHECKS)  # the 401 body is the documented one

        answers_as_documented()


# Found while fuzzing, kept as plain regressions: each was a 500 or an answer the document did not describe.
FOUND = {
    "the same numeric id twice (was a 500)": (
        "/score",
        '{"accounts": [{"account_id": 0.0}, {"account_id": "0.0"}]}',
        400,
        ["accounts", 1, "account_id"],
    ),
    "a boolean head-count (was read as 1)": (
        "/score",
        '{"accounts": [{"account_id": "A", "employees": true}]}',
        400,
        ["accounts", 0, "employees"],
    ),
    "a number as text (was read as the number)": (
        "/tier",
        '{"accounts": [{"account_id": "A"}], "budget": "100"}',
        400,
        ["budget"],
    ),
}


@pytest.mark.parametrize("path, body, status, location", FOUND.values(), ids=FOUND.keys())
def test_what_the_fuzzing_found(service, path, body, status, location):
    client, key = service
    response = client.post(path, content=body, headers={"content-type": "application/json", **bearer(key)})
    assert response.status_code == status
    assert location in [problem["loc"] for problem in response.json()["detail"]]


def test_a_pickled_body_gets_the_documented_415(service):
    client, key = service
    response = client.post(
        "/score", content=b"\x80\x04", headers={"content-type": "application/vnd.bentoml+pickle", **bearer(key)}
    )
    assert response.status_code == 415 and response.json()["detail"][0]["type"] == "unsupported_media_type"
