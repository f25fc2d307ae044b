"""Entry point: python launch.py --config=configs/X.py --workdir=DIR [--mode=train|sample|eval|edit].

`python launch.py --help` lists the flags and the shipped configs; the command is
consistency_jax/jobs/cli.py (also `python -m consistency_jax`, and `consistency-jax` once installed).
"""

from consistency_jax.jobs.cli import run

if __name__ == "__main__":
    run()
