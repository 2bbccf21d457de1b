"""Warnings as small records (code, field, value) that still read as their sentence.

Why: a warning that is only a sentence gets parsed back with regular expressions by the next
module (which colour fraction? which field?). `Warn` is a `str` — the sentence people see, so
JSON output, logs and `"--force" in w` keep working — that also carries `code`, `field` and
`value` for code to read. Text is for people; code reads the attributes.
"""

from __future__ import annotations


class Warn(str):
    """A warning sentence plus its facts: `Warn(code, field, value, text)`."""

    code: str        # stable identifier, e.g. "unsigned-bundle", "colour-converted"
    field: str       # what it is about: a clinical field, "image", "bundle", ...
    value: str       # the value that triggered it, as text

    def __new__(cls, code: str, field: str, value: str, text: str) -> Warn:  # noqa: PYI034
        w = super().__new__(cls, text)
        w.code, w.field, w.value = code, field, value
        return w

    @property
    def text(self) -> str:
        return str.__str__(self)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "value": self.value, "text": self.text}

    def __reduce__(self) -> tuple[object, tuple[str, str, str, str]]:  # pickles across processes
        return (Warn, (self.code, self.field, self.value, self.text))
