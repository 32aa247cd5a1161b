"""What every `linegw` sub-command shares: the consoles, the demo line, durations, loading a line file.

Kept apart from `gateway.cli` so that sub-command modules (`gateway.analytics.cli`,
`gateway.conformance.cli`) import it without importing the command line that registers them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.markup import escape

from interface_spec import Spec, SpecError, load_spec

if TYPE_CHECKING:
    from gateway.config import LineConfig

console = Console(soft_wrap=True)  # lines are never wrapped: output is read by people and by grep alike
err_console = Console(stderr=True, soft_wrap=True)

DEMO_LINE = Path(__file__).resolve().parent.parent / "deploy" / "lines" / "demo.yaml"


def parse_duration(text: str) -> float:
    """"30s", "2m", "1h", "45" -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise typer.BadParameter(f"'{text}' is not a duration (e.g. 30s, 2m, 1h)")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def load_config(path: Path, secrets: bool = True) -> tuple[LineConfig, Spec]:
    from gateway.config import load_line, located
    from gateway.mapping.compile import load_mapping
    from interface_spec.loader import yaml_node

    spec = load_spec()
    cfg = load_line(path, secrets=secrets, spec=spec)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, eq in enumerate(cfg.equipment):
        if eq.mapping:
            mapping = load_mapping(eq.mapping, spec)  # its own errors name the mapping file's lines
            name = Path(eq.mapping).name
            if mapping.cls != eq.cls:
                problems.append((("equipment", i, "mapping"), f"{name} is for a {mapping.cls}, but {eq.id} is a {eq.cls}"))
            if mapping.protocol != eq.protocol:
                problems.append((("equipment", i, "mapping"),
                                 f"{name} maps {mapping.protocol} addresses, but {eq.id} speaks {eq.protocol}"))
    if problems:
        raise SpecError(located(path, yaml_node(path), problems))
    return cfg, spec


def load_or_fail(path: Path, secrets: bool = True) -> tuple[LineConfig, Spec]:
    try:
        return load_config(path, secrets)
    except (SpecError, OSError) as exc:
        fail(exc)


def fail(exc: Exception) -> NoReturn:
    for line in str(exc).splitlines():  # one problem per line, never wrapped: file:line: field: what
        err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, markup=True)
    raise typer.Exit(1)


class Overrides(BaseSettings):
    """What `run` and `demo` take over the line file: command-line options, else LINEGW_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="LINEGW_", extra="ignore")

    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    store: Path | None = None

    def sources(self) -> dict[str, str]:
        """Each overridden setting, as the user would name where it came from."""
        return {name: f"--{name} / LINEGW_{name.upper()}" for name in ("host", "port", "store")
                if getattr(self, name) is not None}


def apply_overrides(cfg: LineConfig, host: str | None, port: int | None, store: Path | None) -> tuple[LineConfig, Overrides]:
    """The line file's configuration with the overrides applied (checked like the file's own values)."""
    given: dict[str, Any] = {k: v for k, v in {"host": host, "port": port, "store": store}.items() if v is not None}
    try:
        over = Overrides(**given)  # options win over the environment
        return overridden(cfg, over), over
    except ValidationError as exc:
        fail(SpecError("\n".join(f"{'.'.join(str(x) for x in e['loc'])} (option or LINEGW_ variable): {e['msg']}"
                                 for e in exc.errors())))


def overridden(cfg: LineConfig, over: Overrides) -> LineConfig:
    """`cfg` with the overrides in place; raises ValidationError for a value its field refuses."""
    from gateway.config import Api, Store

    api = Api.model_validate({**cfg.api.model_dump(), **{k: getattr(over, k) for k in ("host", "port")
                                                         if getattr(over, k) is not None}})
    store_cfg = cfg.store if over.store is None else Store.model_validate(
        {**cfg.store.model_dump(), "path": str(over.store.expanduser().resolve())})
    return cfg.model_copy(update={"api": api, "store": store_cfg})
