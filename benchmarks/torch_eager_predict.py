"""The PyTorch-eager baseline for `bmd-edge predict`: the same job as one plain script.

    .venv/bin/python benchmarks/torch_eager_predict.py FILM.png --locator RUN/best.pt --bundle DIR

Read the film → locate the hips with the locator network in torch eager → canonical crop (or,
for a bundle without a crop spec, the pixel-oriented whole-film preprocessing the runtime uses)
→ the BMD network in torch eager → print one JSON line. This is what a researcher would run
without bmd-edge's runtime, so `benchmarks/predict_latency.py` times it as a whole process
beside `bmd-edge predict` in the same run (#15: predict ≥ 3× faster).

The BMD weights: `--checkpoint` when given; else the bundle's architecture with freshly
initialised weights — the shipped bundle carries no torch checkpoint, and eager time does not
depend on the weight values (the printed BMD is then meaningless and says so).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

T0 = time.perf_counter()

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("film", type=Path)
    ap.add_argument("--locator", type=Path, required=True, help="locator training run's best.pt")
    ap.add_argument("--bundle", type=Path, required=True, help="bundle whose architecture to run")
    ap.add_argument("--checkpoint", type=Path, default=None, help="BMD torch checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from bmd_edge.image_io import read_image
    from bmd_edge.locate.decode import decode
    from bmd_edge.locate.letterbox import letterbox
    from bmd_edge.locate.model import LocatorNet, LocatorNetConfig
    from bmd_edge.locate.spec import LocatorSpec
    from bmd_edge.model import ModelConfig, build_model
    from bmd_edge.preprocess import PreprocessSpec, preprocess
    from bmd_edge.schema import encode, parse_record

    meta = json.loads((a.bundle / "bundle.json").read_text(encoding="utf-8"))
    ck = torch.load(a.locator, map_location="cpu", weights_only=True)
    spec = LocatorSpec.from_dict(ck["spec"])
    net = LocatorNet(LocatorNetConfig(**ck["net"]))
    net.load_state_dict(ck["model"])
    net.eval()
    if a.checkpoint is not None:
        from bmd_edge.model.checkpoint import load_checkpoint

        model, _ = load_checkpoint(a.checkpoint)
    else:
        model = build_model(ModelConfig.from_dict(meta["model"]["config"]))
    model.eval()

    pixels = read_image(a.film).pixels
    x, box = letterbox(pixels, spec)
    with torch.no_grad():
        heat, geom, is_hip = net(torch.from_numpy(x))
    found = decode(heat[0].numpy(), geom[0].numpy(), is_hip.numpy(), box, spec, 0.3)
    crop_meta = meta["input"].get("crop")
    inputs = []
    for hip in found.hips:
        if crop_meta:
            from bmd_edge.locate.crop import CropSpec, canonical_crop, model_input

            cs = CropSpec.from_dict(crop_meta)
            inputs.append(model_input(canonical_crop(pixels, hip, cs), cs))
        else:
            pspec = PreprocessSpec.from_dict(meta["input"]["preprocess"])
            side = hip.side_if_standard
            inputs.append(np.asarray(preprocess(pixels, pspec, side=side,
                                                select=side if len(found.hips) > 1 else None),
                                     np.float32))
    v, m = encode(parse_record({"age_xray": 72, "age_bmd": 72, "sex": "F"}), meta["input"]["schema"])
    with torch.no_grad():
        bmd = [float(model(torch.from_numpy(np.asarray(i, np.float32)[None]),
                           torch.from_numpy(v[None]), torch.from_numpy(m[None]))[0][0])
               for i in inputs]
    print(json.dumps({"hips": len(inputs), "bmd_gcm2": bmd, "trained_weights": a.checkpoint is not None,
                      "is_hip_score": float(found.is_hip_score),
                      "seconds_in_script": time.perf_counter() - T0}))


if __name__ == "__main__":
    main()
