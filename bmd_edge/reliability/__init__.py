"""Reliability: does this case look like the training data, and how wide must its interval be?

Two parts, both calibrated at bundle build time and applied by the runtime (torch-free):
- `quality` + `scorer`: a per-prediction shift score from the model's own embedding and simple
  image-quality statistics, each a Mahalanobis distance to the training crops' statistics;
  past a calibrated threshold the result is flagged (interval widened), past a second refused.
- `mondrian`: split-conformal half-widths per sex × predicted-BMD tertile × view cell, so the
  90 % interval holds in each cell, not only on average.
`section` is the typed bundle.json section; `fit` builds it from arrays (scikit-learn, build
time only). Policy: RELIABILITY.md §12 "Shift detection and conditional intervals".
"""
