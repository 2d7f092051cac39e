"""The one way a command gets a network: build it from trusted code, load its weights safely.

``skrobust report`` and ``skrobust monitor`` both call :func:`load_model` with the
same options: ``--model`` (alias ``--module``), ``--module-kwargs`` and the weights.
The network is built from code (a :mod:`skrobust.models` class by name, or any
``torch.nn.Module`` class named ``package.module:Class``), never from the file; the
weights are read by :func:`skrobust.utils._weights.load_state_dict`
(``torch.load(weights_only=True)``: tensors only, no code unpickled). Every failure
is a one-line ``ValueError`` that the commands print as ``error:`` with exit status 2.
"""

import importlib
import json


def _lenet_sizes(state):
    return {"n_classes": state["fc3.weight"].shape[0]}


def _small_cnn_sizes(state):
    return {"n_classes": state["fc1.weight"].shape[0]}


def _mlp_sizes(state):
    hidden = []
    while f"fc{len(hidden) + 1}.weight" in state:
        hidden.append(state[f"fc{len(hidden) + 1}.weight"].shape[0])
    return {"n_features": state["fc1.weight"].shape[1],
            "n_classes": state["out.weight"].shape[0], "hidden_units": tuple(hidden)}


#: Networks named on the command line: (class name in skrobust.models, the keyword
#: arguments read from a state_dict's shapes).
NETWORKS = {"lenet5": ("LeNet5", _lenet_sizes), "smallcnn": ("SmallCNN", _small_cnn_sizes),
            "mlp": ("MLP", _mlp_sizes)}
MODELS = tuple(NETWORKS)

MODEL_HELP = (f"{{}}: one of {', '.join(MODELS)} (skrobust.models; its sizes are "
              "read from the weights), or any torch.nn.Module class as "
              "package.module:Class")
MODULE_KWARGS_HELP = ("JSON keyword arguments of the network's class ({}); they override "
                      "the sizes read from the weights")


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def _module_class(model):
    """The class ``model`` names, and how its sizes are read from weights (or None)."""
    import torch

    from ..models import MLP, LeNet5, SmallCNN

    classes = {cls.__name__: cls for cls in (LeNet5, SmallCNN, MLP)}
    name = str(model)
    if name.lower() in NETWORKS:
        class_name, sizes = NETWORKS[name.lower()]
        return classes[class_name], sizes
    module_name, colon, class_name = name.partition(":")
    if not colon:
        raise ValueError(f"--model {name!r} is not supported; give one of "
                         f"{', '.join(MODELS)} or a class as package.module:Class.")
    if not module_name or not class_name:
        raise ValueError(f"--model {name!r} must look like package.module:Class.")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--model {name!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"--model {name!r} is not a torch.nn.Module class.")
    for class_name, sizes in NETWORKS.values():  # skrobust.models:LeNet5 is lenet5
        if cls is classes[class_name]:
            return cls, sizes
    return cls, None


def _module_kwargs(module_kwargs):
    """The keyword arguments: a dict, a JSON object text or None."""
    if module_kwargs is None:
        return {}
    if isinstance(module_kwargs, dict):
        return dict(module_kwargs)
    try:
        kwargs = json.loads(module_kwargs or "{}", parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ValueError(f"--module-kwargs is not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--module-kwargs must be a JSON object.")
    return kwargs


def load_model(weights, model, *, module_kwargs=None, device="cpu"):
    """Build the network a command names and load a saved ``state_dict`` into it.

    The weights are read by the one safe loader
    (``torch.load(weights_only=True)``): tensors only, no unpickling of code, so an
    untrusted file cannot run anything. For skrobust's own networks the sizes
    (classes; the MLP's features and hidden units) are read from the weights, so
    ``"lenet5"`` and ``"skrobust.models:LeNet5"`` are the same network;
    ``module_kwargs`` give the other arguments and override what was read.

    Parameters
    ----------
    weights : str, path-like or None
        A ``state_dict`` saved with ``torch.save(module.state_dict(), path)`` (or a
        skorch net's ``save_params(f_params=path)``); a ``module.`` prefix of the
        names is dropped. None builds the network without loading weights.
    model : str
        One of ``"lenet5"``, ``"smallcnn"``, ``"mlp"`` (case-insensitive), or a
        ``torch.nn.Module`` class as ``"package.module:Class"`` (imported: trusted
        code only).
    module_kwargs : dict, str (a JSON object) or None, default=None
        Keyword arguments of the class.
    device : str or torch.device, default="cpu"
        Where to load the network.

    Returns
    -------
    module : torch.nn.Module
        The network, on ``device``, in eval mode.

    Raises
    ------
    ValueError
        With a one-line reason when ``model`` or ``module_kwargs`` cannot give a
        network, or the file cannot be read, holds anything but finite tensors
        (pickled objects are refused, never run) or does not fit the network.
    """
    from ..utils._torch import resolve_device
    from ..utils._weights import apply_state_dict, load_state_dict

    cls, sizes = _module_class(model)
    kwargs = _module_kwargs(module_kwargs)
    device = resolve_device(device)
    state = None
    if weights is not None:
        state = load_state_dict(weights, device=device)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        if sizes is not None:
            try:
                kwargs = {**sizes(state), **kwargs}
            except KeyError as exc:
                raise ValueError(f"{weights} does not fit model={model!r}: it has no "
                                 f"weights {exc}.") from None
            except (IndexError, RuntimeError, ValueError, TypeError) as exc:
                raise ValueError(f"{weights} does not fit model={model!r}: weights of "
                                 f"unexpected shape ({exc}).") from None
    try:
        module = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - wrong keyword arguments, in any way
        text = " ".join(str(exc).split())
        raise ValueError(f"--model {model!r} cannot be built with --module-kwargs "
                         f"{json.dumps(kwargs, default=str)}: {type(exc).__name__}: "
                         f"{text}") from None
    if state is not None:
        module = apply_state_dict(module, state, weights)
    return module.to(device).eval()
