"""The coverage matrix: no normative clause of the spec without a case that checks it or a stated reason."""

from __future__ import annotations

from pathlib import Path

from gateway.conformance.catalogue import build_catalogue
from gateway.conformance.coverage import clauses, gaps, markdown, unknown_cases
from interface_spec.model import Command, Rule

from .conftest import SPEC

CATALOGUE = build_catalogue(SPEC)
PUBLISHED = Path(__file__).parents[2] / "gateway" / "conformance" / "COVERAGE.md"


def test_every_clause_has_a_case_or_a_reason():
    assert gaps(SPEC, CATALOGUE) == []
    assert unknown_cases(SPEC, CATALOGUE) == []
    ids = [c.id for c in clauses(SPEC, CATALOGUE)]
    assert len(ids) == len(set(ids)), "clause ids are unique"
    # The families the spec's normative text is made of are all there.
    for family in ("· type", "· unit", "· range", "· access", "· category", "· tier", "· sampling",
                   "state_derivation.packml[Execute]", "packml.transitions[Start]", "commands[SetOperationMode]",
                   "events[UnitProcessed].payload.made_from", "rules[modbus.mailbox.check]", "recipe_hash"):
        assert any(family in i for i in ids), family
    # Every rule of the spec is a clause.
    assert {f"common.yaml § rules[{r.id}]" for r in SPEC.core.rules} <= set(ids)


def test_a_clause_the_kit_does_not_know_is_a_gap():
    """The checker fails on a spec that grew: a new rule and a new command, with no case and no reason."""
    core = SPEC.core.model_copy(update={
        "rules": [*SPEC.core.rules, Rule(id="command.new-rule", section="commands", text="A rule nobody checks.")],
        "commands": [*SPEC.core.commands, Command(id="Purge", code=40)],
    })
    grown = type(SPEC)(core, SPEC.classes, SPEC.folder)
    assert set(gaps(grown, build_catalogue(grown))) == {"common.yaml § rules[command.new-rule]",
                                                        "common.yaml § commands[Purge]"}


def test_the_published_matrix_is_current():
    assert PUBLISHED.read_text(encoding="utf-8") == markdown(SPEC, CATALOGUE), \
        "stale: run `linegw conformance --coverage > gateway/conformance/COVERAGE.md`"
    assert "**GAP**" not in PUBLISHED.read_text(encoding="utf-8")
