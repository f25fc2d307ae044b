"""python -m consistency_jax: the command line of launch.py (consistency_jax/jobs/cli.py)."""

from consistency_jax.jobs.cli import run

run()
