"""MeanFlow on CIFAR-10 with py-meanflow's paper settings (scripts/cifar10_v0.sh), from scratch.

Run: python launch.py --config=configs/cifar10_meanflow.py --workdir=runs/cifar10_meanflow
Batch 1024, lr 6e-4 with a 200-epoch warm-up, 16,000 epochs (781k steps), dropout 0.2, EMA 0.9999.
Differences: this project's DDPM++ (py-meanflow's SongUNet has channel_mult_noise 2 and the
(1, 3, 3, 1) resampling filter), the two times' embeddings summed rather than concatenated, and
horizontal flips in place of EDM's augmentation. Not yet run here; the paper's 1-NFE FID 2.92
(as quoted second-hand, not checked against the paper's table).
"""

from configs.cifar10 import base_config
from configs.recipes import meanflow_objective


def get_config():
    c = base_config()
    meanflow_objective(c)
    c.data.batch_size = 1024
    c.network.name = "ddpmpp"
    c.network.dropout = 0.2
    c.optim.lr = 6e-4
    c.optim.warmup_steps = 9766  # 200 epochs of 50k images at batch 1024
    c.train.num_steps = 781_250  # 16,000 epochs
    c.train.ema_rate = 0.9999
    return c
