"""The building blocks every setting is declared with (``edgeseg.config.settings`` and the sinks' own
settings): strict models, a field with its doc and fix, and a validator's one-line refusal."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

_SEP = "\x1f"


class ConfigError(ValueError):
    """A settings mistake, as one line: ``<key>: <problem> (fix: <what to do>)``."""


def bad(problem: str, fix: str, sub: str = "") -> PydanticCustomError:
    """A validator's refusal with its own fix (``sub`` extends the key, e.g. ``[2]``)."""
    return PydanticCustomError("edgeseg", _SEP.join((sub, problem, fix)).replace("{", "(").replace("}", ")"))


def setting(default: Any, doc: str, fix: str = "", **constraints: Any) -> Any:
    """A field with its one-line doc and the fix printed when a value is refused."""
    extra = {"fix": fix} if fix else None
    return Field(default, description=doc, json_schema_extra=extra, **constraints)


class Strict(BaseModel):
    """Unknown keys are errors (a typo would otherwise fall back to a default silently); NaN and
    infinities are refused (``threshold: .nan`` would turn detection off)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, validate_default=True)
