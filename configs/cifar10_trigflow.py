r"""The sCM paper's CIFAR-10 teacher: TrigFlow DDPM++ (positional time embedding, c_noise = t,
adaptive double normalization; sCM Sec. 4.1, App. G) trained with EDM's settings. Its loss is
EDM's, which for this network is the TrigFlow diffusion loss over sigma_d^2
(`core.parametrization.trigflow_network_as_edm`); it samples with the EDM solvers.

Run: python launch.py --config=configs/cifar10_trigflow.py --workdir=runs/cifar10_trigflow
then sCD / sCT from it with the student's network of the same kind:
    python launch.py --config=configs/cifar10_scd.py --workdir=runs/cifar10_scd \
        --config.objective.teacher_workdir=runs/cifar10_trigflow --config.network.name=ddpmpp \
        --config.model.scm_network=trigflow --config.network.unet.double_norm=True
Not yet run here; the sCM paper's teacher: FID 2.15 at 35 NFE.
"""

from configs import cifar10_edm


def get_config():
    c = cifar10_edm.get_config()
    c.network.name = "ddpmpp"  # 60.07M parameters (55.73M with EDM's added embedding, not double norm)
    c.network.embedding_type = "positional"
    c.network.unet.double_norm = True
    c.model.scm_network = "trigflow"
    return c
