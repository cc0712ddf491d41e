"""rest.documentation.openapi (alias ``documentation``) and rest.scope.list (RD rest-v3.md,
sections "OpenAPI documentation" and "Permissions and scopes").

The document answers at the root, without the ``result`` envelope, as the overview's example
shows it; it is built from the registry, so it lists exactly the 3.0 methods this sandbox serves,
with each DTO's fields (``x-filterable``/``x-sortable`` carry what ``*.field.list`` would say).
"""

from __future__ import annotations

from typing import Any

from sandbox import registry as rest2
from sandbox.registry import Call
from sandbox.rest_v3.registry import DTOS, METHODS, Dto, Field, V3Spec, v3_method

BATCH_SUMMARY = "Several calls in one request: a JSON array of {method, query}; results in order"


def _field_schema(field: Field) -> dict[str, Any]:
    if field.relation:
        return {"$ref": f"#/components/schemas/{field.relation}"}
    if field.type == "datetime":
        schema: dict[str, Any] = {"type": "string", "format": "date-time"}
    elif field.type == "enum":
        schema = {"type": "string", "enum": list(field.values)}
    elif field.type == "array":
        schema = {"type": "array", "items": {"type": field.items or "string"}}
    else:
        schema = {"type": field.type}
    schema["nullable"] = True
    if field.description:
        schema["description"] = field.description
    if field.filterable:
        schema["x-filterable"] = True
    if field.sortable:
        schema["x-sortable"] = True
    if not field.editable:
        schema["readOnly" if not field.creatable else "x-create-only"] = True
    return schema


def _dto_schema(dto: Dto) -> dict[str, Any]:
    return {"type": "object", "properties": {f.name: _field_schema(f) for f in dto.fields.values()}}


def _success(spec: V3Spec) -> dict[str, Any]:
    if spec.result == "document":
        return {"type": "object"}
    target = {"$ref": f"#/components/schemas/{spec.dto.name}"} if spec.dto else {"type": "object"}
    inner = {
        "item": {"type": "object", "properties": {"item": target}},
        "items": {"type": "object", "properties": {"items": {"type": "array", "items": target}}},
        "result": {"type": "object", "properties": {"result": {"type": "boolean"}}},
    }[spec.result]
    return {
        "type": "object",
        "properties": {"result": inner, "time": {"$ref": "#/components/schemas/Time"}},
    }


def _operation(name: str, spec: V3Spec) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [name.split(".", 1)[0]],
        "summary": spec.summary,
        "operationId": name.replace(".", "_"),
        "responses": {
            "200": {
                "description": "Success",
                "content": {"application/json": {"schema": _success(spec)}},
            },
            "400": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
        },
    }
    if spec.scope:
        operation["x-scope"] = spec.scope
    if spec.request:
        operation["requestBody"] = {
            "required": bool(spec.request.get("required")),
            "content": {"application/json": {"schema": {"type": "object", **spec.request}}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name in sorted(METHODS):
        spec = METHODS[name]
        operation = _operation(name, spec)
        paths[f"/{name}"] = {"post": operation}
        if spec.parameterless:
            paths[f"/{name}"]["get"] = {**operation, "operationId": operation["operationId"] + "_get"}
    paths["/batch"] = {
        "post": {
            "tags": ["rest"],
            "summary": BATCH_SUMMARY,
            "operationId": "batch",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "maxItems": 50,
                            "items": {
                                "type": "object",
                                "required": ["method"],
                                "properties": {"method": {"type": "string"}, "query": {"type": "object"}},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Results in the order of the calls",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "400": {"$ref": "#/components/responses/Error"},
            },
        }
    }
    tags = sorted({name.split(".", 1)[0] for name in METHODS} | {"rest"})
    return {
        "openapi": "3.0.0",
        "info": {"title": "Bitrix24 REST V3 API", "version": "1.0.0"},
        "tags": [{"name": tag, "description": f"{tag} module methods"} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": {
                **{name: _dto_schema(d) for name, d in sorted(DTOS.items())},
                "Time": {
                    "type": "object",
                    "properties": {
                        key: {"type": "number"}
                        for key in (
                            "start",
                            "finish",
                            "duration",
                            "processing",
                            "operating",
                            "operating_reset_at",
                        )
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "validation": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "field": {"type": "string"},
                                            "message": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        }
                    },
                },
            },
            "responses": {
                "Error": {
                    "description": "A REST 3.0 error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
    }


@v3_method(
    "rest.documentation.openapi",
    scope=None,
    result="document",
    summary="This portal's OpenAPI document of its REST 3.0 methods",
    parameterless=True,
)
def documentation_openapi(call: Call) -> dict[str, Any]:
    return openapi_document()


# The documented short name: the same method, the same answer.
METHODS["documentation"] = METHODS["rest.documentation.openapi"]


@v3_method(
    "rest.scope.list",
    scope=None,
    result="items",
    summary="Which scope each method needs",
    parameterless=True,
)
def scope_list(call: Call) -> dict[str, Any]:
    scopes: dict[str, str] = {}
    for name, spec in rest2.METHODS.items():
        if spec.scope:
            # A method any of several scopes opens is listed with the first.
            scopes[name] = spec.scope if isinstance(spec.scope, str) else spec.scope[0]
    for name, v3 in METHODS.items():
        if v3.scope is not None:
            scopes[name] = v3.scope
    return {"items": [{"method": name, "scope": scope} for name, scope in sorted(scopes.items())]}
