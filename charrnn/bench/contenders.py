"""The three contenders `python -m charrnn bench` times for a cell; each maker returns
`step(X, Y, state) -> (loss, state)`, with `state` None on the first minibatch.

- book: the book's loop written literally (`charrnn.bench.book`: 8.5's `rnn`, 9.1's `gru`, 9.2's `lstm`);
- scratch: `charrnn.train.Trainer.step` over `make_model(ModelConfig(V, H, "scratch", cell))`, exactly as
  `train` (CLI and app) uses it;
- nn: the book's concise model (8.6, 9.1, 9.2): `ConciseModel` (one-hot into `nn.RNN` / `nn.GRU` /
  `nn.LSTM`, one layer, and a Linear head) under the same Trainer, so the two differ only in the model.
On CUDA the Trainer captures its step as a CUDA graph unless `cuda_graph` is False (`bench --eager`).
"""

import torch

from charrnn.bench.book import book_step
from charrnn.models import detach_state, make_model
from charrnn.step import Trainer
from charrnn.train import TrainConfig

CONTENDERS = ("book", "scratch", "nn")
NN_NAMES = {"rnn": "nn.RNN", "gru": "nn.GRU", "lstm": "nn.LSTM"}


def label(name: str, cell: str) -> str:
    """A contender's name in the table: nn is the torch module it runs."""
    return NN_NAMES[cell] if name == "nn" else name


def trainer_step(kind: str, cell: str, V: int, H: int, device, cuda_graph: bool = True):
    """`Trainer.step` as `train` calls it, with the epoch sums kept on the device (the host never waits)."""
    config = TrainConfig(num_hiddens=H, model=kind, cell=cell)
    model = make_model(config.model_config(V), generator=torch.Generator().manual_seed(0)).to(device)
    trainer = Trainer(model, config, cuda_graph=cuda_graph)
    sums = torch.zeros(3, device=device)

    def step(X, Y, state):
        state = detach_state(state) if state else model.begin_state(X.shape[0], device)
        loss, norm, clipped, state = trainer.step(X, Y, state)
        sums.add_(torch.stack([loss * Y.numel(), norm, clipped]))
        return loss, state

    step.params = trainer.params  # the scratch model's are in the book's order (get_params)
    return step


def scratch_step(cell: str, V: int, H: int, device, cuda_graph: bool = True):
    return trainer_step("scratch", cell, V, H, device, cuda_graph)


def nn_step(cell: str, V: int, H: int, device, cuda_graph: bool = True):
    return trainer_step("concise", cell, V, H, device, cuda_graph)


MAKERS = {"book": book_step, "scratch": scratch_step, "nn": nn_step}
