"""`/docs.json` as the service really behaves: BentoML's generated document, corrected as it is served.

BentoML flattens the top level of each API's request and response schemas to the first alternative,
so `budget: float | None` is documented as a number that can never be null; it documents a fixed
error body (`detail` as a string); and it knows nothing of this service's own refusals. Clients (and
the schema-fuzzing tests) would meet undocumented answers: the 400 body lists its problems, a missing
API key is a 401, a form-encoded body a 415, no loadable model a 503. Request schemas also say that
text fields take numbers (CRM ids are often numeric), as the request models read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from serving.middleware import OPEN_PATHS, App, Receive, Scope, Send

DOCUMENT_PATH = "/docs.json"
SCHEMAS = "#/components/schemas/{model}"
BEARER = "bearerAuth"


class FieldProblem(BaseModel):
    type: str = Field(description="Kind of problem, e.g. missing, float_parsing, duplicate_account_id.")
    loc: list[str | int] = Field(description='Path to the field at fault, e.g. ["accounts", 0, "employees"].')
    msg: str = Field(description="What is wrong, in words.")


class BadRequest(BaseModel):
    """Every problem found in the request, each with its field path."""

    error: str = Field(description="Summary, e.g. '2 validation errors for ScoreRequest'.")
    detail: list[FieldProblem]


class Refusal(BaseModel):
    """Why the request was not served."""

    error: str


METADATA = ("title", "description", "default", "examples", "deprecated")


def _text_or_number(node: dict) -> dict:
    """A text schema widened to take a number, as a `coerce_numbers_to_str` model reads one."""
    if node.get("type") == "string" and not {"format", "enum", "const"} & node.keys():
        text = {key: value for key, value in node.items() if key not in METADATA}
        return {**{key: node[key] for key in METADATA if key in node}, "anyOf": [text, {"type": "number"}]}
    widened = dict(node)
    for key in ("anyOf", "oneOf"):
        if key in node:  # a text alternative becomes two: text, number
            widened[key] = [
                alternative
                for member in node[key]
                for alternative in (
                    _text_or_number(member).get("anyOf", [member])
                    if member.get("type") == "string"
                    else [_text_or_number(member)]
                )
            ]
    return widened


def _models_within(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The model and every model its fields nest, each once."""
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for inner in get_args(annotation):
            visit(inner)

    visit(model)
    return found


def _document_number_text(model: type[BaseModel], schema: dict, schemas: dict) -> None:
    """Text fields of models with `coerce_numbers_to_str` take numbers (CRM ids are often numeric): say so."""
    for nested in _models_within(model):
        target = schema if nested is model else schemas.get(nested.__name__)
        if target is None or not nested.model_config.get("coerce_numbers_to_str"):
            continue
        properties = target.get("properties", {})
        for name, field in nested.model_fields.items():
            key = field.alias or name
            if key in properties:
                properties[key] = _text_or_number(properties[key])


def _json_answer(model: type[BaseModel], description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": SCHEMAS.format(model=model.__name__)}}},
    }


def _body_schema(model: type[BaseModel], mode: Literal["validation", "serialization"], schemas: dict) -> dict:
    """The model's own JSON schema; the models it nests go to the document's components."""
    schema = model.model_json_schema(ref_template=SCHEMAS, mode=mode)
    defined = schema.pop("$defs", {})
    if mode == "validation":
        _document_number_text(model, schema, defined)
    schemas.update(defined)
    return schema


def documented(document: dict, apis: Mapping[str, Any]) -> dict:
    """The document with the APIs' exact bodies, every refusal, and the optional bearer key.

    `apis` are the service's BentoML API methods (route, input and output models).
    """
    schemas = document["components"]["schemas"]
    for model in (FieldProblem, BadRequest, Refusal):
        schemas[model.__name__] = model.model_json_schema(ref_template=SCHEMAS)
    for api in apis.values():
        operation = document["paths"][api.route]["post"]
        for media in operation["requestBody"]["content"].values():
            media["schema"] = _body_schema(api.input_spec, "validation", schemas)
        responses = operation["responses"]
        for media in responses["200"]["content"].values():
            media["schema"] = _body_schema(api.output_spec, "serialization", schemas)
        responses["400"] = _json_answer(BadRequest, "The request is not valid: every problem, with its field path.")
        responses["415"] = _json_answer(BadRequest, "The body is form-encoded or pickled: send JSON.")
        responses["503"] = _json_answer(Refusal, "No model can score (GET /readyz says why).")
    document["paths"]["/readyz"]["get"]["responses"]["503"] = {
        "description": "Not ready, and why.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }

    document["info"] = service_info()
    document["components"]["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "Required on every path but the health probes when the server has TIERING_API_KEY set.",
        }
    }
    for path, operations in document["paths"].items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{}, {BEARER: []}]  # `{}`: no key at all when the server has none set
            operation["responses"]["401"] = _json_answer(
                Refusal, "The server has an API key and the request does not carry it."
            )
    return document


TITLE = "abm-tiering"
DESCRIPTION = (
    "Scores accounts for account-based marketing: rule-based fit scores, a calibrated win probability, "
    "expected deal size, Tier 1 / 2 / 3 with budget, and the reasons behind each score."
)
FRONT_PAGE = "/"


def service_info() -> dict:
    """The document's `info`: this product, its version, and how to authenticate (not BentoML's boilerplate)."""
    return {
        "title": TITLE,
        "version": _version(),
        "description": f"{DESCRIPTION} When the server has TIERING_API_KEY set, send `Authorization: Bearer "
        "<key>` on every endpoint but the health probes. The project's docs/serving.md describes every body "
        "and docs/reliability.md every guarantee.",
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("abm-tiering")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def front_page(apis: Mapping[str, Any]) -> bytes:
    """The service's own front page, self-contained: nothing is loaded from the network."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader("serving", "templates"), autoescape=select_autoescape())
    endpoints = [(api.route, ((api.doc or "").strip().splitlines() or [""])[0]) for api in apis.values()]
    page = environment.get_template("index.html").render(
        title=TITLE, version=_version(), description=DESCRIPTION, endpoints=endpoints
    )
    return page.encode("utf-8")


class DocumentedService:
    """Serves `/docs.json` through `documented` and the front page at `/`; every other path passes untouched."""

    def __init__(self, app: App, apis: Mapping[str, Any]):
        self.app = app
        self.apis = apis

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == FRONT_PAGE and scope["method"] in ("GET", "HEAD"):
            page = front_page(self.apis)
            headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(page)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": page if scope["method"] == "GET" else b""})
            return
        if scope["type"] != "http" or scope["path"] != DOCUMENT_PATH:
            return await self.app(scope, receive, send)
        started: dict = {}
        body = bytearray()

        async def rewrite(message: dict) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            answer = bytes(body)
            if started["status"] == 200:
                answer = json.dumps(documented(json.loads(answer), self.apis)).encode("utf-8")
            headers = [(name, value) for name, value in started.get("headers", []) if name.lower() != b"content-length"]
            await send({**started, "headers": [*headers, (b"content-length", str(len(answer)).encode())]})
            await send({"type": "http.response.body", "body": answer})

        await self.app(scope, receive, rewrite)
