"""Process physics per equipment class, behind one small interface (`ProcessModel`)."""

from __future__ import annotations

from .base import ProcessModel
from .coater import CoaterModel
from .formation import FormationModel
from .winder import WinderModel

MODELS: dict[str, type[ProcessModel]] = {
    "coater": CoaterModel,
    "winder": WinderModel,
    "formation": FormationModel,
}


def model_for(cls: str) -> type[ProcessModel]:
    try:
        return MODELS[cls]
    except KeyError:
        raise KeyError(f"no process model for class '{cls}' (have {', '.join(MODELS)})") from None


__all__ = ["MODELS", "ProcessModel", "model_for"]
