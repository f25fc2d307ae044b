"""Shared fixtures: run everything on CPU in float32."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
