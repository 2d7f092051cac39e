import json
import subprocess
import sys

import numpy as np
import pytest

from skrobust.cli import build_parser, main


def test_demo_runs_offline_on_the_embedded_digits(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SKROBUST_DATA", raising=False)
    monkeypatch.setenv("SKROBUST_CACHE", str(tmp_path / "cache"))
    figure = tmp_path / "demo.png"
    main(["demo", "--epochs", "1", "--n-train", "600", "--n-test", "100",
          "--data-home", str(tmp_path), "--output", str(figure)])
    out = capsys.readouterr().out
    assert "embedded MNIST test set" in out
    assert "accuracy on adversarial examples" in out
    assert figure.stat().st_size > 10_000


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "skrobust", "--help"], capture_output=True,
                            text=True, check=True)
    assert "demo" in result.stdout


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["nope"])


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    """A quiet demo run that saves what the other commands need."""
    folder = tmp_path_factory.mktemp("demo")
    # enough training for a victim that is not near-constant (93 % clean accuracy), so
    # the report's sanity checks pass on it
    argv = ["demo", "--epochs", "2", "--n-train", "8000", "--n-test", "400", "--quiet",
            "--output", "", "--save-model", str(folder / "lenet5.pt"),
            "--save-detector", str(folder / "detector.npz"),
            "--save-batches", str(folder / "batches")]
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(argv) == 0
    return folder, out.getvalue(), err.getvalue()


def test_demo_quiet_prints_results_and_training_time_but_no_progress(demo_files):
    _, out, err = demo_files
    assert "accuracy on adversarial examples" in out  # the results stay
    assert "training: 2 epochs on 8000 images in" in out
    assert "train_loss" not in out  # skorch's epoch table is progress
    assert "FGSMTransformer" not in out + err  # so is the attack's bar


def test_demo_progress_bar_stays(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SKROBUST_DATA", raising=False)
    code, out, err = _run(["demo", "--epochs", "1", "--n-train", "100", "--n-test", "20",
                           "--output", "", "--data-home", str(tmp_path)], capsys)
    assert code == 0 and "train_loss" in out
    # a left bar ends on its completed state instead of being erased
    assert "FGSMTransformer: 100%" in err and not err.rstrip().endswith("\r")


def test_demo_report_monitor_chain(demo_files, capsys):
    """The README's three commands: demo saves a model, report and monitor load it."""
    folder, _, _ = demo_files
    code, out, _ = _run(["report", str(folder / "lenet5.pt"), "--model", "lenet5", "--n", "20",
                         "--eps-values", "0,0.3", "--n-iter", "2", "--n-queries", "10",
                         "--output-dir", str(folder / "report")], capsys)
    data = json.loads((folder / "report" / "report.json").read_text())
    assert code == 0 and data["sanity_checks_failed"] == []
    assert set(data["timing"]) == {"attacks", "sanity_checks_and_predictions", "plots"}
    assert "time: loading" in out and "wrote" in out
    code, out, _ = _run(["monitor", str(folder / "detector.npz"), str(folder / "batches"),
                         "--module", "skrobust.models:LeNet5",
                         "--weights", str(folder / "lenet5.pt"),
                         "--output-dir", str(folder / "monitor"), "--quiet"], capsys)
    assert code == 0
    history = [json.loads(line) for line in
               (folder / "monitor" / "history.jsonl").read_text().splitlines()]
    drift = {record["batch"]: record["is_drift"] for record in history}
    assert drift == {"clean.npy": False, "fgsm.npy": True}


def test_report_fails_on_failed_sanity_check_and_takes_bounds(demo_files, tmp_path, capsys):
    folder, _, _ = demo_files
    from skrobust.datasets import load_mnist

    X, y = load_mnist(split="test", return_X_y=True)
    np.savez(tmp_path / "digits.npz", X=X[5000:5020], y=y[5000:5020])
    common = [str(folder / "lenet5.pt"), "--model", "lenet5", "--data",
              str(tmp_path / "digits.npz"), "--eps-values", "0,0.3", "--n-iter", "2",
              "--n-queries", "0", "--quiet"]
    # declared bounds that the data violate: the check fails, so does the command
    code, out, err = _run(["report", *common, "--clip-max", "0.5",
                           "--output-dir", str(tmp_path / "a")], capsys)
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    assert code == 1 and "input bounds" in data["sanity_checks_failed"]
    assert out == "" and "sanity check(s) failed: " in err and "input bounds" in err
    page = (tmp_path / "a" / "report.html").read_text()
    assert page.index('class="fail"') < page.index("<h2>Summary</h2>")  # on top
    code, out, err = _run(["report", *common, "--clip-min", "data", "--clip-max", "data",
                           "--output-dir", str(tmp_path / "b")], capsys)
    data = json.loads((tmp_path / "b" / "report.json").read_text())
    assert data["sanity_checks_failed"] == [] and code == 0 and out == err == ""


def test_report_rejects_a_bad_bound(capsys):
    with pytest.raises(SystemExit):
        main(["report", "w.pt", "--model", "lenet5", "--clip-max", "high"])
    assert "give a number, 'none'" in capsys.readouterr().err


def test_threads_option_sets_torch_threads(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        main(["demo", "--epochs", "1", "--n-train", "50", "--n-test", "10", "--output", "",
              "--threads", "2", "--quiet"])
        assert torch.get_num_threads() == 2
        assert "(2 torch thread(s))" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit, match="--threads must be >= 0"):
        main(["demo", "--threads", "-1"])


def test_help_is_plain_text():
    parser = build_parser()
    texts = [parser.format_help()] + [
        sub.format_help() for action in parser._subparsers._group_actions
        for sub in action.choices.values()]
    assert len(texts) == 4
    assert not any("``" in text for text in texts)
    assert all("--threads" in text for text in texts[1:])


class _Loaded(Exception):
    """Stops a command once it has handed its network on."""


def _network_of(command, argv, monkeypatch):
    """The network ``skrobust <command>`` hands to the library (write_report or
    load_detector), through the real parser and the real loading code."""
    import skrobust.cli._monitor as monitor_glue
    import skrobust.cli._report as report_glue

    seen = []

    def capture(module, *args, **kwargs):
        seen.append(module if command == "report" else kwargs["estimator"])
        raise _Loaded

    if command == "report":
        monkeypatch.setattr(report_glue, "write_report", capture)
    else:
        monkeypatch.setattr(monitor_glue, "load_detector",
                            lambda path, estimator: capture(None, estimator=estimator))
    with pytest.raises(_Loaded):
        main(argv)
    return seen[0]


@pytest.mark.parametrize("model", [
    ["--model", "mlp"],
    ["--module", "mlp"],
    ["--model", "skrobust.models:MLP"],
    ["--module", "skrobust.models:MLP", "--module-kwargs",
     '{"n_features": 4, "n_classes": 3, "hidden_units": [8]}'],
])
def test_report_and_monitor_load_the_same_network_the_same_way(model, tmp_path, monkeypatch):
    import torch

    from skrobust.models import MLP

    torch.manual_seed(0)
    net = MLP(n_features=4, n_classes=3, hidden_units=(8,)).eval()
    weights = tmp_path / "mlp.pt"
    torch.save(net.state_dict(), weights)
    X = np.random.RandomState(0).rand(20, 4).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=X, y=np.arange(20) % 3)
    (tmp_path / "batches").mkdir()
    report = _network_of("report", ["report", str(weights), *model, "--data",
                                    str(tmp_path / "data.npz"), "--quiet"], monkeypatch)
    monitor = _network_of("monitor", ["monitor", "det.npz", str(tmp_path / "batches"),
                                      *model, "--weights", str(weights), "--quiet"],
                          monkeypatch)
    assert type(report) is type(monitor) is MLP
    assert not report.training and not monitor.training
    with torch.no_grad():
        expected = net(torch.from_numpy(X))
        assert torch.equal(report(torch.from_numpy(X)), expected)
        assert torch.equal(monitor(torch.from_numpy(X)), expected)


