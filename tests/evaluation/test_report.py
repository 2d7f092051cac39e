import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from skrobust.attacks import FGSMTransformer, PGDTransformer
from skrobust.cli import main
from skrobust.cli._model import load_model
from skrobust.cli._report import load_data
from skrobust.evaluation import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(mlp_net, mnist_small, tmp_path_factory):
    _, _, X, y = mnist_small
    attacks = [PGDTransformer(n_iter=5, step_size=0.02), FGSMTransformer()]
    return write_report(mlp_net, X[:40], y[:40], tmp_path_factory.mktemp("report"),
                        eps=0.1, attacks=attacks, eps_values=[0, 0.05])


def test_json_holds_the_same_numbers_as_the_evaluation(report):
    data = json.loads(report.json.read_text())
    assert data == report.data
    assert data["curve"]["eps"] == [0.0, 0.05, 0.1]  # eps is added to the curve
    assert data["robust_accuracy"] == report.result.robust_accuracy == data["curve"]["accuracy"][-1]
    assert data["clean_accuracy"] == data["curve"]["accuracy"][0]
    assert [a["name"] for a in data["attacks"]] == ["PGD-5", "FGSM"]
    assert data["attacks"][0]["n_attacked"] == round(40 * data["clean_accuracy"])
    assert {c["name"] for c in data["sanity_checks"]} >= {"gradients", "input bounds"}


def test_html_is_self_contained_with_tables_and_figures(report):
    page = report.html.read_text()
    assert page.count("<table>") == 4
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from elsewhere
    assert f"{100 * report.data['robust_accuracy']:.2f} %" in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_report_renders_in_headless_chromium(report):
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", report.html.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    body = re.search(r"<body[^>]*>", out).group(0)
    # set by the page's load handler: every image decoded, every table laid out
    assert 'data-images="2"' in body and 'data-images-rendered="2"' in body
    assert 'data-tables="4"' in body
    assert "Sanity checks" in out and "PGD-5" in out


def test_cli_report_from_state_dict_and_npz(mlp_net, mnist_small, tmp_path, capsys):
    _, _, X, y = mnist_small
    weights, data = tmp_path / "mlp.pt", tmp_path / "data.npz"
    torch.save(mlp_net.module_.state_dict(), weights)
    np.savez(data, X=X[:20].reshape(20, 28, 28), y=y[:20])
    code = main(["report", str(weights), "--model", "mlp", "--data", str(data), "--eps",
                 "0.05", "--eps-values", "0,0.05", "--n-iter", "3", "--n-queries", "20",
                 "--output-dir", str(tmp_path / "out")])
    assert code == 0
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["n_samples"] == 20 and saved["model"] == "mlp"
    assert [a["name"] for a in saved["attacks"]] == ["APGD-CE", "FAB-T-3", "Square", "APGD-T",
                                                       "FGSM"]
    assert (tmp_path / "out" / "report.html").exists()
    assert "wrote" in capsys.readouterr().out


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_loading_never_unpickles_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"fc1.weight": _Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        load_model(path, "mlp")
    assert "pwned" not in capsys.readouterr().out


def test_loading_errors_are_clear(mlp_net, tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(mlp_net.module_.state_dict(), path)
    assert load_model(path, "mlp")[0].out_features == 64
    with pytest.raises(ValueError, match="does not fit model='lenet5'"):
        load_model(path, "lenet5")
    with pytest.raises(ValueError, match="not supported"):
        load_model(path, "resnet")
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="lacks the arrays"):
        load_data(bad)
