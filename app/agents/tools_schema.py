"""JSON schemas of tool calls: bounded for the grammar, and checked after it.

Bounding. llama.cpp turns a JSON schema into a grammar, and a grammar only
says what text is allowed, not when it ends: a string without a
``maxLength`` or a free-form object lets a model write until it runs out of
tokens, and the call arrives cut short. ``bounded`` rewrites a tool's
parameter schema so that every value is finite (strings get a
``maxLength``, arrays a ``maxItems``, objects no extra keys, an empty
schema becomes a bounded string). The grammar then guarantees a complete
call within a known number of tokens.

Checking. The grammar is the first lock; ``check_arguments`` is the second,
for a model or engine that ignores the grammar (a remote endpoint, the MLX
backend). It covers the parts of JSON Schema tools use (type, properties,
required, additionalProperties, enum, const, lengths, bounds, items) and
reports the first problem with its path.
"""

from __future__ import annotations

from typing import Any

from app.integrations.base import JsonObject, JsonValue

__all__ = ["bounded", "check_arguments"]

MAX_ITEMS = 16
_FREE_STRING_KEYS = ("enum", "const", "pattern", "format")


def bounded(schema: Any, max_string: int, max_items: int = MAX_ITEMS) -> JsonObject:
    """A copy of ``schema`` whose every value has a bounded length (see the docstring)."""
    if not isinstance(schema, dict):
        return {"type": "string", "maxLength": max_string}
    out: JsonObject = {k: v for k, v in schema.items() if k != "description"}
    for union in ("oneOf", "anyOf"):
        if isinstance(schema.get(union), list):
            out[union] = [bounded(s, max_string, max_items) for s in schema[union]]
            return out
    kind = schema.get("type")
    if isinstance(kind, list):
        del out["type"]
        out["anyOf"] = [bounded({**out, "type": t}, max_string, max_items) for t in kind]
        return out
    if kind is None and not any(k in schema for k in (*_FREE_STRING_KEYS, "properties")):
        return {"type": "string", "maxLength": max_string}
    if kind == "string" and not any(k in schema for k in _FREE_STRING_KEYS):
        limit = schema.get("maxLength")
        out["maxLength"] = min(limit, max_string) if isinstance(limit, int) else max_string
    elif kind == "array":
        limit = schema.get("maxItems")
        out["maxItems"] = min(limit, max_items) if isinstance(limit, int) else max_items
        out["items"] = bounded(schema.get("items", {}), max_string, max_items)
    elif kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        out["properties"] = {n: bounded(s, max_string, max_items) for n, s in props.items()}
        out["additionalProperties"] = False
    return out


def check_arguments(schema: JsonObject, value: JsonValue, path: str = "arguments") -> str | None:
    """The first way ``value`` breaks ``schema`` (``"arguments.limit: ..."``), or None."""
    if "const" in schema and value != schema["const"]:
        return f"{path}: must be {schema['const']!r}"
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return f"{path}: must be one of {enum!r}"
    for union in ("oneOf", "anyOf"):
        options = schema.get(union)
        if isinstance(options, list) and options:
            if all(check_arguments(_obj(s), value, path) for s in options):
                return f"{path}: matches none of the allowed forms"
            return None
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds and not any(_is_type(value, str(k)) for k in kinds):
        return f"{path}: must be of type {'/'.join(str(k) for k in kinds)}"
    return _check_details(schema, value, path)


def _check_details(schema: JsonObject, value: JsonValue, path: str) -> str | None:
    if isinstance(value, str):
        return _check_string(schema, value, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _check_number(schema, value, path)
    if isinstance(value, list):
        return _check_array(schema, value, path)
    if isinstance(value, dict):
        return _check_object(schema, value, path)
    return None


def _check_string(schema: JsonObject, value: str, path: str) -> str | None:
    high, low = schema.get("maxLength"), schema.get("minLength")
    if isinstance(high, int) and len(value) > high:
        return f"{path}: must be at most {high} characters"
    if isinstance(low, int) and len(value) < low:
        return f"{path}: must be at least {low} characters"
    return None


def _check_number(schema: JsonObject, value: float, path: str) -> str | None:
    high, low = schema.get("maximum"), schema.get("minimum")
    if isinstance(high, (int, float)) and value > high:
        return f"{path}: must be at most {high}"
    if isinstance(low, (int, float)) and value < low:
        return f"{path}: must be at least {low}"
    return None


def _check_array(schema: JsonObject, value: list[JsonValue], path: str) -> str | None:
    high = schema.get("maxItems")
    if isinstance(high, int) and len(value) > high:
        return f"{path}: must have at most {high} items"
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            problem = check_arguments(items, item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def _check_object(schema: JsonObject, value: dict[str, JsonValue], path: str) -> str | None:
    props = _obj(schema.get("properties", {}))
    required = schema.get("required", [])
    for name in required if isinstance(required, list) else []:
        if name not in value:
            return f"{path}.{name}: is required"
    for name, item in value.items():
        if name in props:
            problem = check_arguments(_obj(props[name]), item, f"{path}.{name}")
            if problem:
                return problem
        elif schema.get("additionalProperties") is False:
            return f"{path}.{name}: is not a parameter of this tool"
    return None


def _is_type(value: JsonValue, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    check = checks.get(kind)
    return True if check is None else bool(check(value))


def _obj(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}
