"""The battery passport's manufacturing part as AAS JSON, checked by the Eclipse BaSyx compliance tool.

Two scripted lines in real SqliteStores: the cell's record line of test_record.py (measurements, genealogy, a lot of
two cells) and the metered day of test_energy.py (the carbon footprint equals the energy report's figure).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.analytics.energy import EnergyReport
from gateway.analytics.energy_settings import EnergySettings
from gateway.analytics.passport import CARBON_FOOTPRINT, PassportBuilder, to_json
from gateway.api.app import create_app
from gateway.config import load_line
from gateway.runtime.line import LineRuntime
from gateway.store import SqliteStore
from tests.analytics import test_energy as day
from tests.analytics.script import SPEC
from tests.analytics.test_oee_api import line_file
from tests.analytics.test_record import MACHINES, build

COMPLIANCE = Path(sys.executable).parent / "aas-compliance-check"


def compliance(path: Path) -> list[str]:
    """The BaSyx compliance tool's steps for a JSON file: every one must say SUCCESS."""
    if not COMPLIANCE.exists() and shutil.which("aas-compliance-check") is None:
        pytest.fail("aas-compliance-check is missing: pip install -e '.[test]' installs basyx-compliance-tool")
    done = subprocess.run([str(COMPLIANCE), "d", "--json", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in done.stdout.splitlines() if line.startswith(("SUCCESS", "FAILED", "WARNING"))]


def submodel(doc: dict, id_short: str) -> dict:
    return next(s for s in doc["submodels"] if s["idShort"] == id_short)


def element(elements: list[dict], id_short: str) -> dict:
    return next(e for e in elements if e["idShort"] == id_short)


@pytest.fixture
async def record_line(tmp_path):
    async with SqliteStore(tmp_path / "line.sqlite") as s:
        await build(s)
        yield s


async def test_a_cells_passport_passes_the_compliance_check_and_a_broken_one_does_not(record_line, tmp_path):
    objects = await PassportBuilder(record_line, SPEC, MACHINES, "line7").cell("CL-2")
    assert objects is not None
    path = tmp_path / "CL-2.json"
    path.write_text(to_json(objects), encoding="utf-8")
    steps = compliance(path)
    assert steps and all(s.startswith("SUCCESS") for s in steps), steps
    doc = json.loads(path.read_text())
    [shell] = doc["assetAdministrationShells"]
    assert shell["id"] == "urn:linegw:line7:cell:CL-2"
    assert element(submodel(doc, "Nameplate")["submodelElements"], "SerialNumber")["value"] == "CL-2"
    performance = element(submodel(doc, "TechnicalData")["submodelElements"], "InitialPerformance")["value"]
    dcir = element(performance, "Dcir")
    assert float(dcir["value"]) == 14.0 and dcir["description"][0]["text"] == "unit mOhm"
    assert element(performance, "Result")["value"] == "reject"
    units = submodel(doc, "ManufacturingGenealogy")["submodelElements"]
    assert [element(u["value"], "UnitId")["value"] for u in units] == ["CL-2", "JR-2", "EC-1", "EA-1"]
    assert not [s for s in doc["submodels"] if s["idShort"] == "CarbonFootprint"]  # no meter on this line
    # The checker fails on a passport that lost a submodel's id.
    del doc["submodels"][0]["id"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc), encoding="utf-8")
    assert any(s.startswith("FAILED") for s in compliance(broken))


async def test_a_lots_passport_holds_every_cell_made_from_it(record_line):
    builder = PassportBuilder(record_line, SPEC, MACHINES, "line7")
    objects, cells = await builder.lot("EC-1")
    assert sorted(cells) == ["CL-1", "CL-2"]
    doc = json.loads(to_json(objects))
    assert sorted(s["id"] for s in doc["assetAdministrationShells"]) == ["urn:linegw:line7:cell:CL-1",
                                                                          "urn:linegw:line7:cell:CL-2"]
    assert await builder.lot("NOTHING") is None and await builder.cell("NOTHING") is None


async def test_the_carbon_footprint_is_the_cells_metered_energy(tmp_path):
    settings = EnergySettings(emission_factor=0.5)
    async with SqliteStore(tmp_path / "day.sqlite") as store:
        await day.write_day(store)
        objects = await PassportBuilder(store, SPEC, day.MACHINES, "line7", settings).cell("Z5")
        record = (await PassportBuilder(store, SPEC, day.MACHINES, "line7").records.record("Z5"))["stages"]
        start = min(s["window"]["start"] for s in record) - 1
        end = max(s["window"]["end"] for s in record) + 1
        expected = (await EnergyReport(store, SPEC, day.MACHINES, settings).report(start, end, "Z5"))["cell"]
    path = tmp_path / "Z5.json"
    path.write_text(to_json(objects), encoding="utf-8")
    assert all(s.startswith("SUCCESS") for s in compliance(path))
    doc = json.loads(path.read_text())
    footprint = submodel(doc, "CarbonFootprint")
    assert footprint["semanticId"]["keys"][0]["value"] == CARBON_FOOTPRINT
    pcf = element(footprint["submodelElements"], "ProductCarbonFootprint")["value"]
    assert float(element(pcf, "PCFCO2eq")["value"]) == pytest.approx(expected["kg_co2e"])
    assert float(element(pcf, "ManufacturingEnergy")["value"]) == pytest.approx(expected["kwh"])
    stages = {s["idShort"]: s for s in element(pcf, "ByStage")["value"]}
    assert set(stages) == {"Coater", "Winder", "Formation"}


async def test_routes_and_cli_export_the_passport_and_the_feature_table(record_line, tmp_path):
    cfg = load_line(line_file(tmp_path))
    app = create_app(LineRuntime(cfg, SPEC, record_line), record_line, SPEC, cfg.api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/api/v1/passport/CL-1")
        assert r.status_code == 200 and r.json()["assetAdministrationShells"][0]["id"].endswith(":cell:CL-1")
        lot = await client.get("/api/v1/passport/FOIL-1")
        assert lot.status_code == 200 and len(lot.json()["assetAdministrationShells"]) == 2
        missing = await client.get("/api/v1/passport/NOPE")
        assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]
        csv = await client.get("/api/v1/cells/features", params={"start": "1700099000", "end": "1700102000",
                                                                   "format": "csv"})
        assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("cell_id,equipment,graded_time")
        parquet = await client.get("/api/v1/cells/features", params={"start": "1700099000", "end": "1700102000",
                                                                       "format": "parquet"})
        assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    linegw = str(Path(sys.executable).parent / "linegw")
    out = tmp_path / "p.json"
    done = subprocess.run([linegw, "export", "passport", "CL-2", "--line", str(line_file(tmp_path)), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert all(s.startswith("SUCCESS") for s in compliance(out))
    table = tmp_path / "cells.csv"
    done = subprocess.run([linegw, "export", "cells", str(line_file(tmp_path)), "--range", "1700099000..1700102000",
                           "--format", "csv", "--out", str(table)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and len(table.read_text().splitlines()) == 3, done.stderr + done.stdout
