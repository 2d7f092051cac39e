"""Layer capture: the outputs of named layers of a network, read with forward hooks."""

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


class _StopForward(Exception):
    """Raised by a capture hook once every requested layer has run."""


class LayerCapture:
    """Capture the outputs of named layers of a torch module with forward hooks.

    A context manager: the hooks are registered on entry and removed on exit,
    whatever happens. Inside, calling the capture on a batch runs the module and
    returns the flattened output of every requested layer. Outputs keep their
    gradients unless ``detach=True``, so an attack or an inversion can
    differentiate through them. The module's mode and gradient settings are the
    caller's (use :func:`~skrobust.utils.eval_mode` and ``torch.no_grad()`` as
    needed). This is the one place skrobust reads inner layers:
    :func:`extract_features`, :class:`~skrobust.defenses.DNRClassifier` and
    :class:`~skrobust.privacy.ImageInversionAttack` use it.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    layers : str or list of str
        Names of submodules as in ``module.named_modules()`` (e.g. ``"relu3"``).
    detach : bool, default=False
        Detach the captured outputs from the autograd graph.
    stop : bool, default=False
        Stop the forward pass as soon as every requested layer has run, skipping
        the layers after them (the module's own output is then not computed). A
        layer called several times in one pass is then captured at its first call;
        without ``stop``, at its last.

    Raises
    ------
    ValueError
        If ``layers`` is empty or names an unknown layer (the message lists the
        valid names); when called, if a requested layer did not run.

    Examples
    --------
    >>> import torch
    >>> from skrobust.models import LeNet5
    >>> from skrobust.utils import LayerCapture
    >>> net = LeNet5().eval()
    >>> with LayerCapture(net, ["relu3", "fc3"]) as capture:
    ...     outputs = capture(torch.zeros(2, 784))
    >>> outputs["relu3"].shape, outputs["fc3"].requires_grad
    (torch.Size([2, 120]), True)
    """

    def __init__(self, module, layers, *, detach=False, stop=False):
        self.module = module
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ValueError("layers is empty; give a layer name or a list of names.")
        self.detach = detach
        self.stop = stop
        self._named = dict(zip(self.layers, get_layers(module, self.layers)))
        self._handles = []
        self._outputs = {}

    def _hook(self, name):
        def hook(_module, _inputs, output):
            output = output.flatten(1)
            self._outputs[name] = output.detach() if self.detach else output
            if self.stop and len(self._outputs) == len(self._named):
                raise _StopForward
        return hook

    def __enter__(self):
        self._handles = [module.register_forward_hook(self._hook(name))
                         for name, module in self._named.items()]
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = {}
        return False

    def __call__(self, x):
        """Run the module on ``x``; the flattened outputs of the layers, by name.

        Parameters
        ----------
        x : Tensor
            A batch of inputs of the module.

        Returns
        -------
        outputs : dict of str to Tensor of shape (n_samples, n_layer_features)
        """
        if not self._handles:
            raise RuntimeError("Call a LayerCapture inside its with block.")
        self._outputs = {}
        try:
            self.module(x)
        except _StopForward:
            pass
        outputs, self._outputs = self._outputs, {}
        missing = [name for name in self.layers if name not in outputs]
        if missing:
            raise ValueError(
                f"Layer {missing[0]!r} did not run in the module's forward pass, so its "
                "output cannot be read; choose a layer that forward() calls."
            )
        return outputs


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
    capture = LayerCapture(model.module, names, detach=True)
    X = check_array(X, dtype=[np.float32, np.float64])
    check_float32_range(X)
    model.check_n_features(X.shape[1])  # expected vs given width, before any batch
    outputs = {name: [] for name in names}
    with capture, eval_mode(model.module), torch.no_grad():
        for start in range(0, len(X), batch_size):
            batch = capture(to_tensor(X[start:start + batch_size], model.device))
            for name in outputs:
                outputs[name].append(to_numpy(batch[name], np.float32))
    features = {
        name: np.concatenate(parts) if parts else np.empty((0, 0), np.float32)
        for name, parts in outputs.items()
    }
    return features[layer] if isinstance(layer, str) else features
