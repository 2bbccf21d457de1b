"""The one-page PNG for a person: what the model saw, where the BMD sits, what weighed most.

Three panels: (1) the radiograph with every located femoral head (circle) and femoral-neck ROI
(box) drawn on it and labelled with the hip's side and BMD — or, when nothing was located, the
preprocessed input exactly as the model received it, (2) the BMD on
a T-score scale with the WHO bands, the prediction interval and the 0.899 g/cm² screening line,
(3) field-attention bars for the clinical facts that were given. matplotlib is optional (the
[plot] extra) and imported only here, with the Agg backend (no display needed). No patient
identifiers are drawn unless the caller passes them explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bmd_edge import references as refs_mod
from bmd_edge.errors import DependencyError, InputError

_BANDS = (("osteoporosis", -5.0, -2.5, "#d9534f"), ("osteopenia", -2.5, -1.0, "#f0ad4e"),
          ("normal", -1.0, 3.0, "#5cb85c"))


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyError("--report needs matplotlib; run `pip install bmd-edge[plot]`") from None
    return plt


def _draw_located(ax: Any, film: np.ndarray, hips: list[Any]) -> None:
    """The film with each located head (circle), neck ROI (rotated box) and its BMD."""
    import matplotlib.patches as mpatches

    step = max(1, max(film.shape) // 1024)   # a 3000-px film is drawn from a 1024-px view
    ax.imshow(film[::step, ::step], cmap="gray", extent=(-0.5, film.shape[1] - 0.5,
                                                          film.shape[0] - 0.5, -0.5))
    for h in hips:
        f = h.found
        ax.add_patch(mpatches.Circle(f.head_xy, f.head_r, fill=False, color="#00d0ff", lw=1.2))
        a = np.radians(f.roi_angle_deg)
        along, across = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        corner = (np.asarray(f.roi_xy) - along * f.roi_len / 2 - across * f.roi_width / 2)
        ax.add_patch(mpatches.Rectangle(tuple(corner), f.roi_len, f.roi_width,
                                        angle=float(f.roi_angle_deg), fill=False,
                                        color="#ffb000", lw=1.2))
        crop = getattr(h, "crop", None)
        if crop is not None and hasattr(crop, "film_corners"):   # the region the model read
            ax.add_patch(mpatches.Polygon(crop.film_corners(), closed=True, fill=False,
                                          color="#7CFC00", lw=0.8, ls="--"))
        ax.text(f.head_xy[0], f.head_xy[1] - 1.6 * f.head_r,
                f"{h.hip or '?'}: {h.bmd_gcm2:.3f}", color="white", fontsize=7, ha="center",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})
    ax.set_title("located hip(s): head ○, neck ROI □", fontsize=9)


def write_report(prediction: Any, image: np.ndarray, out: str | Path, *,
                 references: Mapping[str, Any] | None = None,
                 patient_ids: Mapping[str, str] | None = None,
                 film: np.ndarray | None = None) -> Path:
    """Draw the report for `prediction` with its preprocessed `image` (1,S,S or S,S) to `out`;
    `film` (the read radiograph, H×W) is drawn with the located hips when they were located."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InputError(f"--report {out.name} must end in .png")
    plt = _pyplot()
    img = np.asarray(image, np.float32).reshape(image.shape[-2:])
    p = prediction
    fig = plt.figure(figsize=(11, 4.2), dpi=110)
    gs = fig.add_gridspec(1, 3, width_ratios=(1.0, 1.5, 1.2), wspace=0.35)

    ax = fig.add_subplot(gs[0])
    located = [h for h in getattr(p, "hips", ()) if h.found is not None]
    if film is not None and located:
        _draw_located(ax, np.asarray(film, np.float32), located)
    else:
        ax.imshow(img, cmap="gray")
        ax.set_title("model input (preprocessed)", fontsize=9)
    ax.axis("off")

    ax = fig.add_subplot(gs[1])
    t_lo, t_hi = -5.0, 3.0
    for name, lo, hi, colour in _BANDS:
        ax.axvspan(lo, hi, color=colour, alpha=0.25, lw=0)
        ax.text((lo + hi) / 2, 0.9, name, ha="center", va="center", fontsize=8)
    t = float(np.clip(p.t_score, t_lo, t_hi))
    if p.interval is not None:
        lo_t = refs_mod.t_score(p.interval[0], references)
        hi_t = refs_mod.t_score(p.interval[1], references)
        ax.errorbar([t], [0.5], xerr=[[t - max(lo_t, t_lo)], [min(hi_t, t_hi) - t]], fmt="o",
                    color="black", capsize=6, lw=2)
        ax.text(t, 0.3, f"{p.interval[2]:.0%} interval\n{p.interval[0]:.3f}–{p.interval[1]:.3f}",
                ha="center", fontsize=7)
    else:
        ax.plot([t], [0.5], "o", color="black")
    thr_t = refs_mod.t_score(p.threshold_gcm2, references)
    ax.axvline(thr_t, color="black", ls="--", lw=1)
    ax.text(thr_t, 0.06, f" screen {p.threshold_gcm2} g/cm²", fontsize=7)
    ax.set_xlim(t_lo, t_hi)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("T-score")
    ax.set_title(f"FN BMD {p.bmd_gcm2:.3f} g/cm² · T {p.t_score:+.1f} · {p.who_category}",
                 fontsize=9)
    tab = (references or refs_mod.default_references())["t_score"]
    mu, sd = float(tab["mean_gcm2"]), float(tab["sd_gcm2"])
    sec = ax.secondary_xaxis("top", functions=(lambda x: mu + np.asarray(x) * sd,
                                               lambda b: (np.asarray(b) - mu) / sd))
    sec.set_xlabel("g/cm² (GE Lunar)", fontsize=8)
    sec.tick_params(labelsize=7)

    ax = fig.add_subplot(gs[2])
    att = list(p.field_attention)[:8][::-1]
    if att:
        ax.barh([n for n, _ in att], [w for _, w in att], color="#337ab7")
        ax.tick_params(labelsize=8)
    ax.set_title("clinical fields the model weighed most", fontsize=9)
    ax.set_xlabel("attention weight", fontsize=8)

    if getattr(p, "flagged", False):  # the shift flag is on the picture, not only in logs
        fig.text(0.5, 0.97, f"FLAGGED: image unlike the training data (shift score "
                 f"{p.shift_score:.2f}); interval widened; check the acquisition",
                 ha="center", fontsize=9, color="#b00000", weight="bold")
    foot = f"{p.model_name} {p.model_version} ({p.backend}, {p.precision}). {p.intended_use}"
    shown = [str(w) for w in p.warnings[:4]]          # --force, no locator, side conflicts...
    if shown:
        more = f" (+{len(p.warnings) - 4} more)" if len(p.warnings) > 4 else ""
        foot = "\n".join(f"warning: {w[:170]}" for w in shown) + more + "\n" + foot
    if patient_ids:
        foot = "; ".join(f"{k}: {v}" for k, v in sorted(patient_ids.items())) + "\n" + foot
    fig.text(0.01, 0.0, foot, fontsize=7, wrap=True, va="top")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return out
