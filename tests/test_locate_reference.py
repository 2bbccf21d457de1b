"""locate.reference: hand marks read strictly, located heads scored by side in % of the width."""

from __future__ import annotations

from pathlib import Path

import pytest

from bmd_edge.errors import InputError
from bmd_edge.locate.decode import FoundHip, LocateResult
from bmd_edge.locate.reference import COLUMNS, HeadMark, check_heads, read_marks

HEADS_CSV = Path(__file__).parent / "data" / "realworld_heads.csv"


def _hip(side: str, x: float, y: float) -> FoundHip:
    return FoundHip(side_in_image=side, head_xy=(x, y), head_r=20.0, neck_xy=(x, y + 30),
                    neck_angle_deg=90.0, roi_xy=(x, y + 40), roi_len=10.0, roi_width=30.0,
                    roi_angle_deg=90.0, confidence=0.9)


def _mark(side: str, x: float, y: float) -> HeadMark:
    return HeadMark("hip/a.jpg", side, x, y, 0.05, "adult", "AP pelvis", "clear")


def test_heads_are_matched_by_side_and_the_error_is_a_share_of_the_width() -> None:
    # 400 × 200 film: the left mark at (100, 100) px, the located left head 30 px right, 40 down.
    res = LocateResult(0.9, (_hip("left", 130.0, 140.0), _hip("right", 300.0, 100.0)))
    left, right = check_heads(res, [_mark("left", 0.25, 0.5), _mark("right", 0.25, 0.5)],
                               400, 200)
    assert left.error_frac == pytest.approx(50 / 400)        # hypot(30, 40) = 50 px
    assert not left.within(0.10) and left.within(0.13)
    assert right.found is res.hips[1]                        # the right hip, though farther
    assert right.error_frac == pytest.approx(200 / 400)


def test_a_head_missing_on_its_side_is_not_found_even_if_the_other_side_is_near() -> None:
    res = LocateResult(0.9, (_hip("right", 100.0, 100.0),))
    (chk,) = check_heads(res, [_mark("left", 0.25, 0.5)], 400, 200)
    assert chk.found is None and chk.error_frac is None and not chk.within(1.0)


def test_the_committed_marks_parse_and_cover_both_age_policies() -> None:
    marks = read_marks(HEADS_CSV)
    groups = {ms[0].age_group for ms in marks.values()}
    assert {"adult", "paediatric"} <= groups
    assert all(len({m.side_in_image for m in ms}) == len(ms) for ms in marks.values())


@pytest.mark.parametrize("bad", ["middle", "1.2", "child"])
def test_a_malformed_mark_is_refused(tmp_path: Path, bad: str) -> None:
    row = {"file": "hip/a.jpg", "side_in_image": "left", "head_x_frac": "0.3",
           "head_y_frac": "0.5", "head_r_frac": "0.05", "age_group": "adult",
           "view": "AP pelvis", "mark_quality": "clear", "notes": ""}
    key = {"middle": "side_in_image", "1.2": "head_x_frac", "child": "age_group"}[bad]
    row[key] = bad
    p = tmp_path / "m.csv"
    p.write_text(",".join(COLUMNS) + "\n" + ",".join(row[c] for c in COLUMNS) + "\n")
    with pytest.raises(InputError, match="bad mark"):
        read_marks(p)
