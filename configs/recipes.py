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


def scm_objective(c: ml_collections.ConfigDict, name: str) -> None:
    """sCT (`name='sct'`) or sCD (`'scd'`): TrigFlow time t = arctan(e^tau / sigma_d) with
    tau ~ N(-1.0, 1.4^2), the tangent warmed up over 10k steps and normalised with c = 0.1, the
    adaptive weighting w_phi(t) (network.logvar_head) without FastGen's prior 1/sigma (worse on the
    digits, docs/results.md#scm), target = sg(online), RAdam with beta2 0.99; the student is the
    EDM teacher's network, started from it (sCM App. G)."""
    o = c.objective
    o.name = name
    o.p_mean = -1.0
    o.p_std = 1.4
    o.tangent_warmup_steps = 10_000
    o.tangent_c = 0.1
    o.prior_weighting = False
    o.init_from_teacher = True
    c.model.scm_network = "edm"
    c.network.logvar_head = True
    c.optim.name = "radam"
    c.optim.b2 = 0.99
    c.sample.trigflow_steps = (1.1,)


def meanflow_objective(c: ml_collections.ConfigDict) -> None:
    """MeanFlow from data alone (py-meanflow's CIFAR-10 v0): (t, r) logit-normal (-2.0, 2.0) with
    r = t for a quarter of the batch, adaptive weight power 0.75 with eps 1e-3, Adam (0.9, 0.999),
    one step z_0 = e - u(e, 1, 0), two steps through t = 0.5."""
    o = c.objective
    o.name = "meanflow"
    o.p_mean = -2.0
    o.p_std = 2.0
    o.meanflow_equal_fraction = 0.25
    o.meanflow_norm_p = 0.75
    o.meanflow_norm_eps = 1e-3
    o.init_from_teacher = False
    c.optim.name = "adam"
    c.sample.meanflow_steps = (0.5,)
