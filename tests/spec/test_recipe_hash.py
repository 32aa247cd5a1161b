"""Recipe hashes agree across stacks: RFC 8785 text from the project and from an independent implementation.

The spec's test vectors (common.yaml `recipe_hash.vectors`, published with their text and hash in core.md) and
random documents (floats written as JavaScript writes them, unicode keys sorted by UTF-16 code units, nesting)
are canonicalised by `interface_spec.recipes` and by the npm `canonicalize` package under node: the texts, and so
the hashes, must be identical.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from interface_spec import load_spec
from interface_spec.recipes import canonical_text, recipe_document, recipe_hash
from tests.node_peers import run_node

SPEC = load_spec()


def node_canonical(docs: list[Any]) -> list[str]:
    """Each document's RFC 8785 text, by npm canonicalize."""
    out = [json.loads(line) for line in run_node("canonicalize.mjs", "canonicalize", [json.dumps(d) for d in docs])]
    assert len(out) == len(docs) and all(isinstance(o, str) for o in out), out
    return out


def test_the_published_vectors_agree_with_an_independent_implementation():
    vectors = SPEC.core.recipe_hash.vectors
    docs = [recipe_document(v.equipment_class, v.id, v.version, dict(v.parameters)) for v in vectors]
    theirs = node_canonical(docs)
    core_md = (SPEC.folder / "docs" / "core.md").read_text(encoding="utf-8")
    for v, doc, text in zip(vectors, docs, theirs):
        assert canonical_text(doc).decode("utf-8") == text
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        assert recipe_hash(v.equipment_class, v.id, v.version, dict(v.parameters)) == digest
        assert f"`{text}`" in core_md and f"`{digest}`" in core_md, "the docs publish the text and its hash"
    # The vectors exercise what 1.0 left to guess: whole-number floats, exponents, -0, key order by UTF-16.
    joined = "".join(theirs)
    for written in (":75,", "1e+21", "1e-7", '"rest_s":0}', '"€":6,"😀":5'):
        assert written in joined, written


def test_the_1_0_rule_is_not_rfc_8785():
    """The checker can fail: 1.0's Python-style text of a whole-number float differs from the independent one."""
    doc = recipe_document("coater", "R", 1, {"dryer_temperature": 75.0})
    (theirs,) = node_canonical([doc])
    assert canonical_text(doc, rule="1.0").decode("utf-8") != theirs == canonical_text(doc).decode("utf-8")


# JSON values both stacks read alike: integers JavaScript holds exactly, finite floats, any text.
LEAVES = st.one_of(st.integers(-(2**53) + 1, 2**53 - 1), st.floats(allow_nan=False, allow_infinity=False),
                   st.text(max_size=8), st.booleans(), st.none())
DOCS = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=12)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(DOCS, min_size=20, max_size=20))
def test_random_documents_canonicalise_alike(docs):
    theirs = node_canonical(docs)
    ours = [canonical_text(d).decode("utf-8") for d in docs]
    assert ours == theirs
