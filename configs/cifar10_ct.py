"""Original consistency training on CIFAR-10 (CM paper CT-LPIPS): s0 2, s1 150, mu0 0.9, LPIPS."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "cifar10"
    c.data.batch_size = 512
    c.data.random_flip = True
    c.network.name = "ncsnpp"
    c.network.dropout = 0.0
    c.objective.name = "ct"
    c.objective.distance = "lpips"
    c.objective.s0 = 2
    c.objective.s1 = 150
    c.objective.mu0 = 0.9
    c.optim.name = "radam"
    c.optim.lr = 4e-4
    c.train.num_steps = 800_000
    c.train.ema_rate = 0.9999
    c.train.log_every = 500
    c.train.ckpt_every = 10_000
    c.train.sample_every = 50_000
    c.sample.num_samples = 1024
    c.sample.batch_size = 256
    c.sample.multistep_sigmas = (0.821,)
    return c
