"""Training machinery: objectives from a config, the train state and its pure step, the device
mesh, checkpoints and the metrics log."""
