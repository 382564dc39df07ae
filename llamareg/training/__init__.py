"""Training: objective, precision, checkpoints, validation and the training loop."""
