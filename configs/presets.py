"""The end-to-end presets of pipeline.py: stage -> config. The EDM stages are the teachers (edm,
and edm_cond: conditional, with label dropout); a student distils the one whose data.conditional
is its own (lcm: edm_cond) in its own space (latent_cd: latent_edm, latent_lcm: latent_edm_cond, in
the latents of the autoencoder stage)."""

from configs import (
    digits_autoencoder,
    digits_cd,
    digits_ect,
    digits_edm,
    digits_edm_cond,
    digits_ict,
    digits_latent_cd,
    digits_latent_edm,
    digits_latent_edm_cond,
    digits_latent_ict,
    digits_latent_lcm,
    digits_lcm,
    digits_meanflow,
    digits_scd,
    digits_scd_dmd,
    digits_sct,
    toy_cd,
    toy_ct,
    toy_ect,
    toy_edm,
    toy_ict,
    toy_meanflow,
    toy_scd,
    toy_sct,
)

PRESETS = {
    "toy": {
        "edm": toy_edm.get_config, "cd": toy_cd.get_config, "ct": toy_ct.get_config,
        "ict": toy_ict.get_config, "ect": toy_ect.get_config, "sct": toy_sct.get_config,
        "scd": toy_scd.get_config, "meanflow": toy_meanflow.get_config,
    },
    "digits": {
        "edm": digits_edm.get_config, "cd": digits_cd.get_config, "ict": digits_ict.get_config,
        "ect": digits_ect.get_config, "sct": digits_sct.get_config, "scd": digits_scd.get_config,
        "scd_dmd": digits_scd_dmd.get_config, "meanflow": digits_meanflow.get_config,
        "edm_cond": digits_edm_cond.get_config, "lcm": digits_lcm.get_config,
        # latent stages: in the latents of the autoencoder stage, which trains first
        "autoencoder": digits_autoencoder.get_config, "latent_edm": digits_latent_edm.get_config,
        "latent_cd": digits_latent_cd.get_config, "latent_ict": digits_latent_ict.get_config,
        "latent_edm_cond": digits_latent_edm_cond.get_config, "latent_lcm": digits_latent_lcm.get_config,
    },
}
DEFAULT_STAGES = ("edm", "cd", "ict")
