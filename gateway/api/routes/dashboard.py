"""The dashboard and the API docs, served from the package: nothing is fetched from the internet.

Line-side PCs are often offline, so the pages (`/`, plain JavaScript modules
under `/static/`), the charting library (uPlot) and Swagger UI for `/docs`
are files of this package (`static/vendor/`, each with its licence). The
pages hold no machine data; they read the API with the key the user gives
them, so they are served without a key. Only the line's name is written into
`/`. `GET /api/v1/me` tells the pages who the caller is and whether it may
send commands, so that command buttons are shown only to those who may.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Scope

from gateway.api.auth import COMMAND_ROLES, command_refusal
from gateway.api.deps import Caller, View

router = APIRouter()

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE = STATIC / "index.html"
LINE_MARK = "__LINE_ID__"
STATIC_URL = "/static"
SWAGGER = f"{STATIC_URL}/vendor/swagger-ui"


class Me(BaseModel):
    user: str
    role: str
    may_command: bool
    command_refusal: str | None = None  # why not, in words, when may_command is false
    command_roles: list[str]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(view: View) -> HTMLResponse:
    page = PAGE.read_text(encoding="utf-8").replace(LINE_MARK, html.escape(view.line_id))
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@router.get("/api/v1/me", response_model=Me, tags=["line"], summary="Who the caller is and whether it may command")
async def me(request: Request, who: Caller) -> Me:
    refusal = command_refusal(who, request.client.host if request.client else None)
    return Me(user=who.user, role=who.role, may_command=refusal is None, command_refusal=refusal,
              command_roles=list(COMMAND_ROLES))


class _Static(StaticFiles):
    """Static files revalidated on every load: a gateway update must not leave old scripts in a browser."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def install(app: FastAPI) -> None:
    """The pages, their files and the offline `/docs` on `app` (created with docs_url=None, redoc_url=None)."""
    app.include_router(router)
    app.mount(STATIC_URL, _Static(directory=STATIC), name="static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} — API docs",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js", swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
            # Swagger UI asks an online validator about the schema unless told not to.
            swagger_ui_parameters={"validatorUrl": None},
        )
