"""Class-conditional EDM teacher on the embedded 8x8 digits, with label dropout for
classifier-free guidance (D_w = D_uncond + w (D_cond - D_uncond); w = 1 conditional).

Run: python launch.py --config=configs/digits_edm_cond.py --workdir=runs/digits/edm_cond
3000 steps as digits_edm.py; samples and the eval at w = 1, 2, 4 (one column of
samples/classes.png each, eval/tradeoff.png). Result, one run cut to 1000 steps, 2000 eval samples:
Frechet 0.606 / 6.54 / 23.1 and class accuracy 0.948 / 1.000 / 1.000 at w = 1 / 2 / 4
(docs/results.md#guidance).
"""

from configs.digits_edm import get_config as edm_config


def get_config():
    c = edm_config()
    c.data.conditional = True
    c.objective.label_dropout = 0.1  # CFG (Ho & Salimans 2022): p_uncond 0.1-0.2
    c.sample.guidance = (1.0, 2.0, 4.0)
    return c
