"""Retrains the shipped digits classifier (`consistency_jax.networks.pretrained.digits`)
deterministically: python -m consistency_jax.evaluation.digits_classifier rewrites its weights."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from sklearn.model_selection import train_test_split

from consistency_jax.data.images import digits_source
from consistency_jax.networks.pretrained.digits import DIGITS_WEIGHTS, DigitsClassifier, accuracy

SEED = 0
HELDOUT_FRACTION = 0.2
_TRAIN = dict(steps=4000, batch_size=128, learning_rate=1e-3, weight_decay=1e-4)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, held-out images, held-out labels): a stratified split of the
    1797 digits exactly as the data pipeline serves them, uint8 [N, 8, 8, 1] in 0..255."""
    source = digits_source(image_size=0)
    digits = source[np.arange(len(source))]
    x_train, x_test, y_train, y_test = train_test_split(
        digits["image"],
        digits["label"],
        test_size=HELDOUT_FRACTION,
        random_state=SEED,
        stratify=digits["label"],
    )
    return x_train, y_train, x_test, y_test


def train_digits_classifier(
    steps: int, batch_size: int, learning_rate: float, weight_decay: float
) -> dict:
    """Parameters trained with AdamW on the training split, cross-entropy, seeded batches."""
    x_train, y_train, _, _ = digits_split()
    model = DigitsClassifier()
    key = jax.random.key(SEED)
    params = model.init(key, jnp.asarray(x_train[:1]))["params"]
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, images, labels):
        def loss_fn(p):
            _, logits = model.apply({"params": p}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(SEED)
    for _ in range(steps):
        idx = rng.choice(len(x_train), batch_size, replace=False)
        params, opt_state = step(params, opt_state, x_train[idx], y_train[idx])
    return params


def save_params(path: str | os.PathLike, params: dict) -> None:
    """Write `params` as a compressed `.npz` of float32 arrays named by their '/'-joined paths."""
    flat = traverse_util.flatten_dict(params, sep="/")
    np.savez_compressed(path, **{k: np.asarray(v, np.float32) for k, v in flat.items()})


def main() -> None:
    params = train_digits_classifier(**_TRAIN)
    DIGITS_WEIGHTS.parent.mkdir(exist_ok=True)
    save_params(DIGITS_WEIGHTS, params)
    x_train, y_train, x_test, y_test = digits_split()
    train, held_out = accuracy(params, x_train, y_train), accuracy(params, x_test, y_test)
    print(
        f"wrote {DIGITS_WEIGHTS} ({DIGITS_WEIGHTS.stat().st_size} bytes): "
        f"accuracy train {train:.4f}, held-out {held_out:.4f}"
    )


if __name__ == "__main__":
    main()
