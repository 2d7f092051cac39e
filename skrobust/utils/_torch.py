"""Small helpers between numpy and torch, shared by every estimator."""

from contextlib import contextmanager

import numpy as np
import torch


def resolve_device(device):
    """Return a :class:`torch.device` for ``device``.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a device object.

    Returns
    -------
    torch.device
    """
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'cpu', 'cuda' or "
            "'cuda:<index>'."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available; "
            "use device='cpu'."
        )
    return device


def check_bfloat16_autocast(device):
    """Refuse ``mixed_precision=True`` where bfloat16 autocast does not run on ``device``."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"mixed_precision=True needs bfloat16, which {device} does not "
                         "support; set mixed_precision=False.")
    try:
        torch.autocast(device.type, dtype=torch.bfloat16)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"mixed_precision=True needs torch.autocast with bfloat16 on "
                         f"{device.type}, which this torch does not offer ({exc}); set "
                         "mixed_precision=False.") from exc


def to_tensor(X, device):
    """A float32 copy of array ``X`` on ``device`` (never shares the caller's memory)."""
    return torch.from_numpy(np.array(X, dtype=np.float32)).to(device)


def to_device(X, device):
    """A copy of array ``X`` on ``device`` in X's own float dtype (one host->device copy).

    Unlike :func:`to_tensor` the dtype is kept, so that float64 input can be projected
    exactly on the device. Never shares the caller's memory.
    """
    X = np.asarray(X)
    device = torch.device(device)
    if device.type == "cpu" or not X.flags.writeable:
        return torch.tensor(X, device=device)
    # straight from the caller's buffer to the device: no host-side copy
    return torch.from_numpy(np.ascontiguousarray(X)).to(device)


def copy_into(out, tensor):
    """Copy ``tensor`` (any device) into the numpy array ``out`` (C-contiguous, writable)
    in one device->host transfer, casting to ``out``'s dtype; no temporary array."""
    torch.from_numpy(out).copy_(tensor.detach())
    return out


def to_numpy(tensor, dtype=None):
    """Detach ``tensor`` to a CPU numpy array, optionally cast to ``dtype``."""
    array = tensor.detach().cpu().numpy()
    return array if dtype is None else array.astype(dtype, copy=False)


def module_device(module):
    """Device of a module's first parameter or buffer (CPU for a parameterless one)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def eval_mode(module):
    """Put ``module`` in eval mode inside the block and restore each submodule's mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.train(training)


def make_generator(seed, device):
    """A :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


@contextmanager
def torch_seed(seed):
    """Seed torch's global RNG inside the block and restore it afterwards.

    For code we do not own (skorch initialising a module, its data loader
    shuffling) that draws from the global generator.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def is_skorch_net(estimator):
    """Whether ``estimator`` is a skorch ``NeuralNet`` (skorch imported lazily).

    Parameters
    ----------
    estimator : object

    Returns
    -------
    bool
    """
    from skorch import NeuralNet

    return isinstance(estimator, NeuralNet)
