"""Network weights from files that may be damaged or hostile: tensors only, one-line errors.

The one way skrobust reads a ``state_dict`` (``skrobust report`` and ``skrobust
monitor`` both reach it through ``skrobust/cli/_model.py``'s ``load_model``):
``torch.load(weights_only=True)``, which unpickles plain
tensors and containers and refuses anything that would run code. Every failure is a
``ValueError`` whose message is one line naming the file and what is wrong; torch's
own advice to retry with ``weights_only=False`` (which would run the file's code) is
never passed on.
"""

import warnings
from collections.abc import Mapping

#: Lines of torch's messages that are advice rather than a reason (and never shown).
_ADVICE = ("weights only load failed", "check the documentation", "please file an issue",
           "in pytorch 2.6", "re-running", "weights_only")


def _reason(exc):
    """The informative lines of an exception's message, joined on one line."""
    lines = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.lower().startswith("weightsunpickler error:"):
            line = line.split(":", 1)[1].strip()
        if line and not any(advice in line.lower() for advice in _ADVICE):
            lines.append(line)
    return "; ".join(lines) or type(exc).__name__


def load_state_dict(path, *, device="cpu"):
    """Read a ``state_dict`` saved with ``torch.save`` without running code from the file.

    Parameters
    ----------
    path : str or path-like
        A file written by ``torch.save(module.state_dict(), path)`` (or a skorch
        net's ``save_params(f_params=path)``).
    device : str or torch.device, default="cpu"
        Where the tensors are loaded.

    Returns
    -------
    state : dict of str to torch.Tensor
        The tensors by parameter name.

    Raises
    ------
    ValueError
        If the file cannot be read, is not a torch file, holds anything but tensors
        (a pickled object, which would run code, is refused), holds no tensors, or
        holds a floating tensor with NaN or infinite values. The message is one line.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from skrobust.utils._weights import load_state_dict
    >>> path = os.path.join(tempfile.mkdtemp(), "weights.pt")
    >>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
    >>> sorted(load_state_dict(path))
    ['bias', 'weight']
    """
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: noise here
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except OSError as exc:
        raise ValueError(f"Cannot read the weights file {path}: "
                         f"{exc.strerror or _reason(exc)}.") from None
    except Exception as exc:  # noqa: BLE001 - every failure of a hostile file is refused
        raise ValueError(
            f"{path} is refused as weights: it is not a state_dict of plain tensors saved "
            f"with torch.save ({type(exc).__name__}: {_reason(exc)}).") from None
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path} does not hold a state_dict (a non-empty dict of tensors) "
                         f"but a {type(state).__name__}; save one with "
                         f"torch.save(module.state_dict(), path).")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{path} does not hold a state_dict: entry {name!r} is a "
                             f"{type(value).__name__}, not a tensor; save one with "
                             f"torch.save(module.state_dict(), path).")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{path}: the weights {name!r} contain NaN or infinite values.")
    return dict(state)


def apply_state_dict(module, state, path):
    """``module.load_state_dict(state)`` with a one-line ``ValueError`` naming ``path``."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path} does not fit {type(module).__name__}: "
                         f"{_reason(exc)}") from None
    return module
