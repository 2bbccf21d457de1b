"""Manifest CSV: per-row problems with line and column, path containment, encodings, writer."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from bmd_edge.errors import ManifestError
from bmd_edge.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from bmd_edge.schema import FIELD_NAMES

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"


def _cohort(tmp_path: Path, csv_text: str | bytes, images: tuple[str, ...] = ("a.png", "b.png",
                                                                              "c.png")) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    for name in images:
        (tmp_path / "img" / name).write_bytes(b"not decoded by the manifest reader")
    path = tmp_path / "manifest.csv"
    if isinstance(csv_text, str):
        path.write_text(csv_text, encoding="utf-8")
    else:
        path.write_bytes(csv_text)
    return path


def test_columns_are_image_info_schema_label() -> None:
    assert MANIFEST_COLUMNS == ("image", "patient_id", "split", "side", "select", *FIELD_NAMES,
                                "fn_bmd")


def test_good_rows_become_cases(tmp_path: Path) -> None:
    path = _cohort(tmp_path, "image,age_xray,sex,height_cm,weight_kg,fn_bmd,patient_id,split,side\n"
                             "img/a.png,75,F,160,64,0.812,p1,Train,left\n"
                             "img/b.png,80,m,,,,p1,,\n")
    m = read_manifest(path)
    assert m.problems == () and len(m.cases) == 2
    a, b = m.cases
    assert a.line == 2 and b.line == 3
    assert a.image == (tmp_path / "img" / "a.png").resolve() and a.image.is_absolute()
    assert a.fn_bmd == 0.812 and a.patient_id == "p1" and a.split == "train" and a.side == "left"
    assert a.record["bmi"] == pytest.approx(25.0) and a.record["sex"] == "F"
    assert b.fn_bmd is None and b.split is None and b.side is None and b.record["sex"] == "M"
    assert b.patient_id == "p1"        # several images of one patient are allowed
    assert pickle.loads(pickle.dumps(m)) == m   # cases travel to DataLoader workers


def test_header_is_case_and_space_insensitive_with_bom(tmp_path: Path) -> None:
    path = _cohort(tmp_path, "\ufeff Image , AGE_XRAY ,Sex\nimg/a.png,70,F\n")
    m = read_manifest(path)
    assert m.problems == () and m.cases[0].record["age_xray"] == 70.0


def test_unknown_column_is_reported_and_rows_go_on(tmp_path: Path) -> None:
    m = read_manifest(_cohort(tmp_path, "image,shoe_size,age_xray\nimg/a.png,42,70\n"))
    assert len(m.cases) == 1
    (p,) = m.problems
    assert (p.line, p.column) == (1, "shoe_size")
    assert "accepted columns: image, patient_id" in p.message and "fn_bmd" in p.message


def test_missing_required_columns_fail_at_once(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="required column 'image' is missing.*accepted"):
        read_manifest(_cohort(tmp_path, "path,age_xray\nimg/a.png,70\n"))
    with pytest.raises(ManifestError, match="required column 'fn_bmd'"):
        read_manifest(_cohort(tmp_path, "image,age_xray\nimg/a.png,70\n"), require_label=True)
    with pytest.raises(ManifestError, match="repeats column.*age_xray"):
        read_manifest(_cohort(tmp_path, "image,age_xray,Age_Xray\nimg/a.png,70,70\n"))


def test_every_bad_row_is_reported_with_line_and_column(tmp_path: Path) -> None:
    text = ("image,age_xray,age_bmd,height_cm,weight_kg,bmi,fn_bmd,side\n"   # line 1
            "img/r2.png,150,,,,,0.8,\n"                                       # 2: age
            "img/r3.png,70,,1.7,70000,,0.8,\n"                                # 3: two columns
            "\n"                                                              # 4: blank, skipped
            "/etc/passwd,70,,,,,0.8,\n"                                       # 5: absolute
            "img/../../x.png,70,,,,,0.8,\n"                                   # 6: escapes
            "img/r7.png,70,71,170,72.25,,0.85,right\n"                        # 7: good
            "img/./r7.png,70,,,,,0.8,\n"                                      # 8: duplicate
            "img/r9.png,70,,,,,850,\n"                                        # 9: mg/cm2
            "img/r10.png,70,,,,,-1.2,\n"                                      # 10: T-score
            "img/r11.png,70,,,,,0.8,L\n"                                      # 11: side
            "img/r12.png,70,0.8\n"                                            # 12: cell count
            "img/r13.png,70,,170,72.25,27,0.8,\n"                             # 13: bmi mismatch
            "img/r14.png,70,76,,,,0.8,\n"                                     # 14: age gap
            "img/missing.png,70,,,,,0.8,\n"                                   # 15: not found
            '"img/r16.png",abc,,,,,"0.9",\n')                                 # 16: not a number
    images = tuple(f"r{i}.png" for i in range(2, 17))
    m = read_manifest(_cohort(tmp_path, text, images))
    assert [c.line for c in m.cases] == [7]
    got = [(p.line, p.column) for p in m.problems]
    assert got == [(2, "age_xray"), (3, "height_cm"), (3, "weight_kg"), (5, "image"), (6, "image"),
                   (8, "image"), (9, "fn_bmd"), (10, "fn_bmd"), (11, "side"), (12, None),
                   (13, "bmi"), (14, "age_xray"), (15, "image"), (16, "age_xray")]
    msg = {(p.line, p.column): p.message for p in m.problems}
    assert "looks like metres" in msg[3, "height_cm"] and "looks like grams" in msg[3, "weight_kg"]
    assert "absolute path" in msg[5, "image"] and "outside the manifest's folder" in msg[6, "image"]
    assert "'img/./r7.png' is listed twice (first on line 7)" in msg[8, "image"]
    assert "mg/cm2" in msg[9, "fn_bmd"] and "T- or Z-score" in msg[10, "fn_bmd"]
    assert "give one of left, right" in msg[11, "side"] and "3 cells" in msg[12, None]
    assert "25.0" in msg[13, "bmi"] and "6 years apart" in msg[14, "age_xray"]
    assert "not found" in msg[15, "image"] and "not a number" in msg[16, "age_xray"]
    assert str(m.problems[0]).startswith("line 2, column age_xray: age_xray = 150")
    with pytest.raises(ManifestError, match=r"14 problem\(s\): line 2, column age_xray.*9 more"):
        m.raise_on_problems()


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    text = 'image,patient_id,age_xray\nimg/a.png,"two\nlines",70\nimg/b.png,p2,999\n'
    m = read_manifest(_cohort(tmp_path, text))
    assert m.cases[0].patient_id == "two\nlines"
    assert [(p.line, p.column) for p in m.problems] == [(4, "age_xray")]


def test_label_required_for_training(tmp_path: Path) -> None:
    m = read_manifest(_cohort(tmp_path, "image,fn_bmd\nimg/a.png,\nimg/b.png,0.9\n"),
                      require_label=True)
    assert [c.line for c in m.cases] == [3]
    assert (m.problems[0].line, m.problems[0].column) == (2, "fn_bmd")


@pytest.mark.realworld
def test_symlinks_must_stay_inside_the_folder(tmp_path: Path) -> None:
    real = REALWORLD / "hip" / "normal-hip.jpg"
    assert real.is_file()
    path = _cohort(tmp_path, "image\nimg/outside.jpg\nimg/inside.png\n")
    os.symlink(real, tmp_path / "img" / "outside.jpg")
    os.symlink(tmp_path / "img" / "a.png", tmp_path / "img" / "inside.png")
    m = read_manifest(path)
    assert [c.line for c in m.cases] == [3]
    assert m.problems[0].line == 2 and "resolves outside" in m.problems[0].message


def test_windows_paths(tmp_path: Path) -> None:
    m = read_manifest(_cohort(tmp_path, "image\nimg\\a.png\nC:\\data\\b.png\n"))
    assert m.cases[0].image.name == "a.png"
    assert m.problems[0].line == 3 and "absolute path" in m.problems[0].message


def test_check_files_can_be_skipped(tmp_path: Path) -> None:
    m = read_manifest(_cohort(tmp_path, "image\nimg/later.png\n"), check_files=False)
    assert m.problems == () and m.cases[0].image.name == "later.png"


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    data = "image,patient_id\nimg/a.png,ok\nimg/b.png,M\xfcller\n".encode("latin-1")
    with pytest.raises(ManifestError, match=r"line 3 is not valid UTF-8 \(byte 0xfc\)"):
        read_manifest(_cohort(tmp_path, data))


@pytest.mark.parametrize("content", [b"", b"  \n\n"])
def test_empty_manifest(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ManifestError, match="is empty; expected a header"):
        read_manifest(_cohort(tmp_path, content))


def test_header_only_and_missing_file(tmp_path: Path) -> None:
    m = read_manifest(_cohort(tmp_path, "image,fn_bmd\n"))
    assert m.cases == () and m.problems == ()
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "nope.csv")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    _cohort(tmp_path, "")
    rows = [{"image": tmp_path / "img" / "a.png", "age_xray": 74.25, "sex": "F", "fn_bmd": 0.7815,
             "patient_id": "p1", "side": "right", "smoking": None},
            {"image": "img/b.png", "age_xray": 81, "sex": "M", "fn_bmd": 1.0, "split": "val"}]
    path = write_manifest(tmp_path / "manifest.csv", rows)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == "image,patient_id,split,side,age_xray,sex,smoking,fn_bmd"
    assert path.read_text(encoding="utf-8").splitlines()[1] == "img/a.png,p1,,right,74.25,F,,0.7815"
    m = read_manifest(path, require_label=True)
    assert m.problems == ()
    assert [c.fn_bmd for c in m.cases] == [0.7815, 1.0]
    assert m.cases[1].split == "val" and m.cases[0].record["smoking"] is None
    assert not list(tmp_path.glob(".manifest.csv.*"))      # temp file replaced atomically


def test_write_refuses_unknown_columns(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown manifest column.*bmd_true"):
        write_manifest(tmp_path / "m.csv", [{"image": "a.png", "bmd_true": 0.8}])


def test_unreadable_image_entries_are_row_problems_not_the_end(tmp_path: Path) -> None:
    """Loops, dangling links, FIFOs, folders, 300-character and NUL names: each is its row's
    problem (before: a loop raised RuntimeError and a long name OSError out of read_manifest)."""
    long = "x" * 296 + ".png"
    path = _cohort(tmp_path, "image,age_xray\nimg/a.png,70\nimg/loop.png,70\nimg/gone.png,70\n"
                             f"img/pipe.png,70\nimg/sub.png,70\n{long},70\nimg/a\0.png,70\n"
                             "img/b.png,71\n")
    os.symlink("loop.png", tmp_path / "img" / "loop.png")
    os.symlink("deleted.png", tmp_path / "img" / "gone.png")
    os.mkfifo(tmp_path / "img" / "pipe.png")
    (tmp_path / "img" / "sub.png").mkdir()
    m = read_manifest(path)
    assert [c.line for c in m.cases] == [2, 9]
    got = {p.line: p.message for p in m.problems}
    assert "is a symbolic link loop" in got[3]
    assert "not found" in got[4] or "link to a missing file" in got[4]
    assert "is a FIFO (named pipe)" in got[5]
    assert "is a folder, not a regular file" in got[6]
    assert "longer than the file system allows (300 bytes" in got[7]
    assert "NUL character" in got[8]
    assert all(p.column == "image" for p in m.problems)


def test_a_csv_error_fails_one_row_and_later_rows_are_read(tmp_path: Path) -> None:
    """A cell over csv's field limit is one bad row; reading used to stop there."""
    path = _cohort(tmp_path, f"image,age_xray\nimg/a.png,70\nimg/{'y' * 140_000}.png,70\n"
                             "img/b.png,71\n")
    m = read_manifest(path)
    assert [c.line for c in m.cases] == [2, 4]
    assert [p.line for p in m.problems] == [3]
    assert "not valid CSV (field larger than field limit" in m.problems[0].message
