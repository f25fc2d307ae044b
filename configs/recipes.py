"""Objective recipes shared by the configs of every data set."""

import ml_collections


def ict_objective(c: ml_collections.ConfigDict) -> None:
    """iCT: pseudo-Huber (c = 0.00054 sqrt(d)), lambda = 1/(sigma_{i+1} - sigma_i), lognormal
    index (-1.1, 2.0), N from 10 doubling to 1280, target = sg(online), RAdam."""
    o = c.objective
    o.name = "ict"
    o.distance = "pseudo_huber"
    o.weighting = "ict"
    o.p_mean = -1.1
    o.p_std = 2.0
    o.s0 = 10
    o.s1 = 1280
    c.optim.name = "radam"


def ect_objective(c: ml_collections.ConfigDict) -> None:
    """ECT: iCT's pseudo-Huber and weighting 1/(t - r) on a continuous pair, ln t ~ N(-1.1, 2.0),
    r from ECT's mapping, target = sg(online), RAdam; started from the teacher in
    objective.teacher_workdir (ECT's diffusion pretraining)."""
    o = c.objective
    o.name = "ect"
    o.distance = "pseudo_huber"
    o.weighting = "ict"
    o.p_mean = -1.1
    o.p_std = 2.0
    o.init_from_teacher = True
    c.optim.name = "radam"
