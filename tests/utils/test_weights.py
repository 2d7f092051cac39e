import os
import pickle

import numpy as np
import pytest
import torch

from skrobust.cli import main
from skrobust.cli._model import load_model
from skrobust.detection import MMDDriftDetector, save_detector
from skrobust.models import MLP
from skrobust.utils._weights import apply_state_dict, load_state_dict


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, proof):
        self.proof = proof

    def __reduce__(self):
        return (open, (self.proof, "w"))


def _mlp(n_features=4, hidden=(8,)):
    torch.manual_seed(0)
    return MLP(n_features=n_features, n_classes=3, hidden_units=hidden).eval()


@pytest.fixture
def weight_files(tmp_path):
    """Files that must all be refused, by name: a fragment of the expected message."""
    proof = tmp_path / "code_ran"
    files = {}
    (tmp_path / "random.pt").write_bytes(np.random.RandomState(0).bytes(300))
    files["random.pt"] = "is refused as weights"
    with open(tmp_path / "pickle.pt", "wb") as f:
        pickle.dump(_Payload(str(proof)), f)
    files["pickle.pt"] = "is refused as weights"
    torch.save({"fc1.weight": _Payload(str(proof))}, tmp_path / "torch_pickle.pt")
    files["torch_pickle.pt"] = "is refused as weights"
    (tmp_path / "empty.pt").write_bytes(b"")
    files["empty.pt"] = "is refused as weights"
    torch.save(_mlp().state_dict(), tmp_path / "full.pt")
    raw = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    files["truncated.pt"] = "is refused as weights"
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    files["list.pt"] = "does not hold a state_dict"
    torch.save({"fc1.weight": 3}, tmp_path / "not_tensor.pt")
    files["not_tensor.pt"] = "entry 'fc1.weight' is a int"
    state = _mlp().state_dict()
    state["fc1.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    files["nan.pt"] = "'fc1.weight' contain NaN"
    files["missing.pt"] = "Cannot read the weights file"
    return tmp_path, files, proof


def test_load_state_dict_refuses_damaged_and_hostile_files(weight_files):
    folder, files, proof = weight_files
    for name, fragment in files.items():
        with pytest.raises(ValueError, match=fragment) as info:
            load_state_dict(folder / name)
        message = str(info.value)
        assert "\n" not in message and "weights_only" not in message, message
        assert info.value.__cause__ is None  # torch's advice is not chained either
        assert info.value.__context__ is None or info.value.__suppress_context__
    assert not proof.exists()
    with pytest.raises(ValueError, match="Trying to load unsupported GLOBAL|Unsupported"):
        load_state_dict(folder / "torch_pickle.pt")
    state = load_state_dict(folder / "full.pt")
    assert set(state) == set(_mlp().state_dict())


def test_a_state_that_does_not_fit_is_one_line(weight_files):
    folder, _, _ = weight_files
    path = folder / "full.pt"
    with pytest.raises(ValueError, match="full.pt does not fit MLP: .*size mismatch") as info:
        apply_state_dict(_mlp(n_features=5), load_state_dict(path), path)
    assert "\n" not in str(info.value)
    module = apply_state_dict(_mlp(), load_state_dict(path), path)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in load_state_dict(path).items())


@pytest.mark.parametrize("command", ["report", "monitor"])
def test_cli_weights_errors_are_one_line(weight_files, command, capsys):
    folder, files, proof = weight_files
    state = _mlp().state_dict()
    state["out.weight"] = torch.zeros(3, 7)  # does not fit the 8 hidden units
    torch.save(state, folder / "wrong_shape.pt")
    files = {**files, "wrong_shape.pt": "does not fit"}
    torch.save({"foo": torch.zeros(3)}, folder / "wrong_keys.pt")
    files["wrong_keys.pt"] = "does not fit"
    if command == "monitor":
        rng = np.random.RandomState(0)
        save_detector(MMDDriftDetector(_mlp(), layers="relu1", random_state=0)
                      .fit(rng.randn(50, 4)), folder / "det.npz")
        (folder / "batches").mkdir()
    for name, fragment in files.items():
        if command == "report":
            argv = ["report", str(folder / name), "--model", "mlp", "--output-dir",
                    str(folder / "out")]
        else:
            argv = ["monitor", str(folder / "det.npz"), str(folder / "batches"),
                    "--output-dir", str(folder / "out"), "--module", "skrobust.models:MLP",
                    "--module-kwargs", '{"n_features": 4, "n_classes": 3, "hidden_units": [8]}',
                    "--weights", str(folder / name), "--quiet"]
        assert main(argv) == 2, name
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"skrobust {command}: error: "), err
        assert fragment in lines[0], (name, lines[0])
        assert "weights_only" not in err and "Traceback" not in err
    assert not proof.exists()


def test_monitor_module_kwargs_that_do_not_build(tmp_path, capsys):
    rng = np.random.RandomState(0)
    save_detector(MMDDriftDetector(_mlp(), layers="relu1", random_state=0)
                  .fit(rng.randn(50, 4)), tmp_path / "det.npz")
    (tmp_path / "b").mkdir()
    argv = ["monitor", str(tmp_path / "det.npz"), str(tmp_path / "b"), "--module",
            "skrobust.models:MLP", "--module-kwargs", '{"n_featurez": 4}', "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be built with --module-kwargs" in err and "Traceback" not in err


def test_load_model_uses_the_safe_loader(weight_files):
    folder, _, proof = weight_files
    module = load_model(folder / "full.pt", "mlp")
    assert module.fc1.weight.shape == (8, 4)
    with pytest.raises(ValueError, match="is refused as weights"):
        load_model(folder / "pickle.pt", "mlp")
    with pytest.raises(ValueError, match="has no weights 'fc3.weight'"):
        load_model(folder / "full.pt", "lenet5")
    torch.save({"fc1.weight": torch.tensor(1.0), "out.weight": torch.zeros(3, 2)},
               folder / "scalar.pt")
    with pytest.raises(ValueError, match="weights of unexpected shape"):
        load_model(folder / "scalar.pt", "mlp")
    assert not proof.exists() and os.path.exists(folder / "full.pt")
