"""One Predictor shared by 8 threads returns each caller its own result, on both backends.

Why: device software calls `predict` from several threads. A shared OpenVINO infer request with
shared output memory used to raise `Infer Request is busy` and, worse, return another image's
BMD. Every case here has a distinct expected BMD, so a mix-up cannot go unnoticed: each
concurrent result is compared with the sequential result for the same image (≤ 1e-6).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bmd_edge.runtime import Prediction, Predictor
from bmd_edge.runtime.tiny import write_tiny_bundle

THREADS = 8
BACKENDS = ("openvino", "onnxruntime")
EXPORT = Path(__file__).resolve().parents[1] / "export"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", size=32)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Switch Python threads every 0.1 ms (default 5 ms) so calls interleave more often."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


def _film(k: int, h: int = 72, w: int = 64) -> np.ndarray:
    """A toy hip (runtime/toy.py) whose head, neck and side change with k: every k its own BMD."""
    from bmd_edge.runtime.toy import toy_hip_film

    return toy_hip_film(h + 2 * (k % 5), w + 3 * (k % 4), side=("left", "right")[k % 2],
                        seed=k)[0]


def _cases(folder: Path, n: int) -> list[tuple[Path, dict[str, object]]]:
    """n 16-bit PNG films with their own clinical facts (age, sex, weight differ per case)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        path = folder / f"case{k:02d}.png"
        cv2.imwrite(str(path), np.round(_film(k) * 65535).astype(np.uint16))
        out.append((path, {"age": 50 + 2 * k, "sex": "FM"[k % 2], "weight_kg": 50 + 3 * k}))
    return out


def _same(a: Prediction, b: Prediction) -> bool:
    return (a.source == b.source and abs(a.bmd_gcm2 - b.bmd_gcm2) <= 1e-6
            and a.inputs == b.inputs and a.warnings == b.warnings
            and [n for n, _ in a.field_attention] == [n for n, _ in b.field_attention]
            and all(abs(wa - wb) <= 1e-6 for (_, wa), (_, wb)
                    in zip(a.field_attention, b.field_attention)))


def _hammer(predictor: Predictor, cases: list[tuple[Path, dict[str, object]]],
            expected: list[Prediction], calls_per_thread: int) -> tuple[int, list[str]]:
    """THREADS threads, each predicting a different case per call; (mismatches, errors).

    Every 5th call of a thread is a `predict_batch` of 3 cases, so runtime calls with batch 1
    and batch 3 (different output shapes in the same infer requests) interleave too.
    """
    barrier = threading.Barrier(THREADS)
    mismatches = [0] * THREADS
    errors: list[str] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(calls_per_thread):
                k = (t * 7 + i) % len(cases)  # threads run different cases at the same moment
                ks = [k, (k + 1) % len(cases), (k + 2) % len(cases)] if i % 5 == 4 else [k]
                if len(ks) == 1:
                    path, facts = cases[k]
                    got = [predictor.predict(path, **facts)]  # type: ignore[arg-type]
                else:
                    got = predictor.predict_batch([cases[j][0] for j in ks],
                                                  [cases[j][1] for j in ks])
                mismatches[t] += sum(not _same(g, expected[j]) for g, j in zip(got, ks))
        except Exception as err:  # noqa: BLE001 - every failure is counted, none may escape
            errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(mismatches), errors


def _check(predictor: Predictor, cases: list[tuple[Path, dict[str, object]]],
           calls_per_thread: int) -> None:
    expected = [predictor.predict(p, **f) for p, f in cases]  # type: ignore[arg-type]
    bmds = sorted(e.bmd_gcm2 for e in expected)
    # Distinct answers per case: a result handed to the wrong caller would be detected.
    assert min(np.diff(bmds)) > 1e-4, bmds
    mismatches, errors = _hammer(predictor, cases, expected, calls_per_thread)
    assert errors == [], f"{len(errors)} calls raised, first: {errors[:3]}"
    assert mismatches == 0, f"{mismatches} results of {THREADS * calls_per_thread} calls were wrong"


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_bundle_8_threads_x_1000_calls(tiny_bundle: Path, tmp_path: Path,
                                           backend: str) -> None:
    """8 threads × 1,000 calls each (8,000 per backend) on 16 films: all equal the sequential result."""
    predictor = Predictor.load(tiny_bundle, backend=backend, threads=1)
    _check(predictor, _cases(tmp_path / "films", 16), calls_per_thread=1000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shipped_bundle_8_threads_x_50_calls(tmp_path: Path, backend: str) -> None:
    """The real network (shared input/output memory in OpenVINO): 8 threads × 50 calls."""
    if not (EXPORT / "bundle.json").is_file():
        pytest.fail(f"the shipped bundle is missing at {EXPORT}")
    predictor = Predictor.load(EXPORT, backend=backend, threads=1)
    _check(predictor, _cases(tmp_path / "films", 16), calls_per_thread=50)


def test_openvino_import_is_safe_from_many_threads() -> None:
    """Loading Predictors from several threads at once: every thread gets the whole module."""
    code = (
        "import threading\n"
        "from bmd_edge.runtime.backends import import_openvino\n"
        "got = []\n"
        "ts = [threading.Thread(target=lambda: got.append(import_openvino())) for _ in range(6)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert len(got) == 6 and len({id(m) for m in got}) == 1, got\n"
        "assert all(hasattr(m, 'Core') and hasattr(m, 'convert_model') for m in got)\n"
        "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def _borrow_once(pool: Any) -> object:
    with pool.request() as req:
        return req


def test_request_pool_lends_each_request_to_one_caller(tiny_bundle: Path) -> None:
    """A borrowed request is nobody else's until returned; a caller beyond the pool waits."""
    from contextlib import ExitStack

    from bmd_edge.runtime.backends import RequestPool

    compiled = Predictor.load(tiny_bundle, backend="openvino", threads=1).session._compiled
    pool = RequestPool(compiled, 2)
    with pool.request() as lone:
        pass
    with pool.request() as again:
        assert again is lone  # LIFO: a lone caller keeps its warm request
    got: list[object] = []
    with ExitStack() as stack:
        a = stack.enter_context(pool.request())
        b = stack.enter_context(pool.request())
        assert a is not b
        waiter = threading.Thread(target=lambda: got.append(_borrow_once(pool)))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and got == []  # both lent out: the third caller waits
    waiter.join(10)
    assert not waiter.is_alive() and got[0] in (a, b)
