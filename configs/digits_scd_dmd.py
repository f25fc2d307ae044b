r"""sCD with rCM's DMD term (Zheng et al. 2025, arXiv 2510.08431): configs/digits_scd.py plus a
distribution-matching regulariser, its fake score trained beside the student.

Run: python launch.py --config=configs/digits_scd_dmd.py --workdir=runs/digits/scd_dmd \
         --config.objective.teacher_workdir=runs/digits/edm
CD's budget (4000 steps at batch 64); the DMD term is on after the 1000-step tangent warm-up.
Measured (weights 3, 10, 50; the one step over seeds): docs/results.md#scd-with-rcms-dmd-term.
"""

from configs import digits_scd


def get_config():
    c = digits_scd.get_config()
    c.objective.dmd_weight = 10.0
    return c
