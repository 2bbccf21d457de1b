"""Warnings as small records (code, field, value), rendered to text only at the edge.

Why: a warning that is only a sentence gets parsed back with regular expressions by the next
module (which colour? which column?). A record keeps the facts; `str(w)` is the sentence for
people, `w.code` / `w.field` / `w.value` are for code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Warn:
    code: str        # stable identifier, e.g. "unsigned-bundle"
    field: str       # what it is about: a clinical field, "image", "bundle", ...
    value: str       # the value that triggered it, as text
    text: str        # the sentence shown to people

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "value": self.value, "text": self.text}
