"""Hyperparameter search on Optuna: the space, the checked plan a worker takes, the study and where it lives, one
worker's trials, and K same-shape trials trained batched."""
