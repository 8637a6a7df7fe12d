"""Choosing the device: `auto` takes CUDA when there is one, an explicit choice is honoured or refused."""

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' to a torch.device; raises ValueError naming the fix."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but this machine has no CUDA GPU; use 'auto' or 'cpu'")
        device = torch.device("cuda:0" if name == "cuda" else name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {name!r}")


def describe(device: torch.device) -> str:
    """A human name: the GPU's model, or 'CPU (N threads)'."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"CPU ({torch.get_num_threads()} threads)"


def free_bytes(device: torch.device) -> int:
    """Memory a new allocation can use now: free GPU memory, or the OS's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
