"""A click command class that refuses repeated, empty and huge options instead of guessing.

Why: click keeps the last of `--sex F --sex M` without a word, and `--sex ''` (an unset shell
variable, `--sex "$SEX"`) arrives as an empty string that the library used to read as "sex
unknown": a different BMD, a flipped screening result, and on a DICOM it even overrode the
file's PatientSex. An empty or blank value given explicitly is an error, never "missing"; a
repeated option is an error. Both are found from click's own parse (every occurrence, in order)
before any value is converted, so every command that uses this class behaves the same. A value
longer than any path (100,000 characters pasted by mistake) is refused by its length, so it is
never echoed back whole.
"""

from __future__ import annotations

from typing import Any

import typer.core
import typer.main

from bmd_edge.errors import quoted

MAX_VALUE_CHARS = 4096  # PATH_MAX on Linux; a longer value is a mistake, never echoed whole


class StrictCommand(typer.core.TyperCommand):
    """TyperCommand + one check: no option twice, no empty or blank value."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not ctx.resilient_parsing:
            opts, _rest, order = self.make_parser(ctx).parse_args(args=list(args))
            _refuse_repeats(ctx, order)
            _refuse_blanks(ctx, order, opts)
        return super().parse_args(ctx, args)


def _label(param: Any) -> str:
    """How the user typed it: the longest option name, or the argument's metavar."""
    names = [n for n in (getattr(param, "opts", None) or []) if n.startswith("-")]
    if names:
        return max(names, key=len)
    return str(getattr(param, "metavar", None) or param.name).upper()


def _refuse_repeats(ctx: Any, order: list[Any]) -> None:
    seen: dict[str, int] = {}
    for param in order:
        if getattr(param, "multiple", False) or getattr(param, "count", False):
            continue
        if param.param_type_name == "argument":
            continue
        seen[param.name] = seen.get(param.name, 0) + 1
        if seen[param.name] == 2:
            ctx.fail(f"{_label(param)} is given more than once; give it once (click would "
                     "silently keep the last value)")


def _refuse_blanks(ctx: Any, order: list[Any], opts: dict[str, Any]) -> None:
    for param in order:
        value = opts.get(param.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, str) and len(v) > MAX_VALUE_CHARS:
                ctx.fail(f"{_label(param)} has a value of {len(v):,} characters; at most "
                         f"{MAX_VALUE_CHARS:,} accepted")
            if isinstance(v, str) and not v.strip():
                what = "an empty value" if not v else f"a blank value {quoted(v)}"
                ctx.fail(f"{_label(param)} has {what}; give a value or leave the option out "
                         "(an unset shell variable?)")
