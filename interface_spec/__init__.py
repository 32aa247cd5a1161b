"""The line interface spec: the standard as data (YAML), its grammar and its bindings."""

from .loader import SpecError
from .spec import Spec, VarDef, load_spec, minor_version, split_path

__all__ = ["Spec", "SpecError", "VarDef", "load_spec", "minor_version", "split_path"]
