"""A recipe's hash, the standard's rule: what machines, the gateway and the docs' test vectors compute.

Since 1.1 the text hashed is RFC 8785 (JSON Canonicalization Scheme): keys sorted by UTF-16 code units, numbers
written as ECMAScript writes them (75.0 is `75`, 1e21 is `1e+21`), no whitespace, UTF-8. Any stack with a JCS
library gets the same bytes. 1.0 wrote the text as Python's json module does (75.0 stays `75.0`); `rule="1.0"`
keeps that for machines that declare 1.0.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from .spec import minor_version


def recipe_document(equipment_class: str, recipe_id: str, version: int, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"equipment_class": equipment_class, "id": recipe_id, "parameters": parameters, "version": version}


def canonical_text(doc: Any, rule: str = "1.1") -> bytes:
    """The bytes hashed: RFC 8785 since 1.1; Python's sorted, space-free json in 1.0."""
    if rule == "1.0":
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return rfc8785.dumps(doc)


def recipe_hash(equipment_class: str, recipe_id: str, version: int, parameters: dict[str, Any],
                rule: str = "1.1") -> str:
    """First 16 hex digits (lower case) of the SHA-256 of the recipe's canonical text."""
    text = canonical_text(recipe_document(equipment_class, recipe_id, version, parameters), rule)
    return hashlib.sha256(text).hexdigest()[:16]


def hash_rule(spec_version: str | None) -> str:
    """The rule a machine of this spec version hashes by: "1.0" for 1.0.x, "1.1" from 1.1 on."""
    return "1.0" if minor_version(spec_version) == (1, 0) else "1.1"
