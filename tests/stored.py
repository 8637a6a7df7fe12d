"""Tests' ways into the checkpoints a run store keeps in its database (no app imports: subprocesses use it)."""

import io

import torch

from charrnn.runs.checkpoint import serialized


def stored_checkpoint(store, run_id: str, epoch: int | None = None) -> dict:
    """A run's checkpoint dict of `epoch` (its newest by default), read from the store's database."""
    epoch = store.last_checkpoint(run_id)["epoch"] if epoch is None else epoch
    return torch.load(io.BytesIO(store.checkpoint_bytes(run_id, epoch)), weights_only=True)


def put_checkpoint(store, run_id: str, epoch: int, ckpt: dict) -> None:
    """Write a checkpoint dict into the store as the run's `epoch` (a test's way of changing one)."""
    store.add_checkpoint(run_id, epoch, serialized(ckpt))
