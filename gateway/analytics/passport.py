"""The manufacturing part of a cell's battery passport, as Asset Administration Shell submodels (Eclipse BaSyx).

What the gateway knows of a cell, in the shape the passport takes. Names follow the IDTA-02035 Digital Battery
Passport submodel templates (and the IDTA-02023 carbon footprint that its Part 3 builds on); what the templates
have no place for, the genealogy, is a submodel of the line's own, said so by its semantic ID:

* **Nameplate** (IDTA-02035-1): `SerialNumber` (the cell's id), `DateOfManufacture` and `YearOfConstruction` (when
  it was graded), `UniqueFacilityIdentifier` (the line).
* **TechnicalData** (IDTA-02035-4): the initial performance measured at formation, under `InitialPerformance`:
  the formation class's UnitProcessed measurements (capacity, internal resistance, OCV, ...), each with its unit in
  its description, the cell's grade and result.
* **CarbonFootprint** (IDTA-02035-3 / IDTA-02023): the manufacturing-stage footprint `ProductCarbonFootprint`
  (`PCFCalculationMethod`, `PCFCO2eq` in kgCO2e, `PCFLifeCyclePhase`), the energy drawn (kWh) and both per stage,
  from the meters (gateway/analytics/energy.py, over the span of the cell's record); absent when no meter reached it.
* **ManufacturingGenealogy** (`urn:linegw:submodel:ManufacturingGenealogy:1:0`): each unit that made the cell
  (formation, jelly roll, electrode rolls), with its machine, window, result and what it was made from.

A lot's passport is the passport of every cell made from it, in one file.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from basyx.aas import model
from basyx.aas.adapter.json import write_aas_json_file

from gateway.analytics.energy import EnergyReport
from gateway.analytics.energy_settings import EnergySettings
from gateway.analytics.record import RecordBuilder
from gateway.store.base import Store
from interface_spec import Spec

Objects = model.DictIdentifiableStore[model.Identifiable]  # a passport: shells and submodels by id

NAMEPLATE = "https://admin-shell.io/idta/digitalbatterypassport/nameplate/1/0/Nameplate"
TECHNICAL_DATA = "https://admin-shell.io/idta/digitalbatterypassport/TechnicalData/1/0"
CARBON_FOOTPRINT = "https://admin-shell.io/idta/CarbonFootprint/CarbonFootprint/1/0"
GENEALOGY = "urn:linegw:submodel:ManufacturingGenealogy:1:0"
LIFE_CYCLE_PHASE = "A1-A3 (manufacturing stage, metered at the line)"
METHOD = ("each machine's metered energy attributed to the units it made by production window, idle energy spread "
          "by the line's rule, passed down the genealogy; times the grid emission factor (linegw, "
          "gateway/analytics/energy.py)")


def _ref(semantic_id: str) -> model.ExternalReference:
    return model.ExternalReference((model.Key(model.KeyTypes.GLOBAL_REFERENCE, semantic_id),))


def _text(id_short: str, value: Any, description: str = "") -> model.Property:
    return model.Property(id_short, str, None if value is None else str(value),
                          description=model.MultiLanguageTextType({"en": description}) if description else None)


def _number(id_short: str, value: float, unit: str) -> model.Property:
    return model.Property(id_short, float, float(value),
                          description=model.MultiLanguageTextType({"en": f"unit {unit}"}) if unit else None)


def _id_short(name: str) -> str:
    """An idShort from a spec name: charge_capacity -> ChargeCapacity (letters, digits, underscores only)."""
    out = "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)
    return out if out[:1].isalpha() else f"X{out}"


class PassportBuilder:
    def __init__(self, store: Store, spec: Spec, machines: dict[str, str], line: str,
                 energy: EnergySettings | None = None):
        self.store = store
        self.spec = spec
        self.machines = machines
        self.line = line
        self.energy = energy
        self.records = RecordBuilder(store, spec, machines)

    async def cell(self, cell_id: str) -> Objects | None:
        """The passport of one cell (an AAS and its submodels), or None when no machine graded that cell."""
        out: Objects = Objects()
        return out if await self._add(out, cell_id) else None

    async def lot(self, lot_id: str) -> tuple[Objects, list[str]] | None:
        """The passports of every cell made from a lot, roll or unit, and their ids; None for an unknown id."""
        recall = await self.records.recall(lot_id)
        if recall is None:
            return None
        out: Objects = Objects()
        cells = [c["unit_id"] for c in recall["cells"]]
        for cell in cells:
            await self._add(out, cell)
        return out, cells

    async def _add(self, out: Objects, cell_id: str) -> bool:
        record = await self.records.record(cell_id)
        stages = (record or {}).get("stages") or []
        own = next((s for s in stages if s["unit_id"] == cell_id and s["unit_type"] == "cell"), None)
        if own is None:
            return False
        graded = datetime.fromtimestamp(own["window"]["end"], UTC)
        base = f"urn:linegw:{self.line}:cell:{cell_id}"
        submodels = [self._nameplate(base, cell_id, graded), self._technical(base, own),
                     self._genealogy(base, stages)]
        footprint = await self._footprint(base, cell_id, stages)
        if footprint is not None:
            submodels.append(footprint)
        shell = model.AssetAdministrationShell(
            model.AssetInformation(model.AssetKind.INSTANCE, global_asset_id=f"urn:linegw:{self.line}:asset:{cell_id}",
                                   asset_type="cell"),
            base, id_short=f"Cell_{_id_short(cell_id)}", submodel={model.ModelReference.from_referable(s) for s in submodels})
        out.add(shell)
        for s in submodels:
            out.add(s)
        return True

    def _nameplate(self, base: str, cell_id: str, graded: datetime) -> model.Submodel:
        return model.Submodel(f"{base}/Nameplate", id_short="Nameplate", semantic_id=_ref(NAMEPLATE), submodel_element=[
            _text("SerialNumber", cell_id, "the cell's id, as the line's machines report it"),
            model.Property("DateOfManufacture", model.datatypes.Date, model.datatypes.Date(graded.year, graded.month,
                                                                                          graded.day)),
            _text("YearOfConstruction", graded.year),
            _text("UniqueFacilityIdentifier", self.line, "the production line (linegw line id)"),
        ])

    def _technical(self, base: str, own: dict[str, Any]) -> model.Submodel:
        units = self.spec.get_class(self.machines.get(own["equipment"], "formation")).unit_processed
        measured = [_number(_id_short(k), v, units.get(k, "")) for k, v in sorted((own.get("measurements") or {}).items())
                    if isinstance(v, (int, float)) and not isinstance(v, bool)]
        performance = model.SubmodelElementCollection("InitialPerformance", [
            *measured,
            _text("Result", own.get("result"), "good or reject, at formation"),
            _text("MeasuredBy", own["equipment"], "the formation rack that measured it"),
        ])
        return model.Submodel(f"{base}/TechnicalData", id_short="TechnicalData", semantic_id=_ref(TECHNICAL_DATA),
                              submodel_element=[performance])

    def _genealogy(self, base: str, stages: list[dict[str, Any]]) -> model.Submodel:
        units = []
        for i, s in enumerate(stages, start=1):
            w = s["window"]
            units.append(model.SubmodelElementCollection(f"Unit{i:02d}", [
                _text("UnitId", s["unit_id"]), _text("UnitType", s["unit_type"]), _text("Equipment", s["equipment"]),
                _text("Class", s["class"]), _text("Result", s.get("result")),
                model.Property("WindowStart", datetime, datetime.fromtimestamp(w["start"], UTC)),
                model.Property("WindowEnd", datetime, datetime.fromtimestamp(w["end"], UTC)),
            ]))
        return model.Submodel(f"{base}/ManufacturingGenealogy", id_short="ManufacturingGenealogy",
                              semantic_id=_ref(GENEALOGY), submodel_element=units)

    async def _footprint(self, base: str, cell_id: str, stages: list[dict[str, Any]]) -> model.Submodel | None:
        start = min(s["window"]["start"] for s in stages) - 1.0
        end = max(s["window"]["end"] for s in stages) + 1.0
        report = await EnergyReport(self.store, self.spec, self.machines, self.energy).report(start, end, cell_id)
        cell = report.get("cell")
        if cell is None:
            return None
        per_stage = [model.SubmodelElementCollection(_id_short(stage), [
            _number("EnergyKWh", a["kwh"], "kW.h"), _number("PCFCO2eq", a["kg_co2e"], "kg")])
            for stage, a in cell["by_stage"].items()]
        pcf = model.SubmodelElementCollection("ProductCarbonFootprint", [
            _text("PCFCalculationMethod", METHOD),
            _number("PCFCO2eq", cell["kg_co2e"], "kg"),
            _text("PCFLifeCyclePhase", LIFE_CYCLE_PHASE),
            _text("PCFReferenceValueForCalculation", "1 cell"),
            _number("ManufacturingEnergy", cell["kwh"], "kW.h"),
            model.SubmodelElementCollection("ByStage", per_stage),
        ])
        return model.Submodel(f"{base}/CarbonFootprint", id_short="CarbonFootprint", semantic_id=_ref(CARBON_FOOTPRINT),
                              submodel_element=[pcf])


def to_json(objects: Objects) -> str:
    """The passport as AAS JSON (IDTA-01001 serialization), as the BaSyx compliance tool reads it."""
    buf = io.StringIO()
    write_aas_json_file(buf, objects)
    return buf.getvalue()


__all__ = ["PassportBuilder", "to_json"]
