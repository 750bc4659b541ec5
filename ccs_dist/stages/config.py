"""The base of every stage config: typed, frozen, unknown fields refused. A job spec's sections are these
configs themselves, so a stage option is settable from a spec and its default lives here, once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ccs_dist.core.errors import UserError


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v, info):
        """pydantic reads ``true`` as 1 for an int field; a spec saying ``layers: true`` is a mistake."""
        if isinstance(v, bool) and "bool" not in str(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"got {str(v).lower()}, expected a number or a list, not true/false")
        return v

    @classmethod
    def build(cls, **values: Any):
        """The config from keyword values (the CLI's flags): a bad value is one-line UserError naming the field."""
        try:
            return cls(**values)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(f"{where}={first.get('input')!r}: {first['msg']}") from None
