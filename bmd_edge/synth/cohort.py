"""Synthetic subjects: clinical metadata like an older cohort and a femoral-neck BMD model.

No public cohort pairs hip radiographs with DXA femoral-neck (FN) BMD, so we draw one. The
numbers below are effect sizes from the literature, chosen so the cohort reproduces published
means, slopes and prevalences (benchmarks/cohort.py checks them):

- Age: 60–90, skewed to 65–80 (60 + 30·Beta(2.2, 3.0); median ≈ 72), ≈ 50 % women.
- Height/weight by sex: NHANES 2015–2018 anthropometry for adults ≥ 60 (Fryar et al., NCHS Vital
  Health Stat 3(46), 2021): women ≈ 160 ± 6.5 cm, men ≈ 174 ± 7 cm, BMI ≈ 28–29 ± 5 kg/m².
  Height shrinks ≈ 0.1 cm/year after 60. BMI is derived from the rounded height and weight.
- Smoking: never ≈ 50 %, former ≈ 35 %, current ≈ 15 % (older-adult surveys); men more often
  former smokers.
- Alcohol (UK units/week): ≈ 40 % of women and 25 % of men abstain; drinkers log-normal with a
  median of 4 (women) and 8 (men) units.
- Activity and diet scores 0–10 (a questionnaire rescaled; the schema's convention).
- age_bmd = age_xray + U(0, 1): the DXA scan within a year of the radiograph, as in the paper.

True FN BMD (g/cm², GE Lunar scale) = sex mean at 75 y, BMI 27
  + age slope (women −0.007, men −0.005 g/cm² per year; ≈ 0.6–0.9 %/year, cf. NHANES III FN
    cross-sections, Looker et al. Osteoporos Int 1998, and SOF/Dubbo longitudinal hip loss
    0.5–1 %/year, Ensrud et al. 1995, Jones et al. 1994)
  + BMI (+0.012 g/cm² per kg/m², saturating near 35 kg/m²; the BMI–BMD relation flattens in
    obesity, De Laet et al. Osteoporos Int 2005; Felson et al. JBMR 1993)
  + smoking (current −0.045 ≈ ⅓ SD, former −0.01; Ward & Klesges, Calcif Tissue Int 2001)
  + small activity/diet/alcohol effects (≤ 0.02 g/cm² across the range)
  + a large individual component (SD 0.115) that metadata cannot explain: peak bone mass is
    ≈ 60–80 % heritable, so a linear model on metadata reaches R² ≈ 0.3–0.45 only.
Women at 70–80 then average ≈ 0.815 g/cm² and men ≈ 0.93 (SD ≈ 0.12–0.13; Lunar FN references for
these ages give ≈ 0.78–0.88 and 0.88–0.98).
Information split (what the image can show vs what the fields add). True FN BMD is split into a
radiograph-visible part, from which the image is rendered (cortex thickness, trabecular volume
fraction and Singh grade all follow it), and a sub-resolution part `micro` the image does not
show: trabecular thinning/perforation and tissue mineralisation below the 0.15–0.9 mm pixels of a
hip radiograph, which auto-ranging and unknown soft tissue/kVp hide from the grey levels. Its SD
(0.045 g/cm², ≈ 5 %) is sized so that an oracle that knows every image latent explains R² ≈ 0.89
of the label — the best published radiograph-only model reaches R² 0.84 (5,164 hips), so the
information allows that but not the 0.99 of a world where the image encodes BMD exactly. Its mean
depends on the fields the way microarchitecture does: −0.0015 g/cm² per year of age (age-related
trabecular thinning and cortical porosity beyond areal loss; Khosla et al., JBMR 2006; Burghardt
et al., JBMR 2010 HR-pQCT), −0.010 in women (trabecular perforation vs thinning in men; Khosla
2006), −0.015 in current and −0.005 in former smokers (lower trabecular vBMD and cortical
thickness in smokers, Lorentzon et al., JBMR 2007). That is the clinical fields' own, physically
motivated contribution beyond the image (the late-fusion headroom in benchmarks/cohort.md).
The measured label is what a DXA scanner reports: true × (1 + N(0, 1.5 %)) — FN precision
(CV ≈ 1–2.5 %, ISCD 2019 official positions). `oracle.csv` keeps the true value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SMOKING = ("never", "former", "current")


@dataclass(frozen=True)
class BmdModel:
    """Coefficients of the true-BMD model; defaults are the cited effect sizes."""

    mean_f: float = 0.808          # women, age 75, BMI 27, never smoker (g/cm², Lunar FN)
    mean_m: float = 0.925          # men, same reference (≈ +0.11: men's FN BMD is higher)
    slope_f: float = -0.007        # g/cm² per year of age (women lose faster)
    slope_m: float = -0.005        # g/cm² per year of age (men)
    bmi_gain: float = 0.012        # g/cm² per kg/m² below the plateau (weight-bearing load)
    bmi_plateau: float = 35.0      # kg/m²; above this BMI adds little (fat is not load on bone)
    smoke_current: float = -0.045  # ≈ ⅓ SD lower in current smokers
    smoke_former: float = -0.010   # partly recovered after quitting
    activity_gain: float = 0.003   # per score point around 5: small, as in observational data
    diet_gain: float = 0.002       # per score point around 5 (calcium/vitamin D/protein proxy)
    individual_sd: float = 0.115   # unexplained by metadata: genetics, peak bone mass, history
    label_cv: float = 0.015        # DXA precision (coefficient of variation) of the label
    contralateral_sd: float = 0.03 # left vs right FN BMD differ a little (pelvis view)
    # The part of FN BMD a radiograph cannot show (see "information split" in the docstring).
    micro_sd: float = 0.045        # g/cm², unexplained by fields: ≈ 5 % of FN BMD
    micro_age: float = -0.0015     # per year around 75 (sub-resolution trabecular thinning)
    micro_female: float = -0.010   # women lose trabecular number (perforation), men thin
    micro_current: float = -0.015  # current smokers: lower trabecular/cortical vBMD
    micro_former: float = -0.005


@dataclass(frozen=True)
class Subject:
    """One synthetic person: what the manifest shows and what only the oracle knows."""

    index: int                     # case number; names files and seeds
    age_xray: float                # years, 1 decimal
    age_bmd: float                 # years, 1 decimal, ≥ age_xray
    sex: str                       # "F" | "M"
    height_cm: float
    weight_kg: float
    bmi: float                     # derived from the rounded height/weight
    alcohol_units_week: float
    activity_score: float
    diet_score: float
    smoking: str                   # never | former | current
    side: str                      # which hip the label (and a hip-view image) describes
    true_bmd: float                # g/cm²: the bone the image is rendered from
    other_bmd: float               # g/cm²: the contralateral hip (pelvis view)
    fn_bmd: float                  # g/cm²: the DXA-like measured label (3 decimals)
    label_noise: float             # fn_bmd − true_bmd
    individual: float              # the individual component (g/cm²), for the oracle
    micro: float = 0.0             # g/cm² of true BMD the radiograph cannot show
    visible_bmd: float = 0.0       # true_bmd − micro: what the image is rendered from
    other_visible_bmd: float = 0.0 # the same for the contralateral hip


def _smooth_min(x: float, cap: float, k: float = 1.5) -> float:
    """min(x, cap) with a soft knee of width ~k, so BMI effects saturate without a kink."""
    return cap - k * math.log1p(math.exp((cap - x) / k))


def expected_bmd(model: BmdModel, *, sex: str, age: float, bmi: float, smoking: str,
                 activity: float, diet: float, alcohol: float) -> float:
    """The metadata part of true FN BMD (everything but the individual component)."""
    female = sex == "F"
    mean = model.mean_f if female else model.mean_m
    slope = model.slope_f if female else model.slope_m
    bmd = mean + slope * (age - 75.0)
    bmd += model.bmi_gain * (_smooth_min(bmi, model.bmi_plateau) - 27.0)
    bmd += {"never": 0.0, "former": model.smoke_former, "current": model.smoke_current}[smoking]
    bmd += model.activity_gain * (activity - 5.0) + model.diet_gain * (diet - 5.0)
    # Moderate drinking is associated with slightly higher, heavy drinking with lower BMD
    # (Berg et al. Am J Med 2008): +0.01 up to 14 units/week, falling beyond 21.
    bmd += 0.01 * min(alcohol, 14.0) / 14.0 - 0.002 * max(alcohol - 21.0, 0.0)
    return bmd


def micro_component(model: BmdModel, *, sex: str, age: float, smoking: str) -> float:
    """Expected sub-resolution part of FN BMD given the fields (0 at 75 y, male, never smoker)."""
    out = model.micro_age * (age - 75.0) + (model.micro_female if sex == "F" else 0.0)
    return out + {"never": 0.0, "former": model.micro_former,
                  "current": model.micro_current}[smoking]


def sample_subject(rng: np.random.Generator, index: int,
                   model: BmdModel = BmdModel()) -> Subject:
    """Draw one person. All randomness comes from `rng`, so a case depends only on its seed."""
    sex = "F" if rng.random() < 0.5 else "M"
    female = sex == "F"
    age = 60.0 + 30.0 * rng.beta(2.2, 3.0)
    height = rng.normal(160.5 if female else 174.0, 6.5 if female else 7.0)
    height -= 0.1 * (age - 60.0)
    height = float(np.clip(height, 135.0, 205.0))
    bmi_draw = float(np.exp(rng.normal(math.log(28.0 if female else 28.3),
                                       0.19 if female else 0.15)))
    bmi_draw = float(np.clip(bmi_draw, 16.0, 55.0))
    height = round(height, 1)
    weight = round(bmi_draw * (height / 100.0) ** 2, 1)
    bmi = round(weight / (height / 100.0) ** 2, 1)

    p_smoke = (0.52, 0.33, 0.15) if female else (0.45, 0.40, 0.15)
    smoking = SMOKING[int(rng.choice(3, p=p_smoke))]
    if rng.random() < (0.40 if female else 0.25):
        alcohol = 0.0
    else:
        alcohol = float(np.exp(rng.normal(math.log(4.0 if female else 8.0), 0.8)))
    alcohol = round(min(alcohol, 80.0), 1)
    activity = round(float(np.clip(rng.normal(5.5 - 0.06 * (age - 70.0), 2.0), 0.0, 10.0)), 1)
    diet = round(float(np.clip(rng.normal(5.5, 2.0), 0.0, 10.0)), 1)
    age_xray = round(age, 1)
    age_bmd = round(age_xray + rng.uniform(0.0, 1.0), 1)

    base = expected_bmd(model, sex=sex, age=age_bmd, bmi=bmi, smoking=smoking,
                        activity=activity, diet=diet, alcohol=alcohol)
    individual = float(rng.normal(0.0, model.individual_sd))
    true_bmd = float(np.clip(base + individual, 0.35, 1.45))
    other_bmd = float(np.clip(true_bmd + rng.normal(0.0, model.contralateral_sd), 0.35, 1.45))
    label = round(true_bmd * (1.0 + rng.normal(0.0, model.label_cv)), 3)
    side = "left" if rng.random() < 0.5 else "right"
    micro = micro_component(model, sex=sex, age=age_bmd, smoking=smoking) \
        + float(rng.normal(0.0, model.micro_sd))
    return Subject(micro=micro, visible_bmd=true_bmd - micro, other_visible_bmd=other_bmd - micro,
                   index=index, age_xray=age_xray, age_bmd=age_bmd, sex=sex, height_cm=height,
                   weight_kg=weight, bmi=bmi, alcohol_units_week=alcohol,
                   activity_score=activity, diet_score=diet, smoking=smoking, side=side,
                   true_bmd=true_bmd, other_bmd=other_bmd, fn_bmd=label,
                   label_noise=label - true_bmd, individual=individual)
