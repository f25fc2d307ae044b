r"""sCD with rCM's DMD term (Zheng et al. 2025, arXiv 2510.08431): configs/digits_scd.py plus a
distribution-matching regulariser, its fake score trained beside the student.

Run: python launch.py --config=configs/digits_scd_dmd.py --workdir=runs/digits/scd_dmd \
         --config.objective.teacher_workdir=runs/digits/edm
CD's budget (4000 steps at batch 64; 28 min each on a 2-core CPU, three at once); the DMD term is
on after the 1000-step tangent warm-up. Over training seeds 0-2 the one step scored 0.555 [0.505,
0.626], 1.23x the teacher's (weight 10: 1.46x; plain sCD 2.11x, CD 1.50x), two steps 1.75x
(docs/results.md#scd-with-rcms-dmd-term).
"""

from configs import digits_scd


def get_config():
    c = digits_scd.get_config()
    c.objective.dmd_weight = 20.0
    return c
