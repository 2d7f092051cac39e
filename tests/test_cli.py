import subprocess
import sys

import pytest

from skrobust.cli import main


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
