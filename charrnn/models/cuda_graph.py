"""The whole training step captured once as a CUDA graph and replayed (used by `Trainer` on CUDA)."""

import warnings

import torch


class CudaGraphStep:
    """A whole train step (forward, loss, backward, clip, SGD) captured as one CUDA graph and replayed.

    Replaying a graph launches the step's hundreds of small kernels with one call, which is what
    limits a 32 x 512 RNN on a GPU. The graph reads its inputs from static buffers and updates the
    parameters in place, so every replay is exactly the eager step on the data copied in.
    - The first `WARMUP` calls are ordinary (eager) training steps run on a side stream, as PyTorch's
      CUDA-graph docs require before capture, so that lazy initialisation (cuBLAS handles and
      workspaces, autograd's streams) happens outside the capture.
    - The next call captures the step on static buffers; capturing runs nothing, so it then replays.
    - The graph holds for the shapes it was captured with: a call with other shapes returns None and
      the caller runs the eager step; so does every call after a capture that failed.
    Outputs are cloned after each replay so that they survive the next one.
    """

    WARMUP = 3

    def __init__(self, step_fn):
        self.step_fn = step_fn
        self.key = None  # shapes and dtypes the graph is for
        self.warmed = 0
        self.graph = None
        self.failed = False
        self.replays = 0

    def __call__(self, X, Y, state):
        key = (X.shape, X.dtype, Y.shape, Y.dtype, tuple((s.shape, s.dtype) for s in state))
        self.key = self.key or key
        if self.failed or key != self.key:
            return None
        if self.graph is None and self.warmed < self.WARMUP:
            self.warmed += 1
            return self._side_stream_step(X, Y, state)
        if self.graph is None and not self._capture(X, Y, state):
            return None
        self.static_X.copy_(X)
        self.static_Y.copy_(Y)
        for buffer, s in zip(self.static_state, state, strict=True):
            buffer.copy_(s)
        self.graph.replay()
        self.replays += 1
        loss, norm, clipped = self.static_stats.clone()
        return loss, norm, clipped, tuple(s.clone() for s in self.static_out_state)

    def _side_stream_step(self, X, Y, state):
        side = torch.cuda.Stream(X.device)
        side.wait_stream(torch.cuda.current_stream(X.device))
        with torch.cuda.stream(side):
            out = self.step_fn(X, Y, state)
        torch.cuda.current_stream(X.device).wait_stream(side)
        return out

    def _capture(self, X, Y, state) -> bool:
        self.static_X, self.static_Y = X.clone(), Y.clone()
        self.static_state = tuple(s.clone() for s in state)
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: other threads (the app's UI) may use the GPU while this one captures.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                loss, norm, clipped, out_state = self.step_fn(self.static_X, self.static_Y, self.static_state)
                self.static_stats = torch.stack([loss, norm, clipped])
        except RuntimeError as e:  # an op that cannot be captured: keep training eagerly
            warnings.warn(f"CUDA graph capture of the train step failed; running it eagerly ({e})", stacklevel=3)
            self.failed = True
            return False
        self.graph, self.static_out_state = graph, out_state
        return True
