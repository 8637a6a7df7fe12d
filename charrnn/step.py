"""One training step of the book's `train_epoch_ch8` (D2L 8.5.5): forward, mean cross-entropy, backward, gradient
clipping by global norm, and the update (the book's SGD, or AdamW), with no host sync, and on CUDA captured once
as a CUDA graph."""

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from charrnn.models.cuda_graph import CudaGraphStep

if TYPE_CHECKING:  # charrnn.train runs the steps; only its config's type is named here
    from charrnn.train import TrainConfig


def clip_gradients(grads: list[torch.Tensor], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's `grad_clipping`: if the global L2 norm exceeds theta, scale all by theta / norm.

    Done without a host sync: the scale is min(1, theta / norm), and multiplying by exactly 1
    leaves a gradient unchanged. Returns (norm before clipping, whether it clipped) as tensors.
    """
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if theta <= 0:
        return norm, torch.zeros((), device=norm.device)
    scale = torch.clamp(theta / norm, max=1.0)
    torch._foreach_mul_(grads, scale)
    return norm, (norm > theta).float()


class Trainer:
    """One training step at a time over one model; keeps the epoch's sums on the device.

    On CUDA the step is captured once as a CUDA graph and replayed (see `CudaGraphStep`); minibatches
    of another shape, and every step after a failed capture, run the same step eagerly.
    `cuda_graph=False` always runs it eagerly (the graph test compares the two).
    """

    def __init__(self, model: nn.Module, config: "TrainConfig", cuda_graph: bool = True, optimizer_state=None):
        self.model, self.config = model, config
        self.lr = config.lr  # the step's learning rate: config.lr, or where `set_lr` put it (a schedule)
        self.params = list(model.parameters())
        on_cuda = self.params[0].device.type == "cuda"
        self.adam = None
        if config.optimizer == "adam":  # capturable: its step counter stays on the device, as a CUDA graph needs
            self.adam = torch.optim.AdamW(
                self.params, lr=config.lr, weight_decay=config.weight_decay, foreach=True, capturable=on_cuda
            )
            if optimizer_state:
                try:
                    self.adam.load_state_dict(optimizer_state)
                except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
                    raise ValueError(
                        f"the checkpoint's optimizer state does not fit this model ({type(e).__name__}); "
                        "train again instead"
                    ) from e
        # A captured graph keeps the lr it was captured with: a schedule runs the step eagerly.
        fixed_lr = config.lr_schedule == "constant"
        self.graph = CudaGraphStep(self.eager_step) if cuda_graph and on_cuda and fixed_lr else None

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next steps (a schedule's)."""
        self.lr = lr
        if self.adam is not None:
            for group in self.adam.param_groups:
                group["lr"] = lr

    def optimizer_state(self) -> dict | None:
        """What a resumed run needs to continue the update exactly (Adam's moments); None for SGD."""
        return self.adam.state_dict() if self.adam is not None else None

    def step(self, X: torch.Tensor, Y: torch.Tensor, state):
        """One minibatch: forward, mean cross-entropy, backward, clip, SGD.

        Returns (loss, grad norm before clipping, clipped flag, new state), all device tensors.
        """
        if self.graph is not None:
            out = self.graph(X, Y, state)
            if out is not None:
                return out
        return self.eager_step(X, Y, state)

    def eager_step(self, X: torch.Tensor, Y: torch.Tensor, state):
        logits, state = self.model(X, state)
        y = Y.t().reshape(-1)  # time-major, to match the logits' rows
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, self.params)
        norm, clipped = clip_gradients(list(grads), self.config.clip)
        with torch.no_grad():
            if self.adam is not None:
                for p, g in zip(self.params, grads, strict=True):
                    p.grad = g
                self.adam.step()
            else:
                if self.config.weight_decay > 0:  # L2: the gradient of wd/2 ||p||^2, after clipping as torch's SGD
                    torch._foreach_add_(grads, self.params, alpha=self.config.weight_decay)
                torch._foreach_add_(self.params, grads, alpha=-self.lr)
        return loss.detach(), norm, clipped, state
