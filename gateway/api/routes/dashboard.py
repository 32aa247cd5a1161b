"""GET /: the dashboard, one self-contained page (no build step, no external resources).

The page holds no machine data; it reads the API with the key the user gives
it, so it is served without a key. Only the line's name is written into it.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from gateway.api.deps import View

router = APIRouter(tags=["dashboard"], include_in_schema=False)

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
LINE_MARK = "__LINE_ID__"


@router.get("/", response_class=HTMLResponse)
async def dashboard(view: View) -> HTMLResponse:
    page = PAGE.read_text(encoding="utf-8").replace(LINE_MARK, html.escape(view.line_id))
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
