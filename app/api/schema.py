"""The OpenAPI document, derived from what validates the requests.

Request bodies come from the WTForms forms the pages use (field types and validators become
JSON Schema: required, lengths, ranges, choices) or, for workers, from the roster columns
(demand/roster.py) that check every imported row: one set of rules, described here, never
written twice. ``endpoint`` records each route's description as it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    Field,
    FileField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Regexp

from app.core.base import MAX_ID
from app.demand.roster import COLUMNS


@dataclass
class Operation:
    method: str
    path: str  # OpenAPI form: /requests/{request_id}
    summary: str
    roles: tuple[str, ...]
    tag: str
    body: dict | None = None  # JSON Schema of the request body
    form: type | None = None  # or the form that validates it (described when asked)
    query: dict[str, dict] = field(default_factory=dict)
    response: dict | None = None  # JSON Schema of the success body
    status: int = 200
    idempotent_create: bool = False
    if_match: bool = False
    public: bool = False


OPERATIONS: list[Operation] = []


def endpoint(
    method: str, path: str, summary: str, roles: tuple[str, ...], tag: str, **options
) -> Callable:
    """Describe a route for the document (the Flask route is declared separately)."""
    OPERATIONS.append(Operation(method, path, summary, roles, tag, **options))

    def describe(view: Callable) -> Callable:
        return view

    return describe


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def field_schema(form_field: Field) -> dict:
    if isinstance(form_field, BooleanField):
        schema: dict = {"type": "boolean"}
    elif isinstance(form_field, IntegerField):
        schema = {"type": "integer"}
    elif isinstance(form_field, DecimalField):
        schema = {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"}
    elif isinstance(form_field, DateField):
        schema = {"type": "string", "format": "date"}
    elif isinstance(form_field, TimeField):
        schema = {"type": "string", "pattern": r"^\d{2}:\d{2}$"}
    elif isinstance(form_field, SelectMultipleField):
        schema = {"type": "array", "items": ID}
    elif isinstance(form_field, SelectField) and form_field.coerce is int:
        schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}  # an id, 0: none
    elif isinstance(form_field, SelectField) and form_field.choices:
        schema = {"type": "string", "enum": [str(c[0]) for c in form_field.iter_choices()]}
    else:
        schema = {"type": "string"}
    for validator in form_field.validators:
        if isinstance(validator, Length) and schema["type"] == "string":
            if validator.max and validator.max > 0:
                schema["maxLength"] = validator.max
            if validator.min and validator.min > 0:
                schema["minLength"] = validator.min
        if isinstance(validator, Regexp) and schema["type"] == "string":
            schema["pattern"] = validator.regex.pattern
        if getattr(validator, "pattern", None) and schema["type"] == "string":
            schema["pattern"] = validator.pattern  # an identifier check (core/forms.py)
        if isinstance(validator, NumberRange) and schema["type"] == "integer":
            if validator.min is not None:
                schema["minimum"] = validator.min
            if validator.max is not None:
                schema["maximum"] = validator.max
    if form_field.description:
        schema["description"] = str(form_field.description)
    return schema


def form_schema(form_class: type, exclude: tuple[str, ...] = ()) -> dict:
    """JSON Schema of a form's fields (a form is built in an app context, CSRF off)."""
    form = form_class(meta={"csrf": False}, formdata=None)
    properties, required = {}, []
    for name, form_field in form._fields.items():
        if name in exclude or isinstance(form_field, HiddenField | FileField):
            continue
        properties[name] = {"title": str(form_field.label.text), **field_schema(form_field)}
        if any(isinstance(v, DataRequired | InputRequired) for v in form_field.validators):
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def worker_schema() -> dict:
    """A worker as the roster columns check it (the same rules as a row of an import)."""
    properties, required = {}, []
    for column in COLUMNS:
        if column.field == "health_pass":
            properties[column.field] = {
                "type": "string",
                "description": "The text of the health-pass QR code (compact JWS).",
                "maxLength": column.max_length,
            }
            continue
        schema: dict = {"type": "string", "title": column.english}
        if column.max_length:
            schema["maxLength"] = column.max_length
        properties[column.field] = schema
        if column.required:
            required.append(column.field)
    return {"type": "object", "properties": properties, "required": required}


ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}


def page_of(item: dict) -> dict:
    return {
        "type": "object",
        "required": ["items", "page", "pages", "total", "links"],
        "properties": {
            "items": {"type": "array", "items": item},
            "page": {"type": "integer"},
            "pages": {"type": "integer"},
            "total": {"type": "integer"},
            "links": {
                "type": "object",
                "properties": {
                    "self": {"type": "string"},
                    "next": {"type": ["string", "null"]},
                    "prev": {"type": ["string", "null"]},
                },
            },
        },
    }


STATUS_BY_CODE = {
    400: "Bad request",
    401: "No valid token",
    403: "Not allowed for this role",
    404: "Not found (or not yours)",
    409: "Conflict: changed meanwhile",
    412: "If-Match does not match",
    422: "Invalid input",
    429: "Too many requests",
}


def document(title: str, version: str) -> dict:
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": ID,
            }
            for name in _path_names(op.path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in op.query.items()
        ]
        if op.idempotent_create:
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 100},
                    "description": "A retried create with the same key returns the first answer.",
                }
            )
        if op.if_match:
            parameters.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "The ETag read before: a changed object answers 412.",
                }
            )
        error_codes = [400, 404, 422, 429] if op.public else [400, 401, 403, 404, 409, 422, 429]
        if op.if_match:
            error_codes.append(412)
        responses: dict = {
            str(op.status): {
                "description": "OK" if op.status == 200 else "Created",
                "content": {"application/json": {"schema": op.response or {"type": "object"}}},
            }
        }
        for code in error_codes:
            responses[str(code)] = {
                "description": STATUS_BY_CODE[code],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        operation: dict = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{op.method}_{op.path}".replace("/", "_")
            .replace("{", "")
            .replace("}", ""),
            "parameters": parameters,
            "responses": responses,
            "description": ("Roles: " + ", ".join(op.roles)) if op.roles else "No account.",
        }
        if op.public:
            operation["security"] = []
        body = op.body if op.form is None else form_schema(op.form)
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "paths": paths,
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
