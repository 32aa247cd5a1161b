"""/docs and the dashboard work without internet: every file they load is served by the gateway itself."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec

VENDOR = Path(__file__).resolve().parents[2] / "gateway" / "api" / "static" / "vendor"


@pytest.fixture
async def client(tmp_path):
    """The app over a line that is never started: these pages need no machine data."""
    cfg = LineConfig.model_validate({"line": "docs", "store": {"path": str(tmp_path / "s.sqlite")}, "equipment": [
        {"id": "coater1", "class": "coater", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1/x"}]})
    runtime = LineRuntime(cfg, load_spec(), SqliteStore(cfg.store.path))
    app = create_app(runtime, runtime.store, runtime.spec, cfg.api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


def referenced(page: str) -> list[str]:
    """Every URL a page loads: src= and href= attributes, and quoted URLs handed to scripts (the OpenAPI schema)."""
    urls = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', page)
    urls += re.findall(r'["\'](/[\w./-]+\.(?:js|css|json|png))["\']', page)
    # In-page links (#/line) and inline data need no request; anything else must be the gateway's own path.
    fetched = {u for u in urls if not u.startswith(("#", "data:"))}
    assert all(u.startswith("/") and not u.startswith("//") for u in fetched), fetched
    return sorted(fetched)


async def test_docs_load_only_files_the_gateway_serves(client):
    r = await client.get("/docs")
    assert r.status_code == 200
    page = r.text
    assert "http://" not in page and "https://" not in page and "//cdn" not in page, page
    assert '"validatorUrl": null' in page  # no schema sent to an online validator either
    urls = referenced(page)
    assert {"/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/vendor/swagger-ui/swagger-ui.css",
            "/openapi.json"} <= set(urls), urls
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/equipment/{equipment_id}/history" in schema["paths"]
    assert schema["paths"]["/api/v1/me"]["get"]["tags"] == ["line"]  # listed once, with the line


async def test_vendored_libraries_carry_their_licence_and_version():
    for lib, version in (("swagger-ui", "5.35.0"), ("uplot", "1.6.32")):
        assert (VENDOR / lib / "LICENSE").read_text().strip(), lib
        assert version in (VENDOR / "README.md").read_text(), lib


async def test_dashboard_loads_only_files_the_gateway_serves(client):
    page = (await client.get("/")).text
    assert "http://" not in page and "https://" not in page
    scripts = referenced(page)
    assert "/static/app.js" in scripts and "/static/vendor/uplot/uPlot.iife.min.js" in scripts, scripts
    for url in scripts:
        assert (await client.get(url)).status_code == 200, url
    imports = re.findall(r'from "(\./[\w./]+)"|import\("(\./[\w./]+)"\)', (await client.get("/static/app.js")).text)
    for url in {a or b for a, b in imports}:  # the modules the entry loads, resolved against /static/
        assert (await client.get("/static/" + url[2:])).status_code == 200, url


async def test_me_says_whether_the_caller_may_command(client):
    me = (await client.get("/api/v1/me")).json()  # the ASGI client is 127.0.0.1: loopback, no keys configured
    assert me == {"user": "local", "role": "engineer", "may_command": True, "command_refusal": None,
                  "command_roles": ["operator", "engineer"]}