def test_load_model_names_and_classes_are_one_network(tmp_path):
    import torch

    from skrobust.cli._model import load_model
    from skrobust.models import LeNet5

    torch.manual_seed(0)
    net = LeNet5(n_classes=4).eval()
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "w.pt")
    X = torch.rand(3, 784)
    by_name = load_model(tmp_path / "w.pt", "LeNet5")  # sizes read, "module." dropped
    by_class = load_model(tmp_path / "w.pt", "skrobust.models:LeNet5")
    with torch.no_grad():
        assert torch.equal(by_name(X), net(X)) and torch.equal(by_class(X), net(X))
    # --module-kwargs give what the weights cannot tell, and win over what they do
    torch.save(LeNet5(n_classes=4, in_channels=3, image_size=32).state_dict(),
               tmp_path / "rgb.pt")
    rgb = load_model(tmp_path / "rgb.pt", "lenet5",
                     module_kwargs='{"in_channels": 3, "image_size": 32}')
    assert rgb(torch.rand(2, 3 * 32 * 32)).shape == (2, 4)
    with pytest.raises(ValueError, match="rgb.pt does not fit LeNet5"):
        load_model(tmp_path / "rgb.pt", "lenet5", module_kwargs={"n_classes": 5,
                                                                 "in_channels": 3,
                                                                 "image_size": 32})
    assert load_model(None, "mlp", module_kwargs={"n_features": 4}).fc1.in_features == 4


@pytest.mark.parametrize("model, kwargs, message", [
    ("resnet", None, "--model 'resnet' is not supported; give one of lenet5, smallcnn, mlp"),
    (":MLP", None, "must look like package.module:Class"),
    ("skrobust.nowhere:Net", None, "cannot be imported"),
    ("os:system", None, "is not a torch.nn.Module class"),
    ("mlp", "[1]", "--module-kwargs must be a JSON object"),
    ("mlp", '{"n_features": NaN}', "--module-kwargs is not valid JSON: NaN"),
    ("mlp", "{", "--module-kwargs is not valid JSON"),
    ("mlp", '{"n_featurez": 4}', "cannot be built with --module-kwargs"),
])
def test_load_model_refuses_in_one_line(model, kwargs, message):
    from skrobust.cli._model import load_model

    with pytest.raises(ValueError, match=message) as info:
        load_model(None, model, module_kwargs=kwargs)
    assert "\n" not in str(info.value)
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_monitor_weights_need_a_model(tmp_path, capsys):
    code, _, err = _run(["monitor", "det.npz", str(tmp_path), "--weights", "w.pt"], capsys)
    assert code == 2 and "--weights needs --model" in err
