"""The middleware on its own, around a tiny app that echoes the body it receives."""

import warnings

import pytest

from serving.middleware import BodySizeLimit

with warnings.catch_warnings():  # starlette asks for httpx2, which the lock does not have yet
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

LIMIT = 1_000


async def echo(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def client():
    return TestClient(BodySizeLimit(echo, max_bytes=LIMIT))


def chunks(total: int, size: int = 100):
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def test_a_streamed_body_within_the_limit_arrives_whole(client):
    response = client.post("/score", content=chunks(LIMIT))  # a generator: chunked, no Content-Length
    assert response.status_code == 200 and response.content == b"x" * LIMIT


def test_a_streamed_body_over_the_limit_is_refused(client):
    response = client.post("/score", content=chunks(LIMIT + 1))
    assert response.status_code == 400 and response.json()["detail"][0]["type"] == "body_too_large"


@pytest.mark.parametrize("length, status", [(str(LIMIT), 200), (str(LIMIT + 1), 400), ("12abc", 400)])
def test_a_declared_length_is_checked_before_reading(client, length, status):
    response = client.post("/score", content=b"x" * LIMIT, headers={"content-length": length})
    assert response.status_code == status
