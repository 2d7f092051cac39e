import json
import pickle

import numpy as np
import pytest
import torch

from skrobust.cli import main
from skrobust.detection import MMDDriftDetector, load_detector, run_monitor, save_detector
from skrobust.models import MLP


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    return rng.randn(300, 4), rng.randn(400, 4)


@pytest.fixture
def batch_dir(tmp_path, data):
    _, clean = data
    folder = tmp_path / "batches"
    folder.mkdir()
    np.save(folder / "b1_clean.npy", clean[:100])
    np.save(folder / "b2_shifted.npy", clean[100:200] + 1.5)
    np.savez(folder / "b3_clean.npz", X=clean[200:260])
    (folder / "b4_corrupt.npy").write_bytes(b"\x93NUMPY garbage that is not an array")
    np.save(folder / "b5_wrong_shape.npy", clean[:20, :3])
    with open(folder / "b6_pickle.npy", "wb") as f:  # a pickle must never be loaded
        pickle.dump({"X": clean[:10]}, f)
    (folder / "notes.txt").write_text("not a batch")
    return folder


@pytest.mark.parametrize("params", [{}, {"standardize": True, "kernel": "rbf_mixture"}])
def test_save_load_round_trip(tmp_path, data, params):
    ref, clean = data
    detector = MMDDriftDetector(random_state=0, **params).fit(ref)
    path = tmp_path / "detector.npz"
    save_detector(detector, path)
    with np.load(path, allow_pickle=False) as stored:  # plain arrays only
        assert all(stored[key].dtype != object for key in stored.files)
    loaded = load_detector(path)
    assert loaded.get_params() == detector.get_params()
    for X in (clean[:50], clean[:80] + 0.5):
        assert loaded.test(X) == detector.test(X)
    np.testing.assert_allclose(loaded.score_samples(clean[:30]),
                               detector.score_samples(clean[:30]))


def test_save_load_with_a_network(tmp_path, data):
    ref, clean = data
    torch.manual_seed(0)
    net = MLP(n_features=4, n_classes=3, hidden_units=(8,)).eval()
    detector = MMDDriftDetector(net, layer=["relu1", "out"], class_matched=True,
                                random_state=0).fit(ref)
    save_detector(detector, tmp_path / "det.npz")
    with pytest.raises(ValueError, match="pass the same trained network"):
        load_detector(tmp_path / "det.npz")
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    rebuilt = MLP(n_features=4, n_classes=3, hidden_units=(8,))
    rebuilt.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    loaded = load_detector(tmp_path / "det.npz", estimator=rebuilt.eval())
    assert loaded.test(clean[:60]) == detector.test(clean[:60])
    np.testing.assert_array_equal(loaded.ref_classes_, detector.ref_classes_)


def test_load_rejects_other_files(tmp_path, data):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a detector saved"):
        load_detector(tmp_path / "other.npz")
    with open(tmp_path / "evil.npz", "wb") as f:
        pickle.dump(MMDDriftDetector(), f)
    with pytest.raises(ValueError, match="Cannot read"):
        load_detector(tmp_path / "evil.npz")
    with pytest.raises(TypeError, match="MMDDriftDetector"):
        save_detector("detector", tmp_path / "x.npz")


