"""Loading spec files: YAML in, validated models out, or an error that names
the file, the line and the path inside it.

The same machinery loads the gateway's own config files, so every config
error in the product reads the same way: `file:line: path: what is wrong`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
# libyaml's safe loader when PyYAML has it (the same documents, marks and errors, some ten times faster:
# mapping files are read at every check and every machine start), the pure-Python one otherwise.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecError(ValueError):
    """A file that does not follow its format; the message is for people."""


def _compose(text: str, filename: str) -> tuple[Any, yaml.Node | None]:
    try:
        node = yaml.compose(text, Loader=LOADER)
        data = yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as c_exc:
        exc = _python_yaml_error(text) or c_exc  # its wording names what it found, where libyaml's does not
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise SpecError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    twice = duplicate_keys(node)
    if twice:
        raise SpecError("\n".join(f"{filename}:{line}: {format_loc(loc)}: {what}" for line, loc, what in twice))
    return data, node


def _python_yaml_error(text: str) -> yaml.YAMLError | None:
    """What the pure-Python parser says of a document libyaml refused (None if it reads it)."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    return None


def duplicate_keys(node: yaml.Node | None) -> list[tuple[int, tuple[Any, ...], str]]:
    """(line, path, what) for every mapping key given twice: YAML keeps the last one silently,
    so a setting written twice would be read as whichever came last."""
    found: list[tuple[int, tuple[Any, ...], str]] = []
    seen_nodes: set[int] = set()  # an alias shares its anchor's node: look at each once

    def walk(n: yaml.Node, loc: tuple[Any, ...]) -> None:
        if id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}  # (tag, text) of a key -> the line it was first given on
            for key, value in n.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in first:
                        was = first[(key.tag, key.value)]
                        found.append((line, loc + (name,), f"'{one_line(name)}' is given twice (first on line {was}); keep one"))
                    else:
                        first[(key.tag, key.value)] = line
                walk(value, loc + (name,))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, loc + (i,))

    if node is not None:
        walk(node, ())
    return found


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node that `loc` (a pydantic error path) reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def one_line(text: str) -> str:
    """`text` with control characters and line separators escaped: a key or value from the file
    can neither break a message into two lines nor drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + one_line(str(part))
    return out or "(top level)"


def validation_message(exc: ValidationError, filename: str, node: yaml.Node | None) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        # Drop pydantic's union/validator tags from the path; keep field names and indexes.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        line = line_of(node, loc)
        where = f"{filename}:{line}" if line else filename
        msg = one_line(err["msg"].removeprefix("Value error, "))
        lines.append(f"{where}: {format_loc(loc)}: {msg}")
    return "\n".join(lines)


def load_model(path: str | Path, model: type[M], text: str | None = None) -> M:
    """Parse one YAML file into `model`, or raise SpecError naming file:line: field."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    data, node = _compose(text, str(path))
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: (top level): expected a mapping of fields")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(validation_message(exc, str(path), node)) from None


def yaml_node(path: str | Path) -> yaml.Node | None:
    """The composed YAML tree of a file, for locating errors found after validation."""
    return yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=LOADER)
