"""Pydantic refusals as one line, ``<key>: <problem> (fix: <fix>)``, for any declared model.

Why here, in the base layer: the settings, the sink URLs (``edgeseg detect --sink``) and the
config loader all validate against declarations; keeping the reading of a refusal below all of
them means none of them has to import another to explain an error.
"""
from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from edgeseg.core.declare import _SEP, ConfigError


def _field_for(model: type[BaseModel], loc: tuple) -> tuple[Any, list[str]]:
    """The pydantic FieldInfo that ``loc`` ends in (None for list items) and the known keys there."""
    info, known, current = None, list(model.model_fields), model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        info = current.model_fields.get(part)
        known = list(current.model_fields)
        ann = getattr(info, "annotation", None)
        current = model_in(ann)
    return info, known


def model_in(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = model_in(arg)
        if found is not None:
            return found
    return None


def _key(loc: tuple, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def bounds(info: Any) -> tuple[list[str], list[str]]:
    """A field's lower and upper bounds as text (``>= 1``, ``< 1.0``): the one reading of its
    constraints, for the one-line errors and for the docs table."""
    meta = {type(m).__name__: m for m in getattr(info, "metadata", ())}
    lo = [f">= {m.ge}" for k, m in meta.items() if k == "Ge"] + [f"> {m.gt}" for k, m in meta.items() if k == "Gt"]
    hi = [f"<= {m.le}" for k, m in meta.items() if k == "Le"] + [f"< {m.lt}" for k, m in meta.items() if k == "Lt"]
    return lo, hi


def _expects(info: Any, kind: str) -> str:
    ann = str(getattr(info, "annotation", ""))
    if "bool" in ann and "int" not in ann:
        return "true or false"
    if "Literal" in ann:
        return "one of " + ", ".join(getattr(info.annotation, "__args__", ()) or ()) if "Optional" not in ann else "a listed value"
    noun = "an integer" if "int" in ann and "float" not in ann else "a number" if "float" in ann else "a non-empty string" if "str" in ann else "a valid value"
    lo, hi = bounds(info)
    return " ".join([noun] + ([" and ".join(lo + hi)] if lo or hi else []))


def format_error(exc: ValidationError, model: type[BaseModel] = BaseModel, prefix: str = "") -> str:
    """The first problem of ``exc`` as ``<key>: <problem> (fix: <fix>)``."""
    err = exc.errors(include_url=False)[0]
    loc, kind = tuple(err["loc"]), err["type"]
    if kind == "edgeseg":
        sub, problem, fix = err["msg"].split(_SEP)
        key = _key(loc, prefix)
        return f"{sub if key == '(top level)' and sub else key + sub}: {problem} (fix: {fix})"
    info, known = _field_for(model, loc) if model is not BaseModel else (None, [])
    key = _key(loc, prefix)
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(str(loc[-1]), sorted(known), n=1)
        return f"{key}: unknown key (fix: {f'did you mean {near[0]!r}?' if near else 'known keys: ' + ', '.join(sorted(known))})"
    if kind == "missing":
        return f"{key}: is required (fix: {(info.json_schema_extra or {}).get('fix', 'add it') if info else 'add it'})"
    fix = ((getattr(info, "json_schema_extra", None) or {}).get("fix") if info else None) or (
        f"set it to {info.default!r} (the default)" if info is not None and not info.is_required()
        and info.default is not None and not isinstance(info.default, BaseModel) else "see edgeseg watch --schema")
    got = err.get("input")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{key}: must be a table/mapping, got {type(got).__name__} (fix: write '{loc[-1]}:' with indented keys below it)"
    if kind in ("list_type", "too_short") and info is not None and "list" in str(info.annotation):
        what = "a non-empty list" if kind == "too_short" else "a list"
        return f"{key}: must be {what} (fix: {fix})"
    if kind == "finite_number":
        return f"{key}: must be a finite number, got {got!r} (fix: {fix})"
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern")
        form = {r"^[A-Za-z0-9_.-]+$": "letters, digits, '_', '.', '-' (no spaces)"}.get(pattern, f"the form {pattern}")
        explicit = (getattr(info, "json_schema_extra", None) or {}).get("fix") if info else None
        return f"{key}: {got!r} is not in the expected form (fix: {explicit or 'use ' + form})"
    what = _expects(info, kind) if info is not None else err["msg"].lower()
    return f"{key}: must be {what}, got {got!r} (fix: {fix})"


def validate(model: type[BaseModel], raw: Any, prefix: str = "") -> Any:
    """``model.model_validate(raw)``, with a refusal as one :class:`ConfigError` line."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or '(top level)'}: must be a mapping, got {type(raw).__name__} "
                          "(fix: start the file with keys such as cameras:)")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_error(exc, model, prefix)) from None
