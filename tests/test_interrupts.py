"""Interrupted writes: Ctrl-C, SIGTERM (and SIGKILL) never leave a results file or a bundle
that could be mistaken for a complete one. A temporary may remain only under a dot-name with
".tmp-" in it (or is removed).

The batch run is the real CLI in a subprocess, signalled once its temporary results file holds
rows. `bmd-edge export` is still a placeholder in commands/compress.py, so the bundle half drives
the writer every exporter goes through (bundle.staging_dir + write_bundle) in a subprocess that
is killed while it writes model files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bmd_edge.runtime.tiny import write_tiny_bundle
from corpus.make_bad_inputs import hip_like

N_ROWS = 3000


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("intr")
    write_tiny_bundle(root / "bundle", size=32)
    img = root / "data" / "src.png"
    img.parent.mkdir()
    cv2.imwrite(str(img), np.round(hip_like(192, 160) * 65535).astype(np.uint16))
    rows = []
    for i in range(N_ROWS):  # hard links: distinct paths (no duplicate rows), no disk cost
        os.link(img, img.parent / f"c{i:05d}.png")
        rows.append(f"c{i:05d}.png,{60 + i % 30},{'FM'[i % 2]}\n")
    (root / "data" / "manifest.csv").write_text("image,age_xray,sex\n" + "".join(rows))
    return root


def _default_sigint() -> None:
    """Children start with Ctrl-C's default action even when this test runner was launched in
    the background by a shell without job control (which leaves SIGINT ignored, and Python then
    keeps it ignored): the tests are about our handling, not the runner's inheritance."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(cond, timeout: float = 120.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_batch_predict_interrupted_leaves_no_results_file(work: Path, tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    out = tmp_path / "results.csv"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "bmd_edge.cli", "predict",
                             str(work / "data" / "manifest.csv"), "--model", str(work / "bundle"),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=_default_sigint)
    try:
        def started() -> bool:  # the temp file exists and already holds result rows
            tmps = list(tmp_path.glob(".results.csv.tmp-*"))
            return bool(tmps) and tmps[0].stat().st_size > 2000
        assert _wait_for(started), "batch never started writing"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-500:])
    assert b"Traceback" not in err, err[-800:]
    # Typer turns KeyboardInterrupt into exit 130 itself (printing a blank line), so
    # cli.main's "interrupted" line is never reached; at most one line, never a traceback.
    assert len([ln for ln in err.decode().splitlines() if ln.strip()]) <= 1, err[-300:]
    assert not out.exists(), "an interrupted run must not leave results.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"], list(tmp_path.iterdir())


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bmd_edge.bundle import BundleMeta, staging_dir, write_bundle
    import json
    src = Path(sys.argv[2])
    meta = BundleMeta.from_dict(json.loads((src / "bundle.json").read_text()))
    out = Path(sys.argv[1])
    stage = staging_dir(out)
    for f in meta.files:
        (stage / f).write_bytes((src / f).read_bytes())
    with open(stage / "model_fp32.bin", "wb") as fh:   # a slow, large weights file
        for i in range(2000):
            fh.write(b"\\0" * 65536)
            fh.flush()
            if i == 5:
                print("STARTED", flush=True)
            time.sleep(0.005)
    write_bundle(stage, meta, out)
    print("DONE", flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_bundle_write_interrupted_leaves_no_bundle(work: Path, tmp_path: Path,
                                                   sig: signal.Signals) -> None:
    from bmd_edge.bundle import Bundle
    from bmd_edge.errors import BundleError

    out = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(work / "bundle")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "STARTED"
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert not out.exists(), "no folder under the bundle's name after an interrupted export"
    for left in tmp_path.iterdir():  # only a clearly temporary staging folder may remain
        assert left.name.startswith(".export.tmp-"), left.name
        with pytest.raises(BundleError, match="missing file bundle.json"):
            Bundle.load(left)