def test_monitor_skips_bad_batches_and_keeps_a_history(tmp_path, data, batch_dir):
    ref, _ = data
    detector = MMDDriftDetector(random_state=0).fit(ref)
    out = tmp_path / "out"
    records = run_monitor(detector, batch_dir, out, top_k=10)
    by_name = {r["batch"]: r for r in records}
    assert list(by_name) == ["b1_clean.npy", "b2_shifted.npy", "b3_clean.npz",
                             "b4_corrupt.npy", "b5_wrong_shape.npy", "b6_pickle.npy"]
    assert by_name["b2_shifted.npy"]["is_drift"] is True
    assert by_name["b1_clean.npy"]["is_drift"] is False
    assert by_name["b3_clean.npz"]["n_samples"] == 60
    assert len(by_name["b1_clean.npy"]["top_suspicious"]) == 10
    assert "unreadable" in by_name["b4_corrupt.npy"]["error"]
    assert "unreadable" in by_name["b6_pickle.npy"]["error"]
    assert "expected (n_samples, 4)" in by_name["b5_wrong_shape.npy"]["error"]
    for name, record in by_name.items():
        report = json.loads((out / "reports" / f"{name}.json").read_text())
        assert report == record
        assert report["timestamp"].endswith("+00:00")
    assert (out / "detection_rate.png").stat().st_size > 0
    assert len((out / "history.jsonl").read_text().splitlines()) == 6
    # a second run only looks at new files; --rescan looks at all again
    assert run_monitor(detector, batch_dir, out) == []
    np.save(batch_dir / "b7_new.npy", data[1][:40])
    assert [r["batch"] for r in run_monitor(detector, batch_dir, out)] == ["b7_new.npy"]
    assert len(run_monitor(detector, batch_dir, out, rescan=True)) == 7
    assert len((out / "history.jsonl").read_text().splitlines()) == 14


def test_monitor_flattens_image_batches(tmp_path):
    rng = np.random.RandomState(0)
    detector = MMDDriftDetector(random_state=0).fit(rng.rand(100, 6))
    folder = tmp_path / "b"
    folder.mkdir()
    np.save(folder / "images.npy", rng.rand(30, 2, 3))
    (record,) = run_monitor(detector, folder, tmp_path / "out")
    assert record["status"] == "ok" and record["n_samples"] == 30


def test_cli_monitor(tmp_path, data, batch_dir, capsys):
    ref, _ = data
    save_detector(MMDDriftDetector(random_state=0).fit(ref), tmp_path / "det.npz")
    out = tmp_path / "cli_out"
    status = main(["monitor", str(tmp_path / "det.npz"), str(batch_dir),
                   "--output-dir", str(out), "--top-k", "5", "--quiet"])
    assert status == 1  # some batches were skipped
    err = capsys.readouterr().err
    assert "skipped b4_corrupt.npy" in err and "skipped b5_wrong_shape.npy" in err
    assert (out / "reports" / "b2_shifted.npy.json").exists()
    status = main(["monitor", str(tmp_path / "missing.npz"), str(batch_dir),
                   "--output-dir", str(out), "--quiet"])
    assert status == 2 and "Cannot read" in capsys.readouterr().err


def test_cli_monitor_with_a_network(tmp_path, data):
    ref, clean = data
    torch.manual_seed(0)
    net = MLP(n_features=4, n_classes=3, hidden_units=(8,)).eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    save_detector(MMDDriftDetector(net, layer="relu1", random_state=0).fit(ref),
                  tmp_path / "det.npz")
    folder = tmp_path / "b"
    folder.mkdir()
    np.save(folder / "x.npy", clean[:50])
    args = ["monitor", str(tmp_path / "det.npz"), str(folder), "--output-dir",
            str(tmp_path / "o"), "--quiet"]
    assert main(args) == 2  # the network is needed
    assert main([*args, "--module", "skrobust.models:MLP", "--module-kwargs",
                 '{"n_features": 4, "n_classes": 3, "hidden_units": [8]}',
                 "--weights", str(tmp_path / "weights.pt")]) == 0
    assert main([*args, "--rescan", "--module", "os:system"]) == 2  # not a torch module


def test_load_rejects_tampered_metadata(tmp_path, data):
    ref, _ = data
    save_detector(MMDDriftDetector(random_state=0).fit(ref), tmp_path / "det.npz")
    with np.load(tmp_path / "det.npz", allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    meta = json.loads(str(arrays["meta"]))
    meta["params"]["alpha"] = 7.0
    np.savez(tmp_path / "bad.npz", **{**arrays, "meta": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match="not a valid saved detector"):
        load_detector(tmp_path / "bad.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="Cannot read"):
        load_detector(tmp_path / "array.npy")
