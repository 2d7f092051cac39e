import numpy as np
import torch
from sklearn.utils.validation import check_array

from ._differentiable import as_torch_model, check_float32_range
from ._torch import eval_mode, to_numpy, to_tensor


def layer_names(module):
    """Names of the submodules of ``module`` whose output can be extracted."""
    return [name for name, _ in module.named_modules() if name]


def get_layers(module, layers):
    """The submodules of ``module`` named in ``layers``, in that order.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    layers : list of str
        Names as in ``module.named_modules()``.

    Returns
    -------
    list of torch.nn.Module

    Raises
    ------
    ValueError
        If a name is unknown or empty; the message lists the valid names.
    """
    modules = dict(module.named_modules())
    unknown = [name for name in layers if name not in modules or not name]
    if unknown:
        raise ValueError(
            f"Unknown layer {unknown[0]!r}; valid layer names are {layer_names(module)}."
        )
    return [modules[name] for name in layers]


def extract_features(estimator, X, layer, *, batch_size=256):
    """Output of one or several named layers of a network, flattened per sample.

    Runs the network in eval mode with forward hooks, batch by batch, without
    gradients; the model's mode is restored afterwards.

    Parameters
    ----------
    estimator : fitted skorch net, torch.nn.Module, FrozenEstimator or skrobust estimator
        Any victim supported by the attack transformers.
    X : array-like of shape (n_samples, n_features)
        Inputs of the network.
    layer : str or list of str
        Name(s) of submodules as in ``module.named_modules()`` (e.g. ``"relu3"``).
    batch_size : int, default=256
        Samples per forward pass.

    Returns
    -------
    features : ndarray of shape (n_samples, n_layer_features) or dict
        float32 features; a dict from layer name to array when ``layer`` is a list.

    Raises
    ------
    ValueError
        If a layer name is unknown (the message lists the valid names), if the
        network cannot take X's width (expected vs given width, found by one dry
        forward pass, see :meth:`~skrobust.utils.TorchModel.check_n_features`), or
        if X has values beyond the float32 range.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.models import LeNet5
    >>> from skrobust.utils import extract_features
    >>> extract_features(LeNet5(), np.zeros((3, 784), dtype=np.float32), "relu3").shape
    (3, 120)
    """
    model = as_torch_model(estimator)
    names = [layer] if isinstance(layer, str) else list(layer)
    if not names:
        raise ValueError("layer is empty; give a layer name or a list of names.")
    modules = get_layers(model.module, names)
    X = check_array(X, dtype=[np.float32, np.float64])
    check_float32_range(X)
    model.check_n_features(X.shape[1])  # expected vs given width, before any batch
    outputs = {name: [] for name in names}
    current = {}

    def make_hook(name):
        def hook(_module, _inputs, output):
            current[name] = output.detach().flatten(1)
        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in zip(names, modules)]
    try:
        with eval_mode(model.module), torch.no_grad():
            for start in range(0, len(X), batch_size):
                model.module(to_tensor(X[start:start + batch_size], model.device))
                for name in names:
                    outputs[name].append(to_numpy(current[name], np.float32))
    finally:
        for handle in handles:
            handle.remove()
    features = {
        name: np.concatenate(parts) if parts else np.empty((0, 0), np.float32)
        for name, parts in outputs.items()
    }
    return features[layer] if isinstance(layer, str) else features
