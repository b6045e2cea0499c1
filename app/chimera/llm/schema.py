"""JSON Schema → GBNF grammar, through llama-cpp-python's converter (a port of llama.cpp's).

The converter skips keywords it does not implement; generation would then silently ignore part of
the schema. We walk the schema first and refuse those keywords with a 400 naming each one and
where it is, so a client never gets output that only looks constrained. Integer bounds
(`minimum`, `maximum` and the exclusive forms on `"type": "integer"`), which llama.cpp's own
converter enforces, are added to the converter here (`intrange.py`); bounds on other numbers are
refused, as llama-server only ignores them.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import BadRequest
from .intrange import BOUND_KEYS, bounds, integer_rule

UNSUPPORTED = frozenset({
    "not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas",
    "dependencies", "unevaluatedProperties", "unevaluatedItems", "propertyNames", "contains",
    "minContains", "maxContains", "uniqueItems", "multipleOf", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties",
})
SUPPORTED_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
# keywords whose value is a schema, a list of schemas, or a map of schemas
_SCHEMA = ("items", "additionalProperties", "additionalItems")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")


def unsupported_keywords(schema: Any, path: str = "#") -> list[str]:
    found: list[str] = []
    if isinstance(schema, bool):
        return found
    if not isinstance(schema, dict):
        return [f"{path} (a schema must be an object)"]
    integer = schema.get("type") == "integer"
    for key, value in schema.items():
        if key in BOUND_KEYS and integer:
            if not isinstance(value, (int, float)) or (isinstance(value, bool) and not key.startswith("exclusive")):
                found.append(f"'{key}: {value!r}' at {path} (a bound must be a number)")
        elif key in UNSUPPORTED:
            found.append(f"'{key}' at {path}")
        elif key == "format" and value not in SUPPORTED_FORMATS:
            found.append(f"'format: {value}' at {path}")
        elif key == "$ref" and isinstance(value, str) and not value.startswith("#"):
            found.append(f"remote '$ref: {value}' at {path}")
    for key in _SCHEMA:
        if isinstance(schema.get(key), (dict, bool)):
            found += unsupported_keywords(schema[key], f"{path}/{key}")
        elif key == "items" and isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                found += unsupported_keywords(sub, f"{path}/items/{i}")
    for key in _SCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key) or []):
            found += unsupported_keywords(sub, f"{path}/{key}/{i}")
    for key in _SCHEMA_MAPS:
        for name, sub in (schema.get(key) or {}).items():
            found += unsupported_keywords(sub, f"{path}/{key}/{name}")
    return found


def schema_to_grammar(schema: Any, param: str = "response_format.json_schema.schema") -> str:
    if not isinstance(schema, dict):
        raise BadRequest("the JSON schema must be an object", param=param)
    problems = unsupported_keywords(schema)
    if problems:
        raise BadRequest("the JSON schema uses what grammar-constrained output cannot enforce: " + ", ".join(problems),
                         param=param)
    try:
        return _convert(schema)
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as e:
        raise BadRequest(f"the JSON schema could not be turned into a grammar: {e}", param=param) from None


def _convert(schema: dict[str, Any]) -> str:
    from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

    class Converter(SchemaConverter):
        def visit(self, schema: Any, name: str) -> Any:
            if isinstance(schema, dict) and schema.get("type") == "integer" and any(k in schema for k in BOUND_KEYS):
                rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
                return self._add_rule(rule_name, f"({integer_rule(*bounds(schema))}) space")
            return super().visit(schema, name)

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(json.loads(json.dumps(schema)), "request"), "")
    return str(converter.format_grammar())
