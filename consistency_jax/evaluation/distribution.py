"""Sample-based distances between distributions of vectors (for the low-dimensional data sets).

The sliced Wasserstein-2 distance is a metric on distributions, is measured in the data's own
units, sees both where the modes are and how wide they are, and its sample estimate converges at
n^(-1/2) whatever the dimension; a second sample of the data gives its noise floor.
"""

import numpy as np


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, num_projections: int = 512, seed: int = 0) -> float:
    """SW_2(x, y) = sqrt(E_theta W_2^2(theta.x, theta.y)) over random unit directions theta.

    x and y are [n, d] samples of equal size n; in 1-D, W_2^2 between equal-size samples is the
    mean squared difference of their sorted values.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"Need two [n, d] samples of one shape, got {x.shape} and {y.shape}.")
    theta = np.random.default_rng(seed).standard_normal((x.shape[1], num_projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    px, py = np.sort(x @ theta, axis=0), np.sort(y @ theta, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))
