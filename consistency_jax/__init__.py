"""consistency_jax: consistency models (CD, CT, iCT) and their EDM teacher in JAX/Flax."""
