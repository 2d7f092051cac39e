import io
import json
import os
import pickle
import zipfile

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
    detector = MMDDriftDetector(net, layers=["relu1", "out"], class_matched=True,
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
    assert "not a valid .npy array" in by_name["b4_corrupt.npy"]["error"]
    assert "not a valid .npy array" in by_name["b6_pickle.npy"]["error"]
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
    assert status == 1  # some batches failed
    err = capsys.readouterr().err
    assert "failed b4_corrupt.npy" in err and "failed b5_wrong_shape.npy" in err
    assert "3 batches tested, 1 with drift, 3 failed" in err
    assert (out / "reports" / "b2_shifted.npy.json").exists()
    status = main(["monitor", str(tmp_path / "missing.npz"), str(batch_dir),
                   "--output-dir", str(out), "--quiet"])
    assert status == 2 and "Cannot read" in capsys.readouterr().err


def test_cli_monitor_with_a_network(tmp_path, data):
    ref, clean = data
    torch.manual_seed(0)
    net = MLP(n_features=4, n_classes=3, hidden_units=(8,)).eval()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    save_detector(MMDDriftDetector(net, layers="relu1", random_state=0).fit(ref),
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
    with pytest.raises(ValueError, match="bad.npz: field 'alpha' is 7.0"):
        load_detector(tmp_path / "bad.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="Cannot read"):
        load_detector(tmp_path / "array.npy")


# ------------------------------------------------------- damaged detector files
def _saved(tmp_path, detector, name="det.npz"):
    save_detector(detector, tmp_path / name)
    with np.load(tmp_path / name, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return arrays, json.loads(str(arrays["meta"]))


def _tampered(tmp_path, arrays, meta, change):
    arrays, meta = dict(arrays), json.loads(json.dumps(meta))
    change(arrays, meta)
    np.savez(tmp_path / "bad.npz", **{**arrays, "meta": np.array(json.dumps(meta))})
    return tmp_path / "bad.npz"


def _set(path, value):
    def change(arrays, meta):
        *keys, last = path
        target = meta
        for key in keys:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


def _array(key, value):
    def change(arrays, meta):
        if value is KeyError:
            del arrays[key]
        else:
            arrays[key] = value
    return change


@pytest.mark.parametrize("field, change", [
    ("gamma", _set(("gamma", "input"), float("nan"))),
    ("gamma", _set(("gamma", "input"), -1.0)),
    ("gamma", _set(("gamma", "input"), "1")),
    ("gamma", _set(("gamma",), {"input": 1.0, "other": 2.0})),
    ("gamma", _set(("params", "gamma"), float("inf"))),
    ("gamma", _set(("params", "gamma"), 0)),
    ("alpha", _set(("params", "alpha"), float("nan"))),
    ("n_permutations", _set(("params", "n_permutations"), True)),
    ("n_permutations", _set(("params", "n_permutations"), 0)),
    ("batch_size", _set(("params", "batch_size"), 2.5)),
    ("kernel", _set(("params", "kernel"), "linear")),
    ("standardize", _set(("params", "standardize"), "yes")),
    ("random_state", _set(("params", "random_state"), 2**40)),
    ("device", _set(("params", "device"), KeyError)),
    ("seed", _set(("seed",), 2**40)),
    ("seed", _set(("seed",), -1)),
    ("seed", _set(("seed",), 1.5)),
    ("seed", _set(("seed",), KeyError)),
    ("n_features_in", _set(("n_features_in",), 5)),
    ("n_features_in", _set(("n_features_in",), 0)),
    ("layers", _set(("layers",), ["input", "input"])),
    ("layers", _set(("layers",), ["relu1"])),
    ("has_estimator", _set(("has_estimator",), "no")),
    ("params", _set(("params",), [])),
    ("ref_0", _array("ref_0", np.full((10, 4), np.nan))),
    ("ref_0", _array("ref_0", np.zeros(4))),
    ("ref_0", _array("ref_0", np.zeros((1, 4)))),
    ("ref_0", _array("ref_0", np.zeros((10, 4), dtype=np.int64))),
    ("ref_0", _array("ref_0", np.array(["a"] * 4).reshape(1, 4).repeat(3, 0))),
    ("ref_0", _array("ref_0", KeyError)),
    ("mean_0", _array("mean_0", np.zeros(3))),
    ("scale_0", _array("scale_0", np.zeros(4))),
    ("scale_0", _array("scale_0", np.full(4, np.inf))),
    ("scale_0", _array("scale_0", KeyError)),
    ("ref_classes", _array("ref_classes", np.zeros(3, dtype=int))),
])
def test_load_detector_validates_every_field(tmp_path, data, field, change):
    ref, _ = data
    arrays, meta = _saved(tmp_path, MMDDriftDetector(standardize=True, random_state=0).fit(ref))
    path = _tampered(tmp_path, arrays, meta, change)
    with pytest.raises(ValueError, match=rf"bad\.npz.*'{field}'") as info:
        load_detector(path)
    assert "\n" not in str(info.value)


def test_load_detector_validates_version_and_members(tmp_path, data):
    ref, _ = data
    arrays, meta = _saved(tmp_path, MMDDriftDetector(random_state=0).fit(ref))
    for version in (0, 3):
        path = _tampered(tmp_path, arrays, meta, _set(("version",), version))
        with pytest.raises(ValueError, match=f"format version {version}; this skrobust "
                                             "reads versions 1, 2"):
            load_detector(path)
    for version in ("2", True):
        path = _tampered(tmp_path, arrays, meta, _set(("version",), version))
        with pytest.raises(ValueError, match="'version'.*expected an integer"):
            load_detector(path)
    with zipfile.ZipFile(tmp_path / "det.npz", "a") as archive:  # not an .npy member
        archive.writestr("ref_classes.npy", b"not an array")
    with pytest.raises(ValueError, match="det.npz.*'ref_classes'"):
        load_detector(tmp_path / "det.npz")


def _as_version_1(arrays, meta):
    """A file as skrobust wrote it before format 2: the parameter ``layers`` was
    ``layer``, nothing else differs."""
    meta["version"] = 1
    meta["params"] = {("layer" if k == "layers" else k): v for k, v in meta["params"].items()}


def test_load_detector_reads_format_version_1(tmp_path, data):
    ref, clean = data
    torch.manual_seed(0)
    net = MLP(n_features=4, n_classes=3, hidden_units=(8,)).eval()
    for estimator, params in ((None, {"standardize": True}),
                              (net, {"layers": ["relu1", "out"], "class_matched": True})):
        detector = MMDDriftDetector(estimator, random_state=0, **params).fit(ref)
        arrays, meta = _saved(tmp_path, detector)
        assert meta["version"] == 2 and "layers" in meta["params"]
        old = load_detector(_tampered(tmp_path, arrays, meta, _as_version_1), estimator=estimator)
        assert old.get_params() == detector.get_params()
        assert old.test(clean[:60]) == detector.test(clean[:60])
        assert list(old.X_ref_) == detector.layers_ and list(old.gamma_) == detector.layers_

    def mixed(arrays, meta):  # a version 1 file cannot use the new name
        _as_version_1(arrays, meta)
        meta["params"]["layers"] = None

    with pytest.raises(ValueError, match="'layers' is not a parameter of format version 1"):
        load_detector(_tampered(tmp_path, arrays, meta, mixed), estimator=net)


def test_load_detector_checks_the_network(tmp_path, data):
    ref, clean = data
    torch.manual_seed(0)
    net = MLP(n_features=4, n_classes=3, hidden_units=(8,)).eval()
    arrays, meta = _saved(tmp_path, MMDDriftDetector(net, layers="relu1", random_state=0).fit(ref))
    wider = MLP(n_features=4, n_classes=3, hidden_units=(9,)).eval()
    with pytest.raises(ValueError, match="'ref_0' has 8 columns but layer 'relu1'.* has 9"):
        load_detector(tmp_path / "det.npz", estimator=wider)
    with pytest.raises(ValueError, match="does not accept the detector's 4 input features"):
        load_detector(tmp_path / "det.npz",
                      estimator=MLP(n_features=5, n_classes=3, hidden_units=(8,)).eval())
    assert load_detector(tmp_path / "det.npz", estimator=net).test(clean[:50]).p_value > 0


def test_monitor_refuses_a_nan_detector_and_writes_strict_json(tmp_path, data, capsys):
    ref, clean = data
    arrays, meta = _saved(tmp_path, MMDDriftDetector(random_state=0).fit(ref))
    bad = _tampered(tmp_path, arrays, meta, _set(("gamma", "input"), float("nan")))
    folder = tmp_path / "b"
    folder.mkdir()
    np.save(folder / "x.npy", clean[:50])
    out = tmp_path / "out"
    assert main(["monitor", str(bad), str(folder), "--output-dir", str(out), "--quiet"]) == 2
    assert "field 'gamma'" in capsys.readouterr().err
    assert not (out / "history.jsonl").exists()
    # too few permutations to ever reject: threshold is infinite, written as null
    detector = MMDDriftDetector(n_permutations=10, random_state=0).fit(ref)
    (record,) = run_monitor(detector, folder, out)
    assert record["threshold"] is None

    def strict(name):
        raise AssertionError(f"{name} in JSON output")

    for line in (out / "history.jsonl").read_text().splitlines():
        assert json.loads(line, parse_constant=strict)["threshold"] is None
    json.loads((out / "reports" / "x.npy.json").read_text(), parse_constant=strict)


# ------------------------------------------------------------- never lose a batch
def _write_bad_files(folder, clean):
    """One file of each kind the monitor must record as an error, by name."""
    bad = {}
    with open(folder / "huge_header.npy", "wb") as f:  # 10**11 x 4 floats in 128 bytes
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (10**11, 4)})
    bad["huge_header.npy"] = "more than max_batch_bytes"
    with open(folder / "huge_member.npz", "wb") as f:
        with zipfile.ZipFile(f, "w") as archive:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f8", "fortran_order": False, "shape": (10**11, 4)})
            archive.writestr("X.npy", header.getvalue())
    bad["huge_member.npz"] = "more than max_batch_bytes"
    with zipfile.ZipFile(folder / "member_not_npy.npz", "w") as archive:
        archive.writestr("X.npy", b"this is not an npy member")
    bad["member_not_npy.npz"] = "member 'X.npy' is not a valid .npy array"
    with zipfile.ZipFile(folder / "member_no_suffix.npz", "w") as archive:
        archive.writestr("X", b"raw bytes")
    bad["member_no_suffix.npz"] = "member 'X' is not an .npy array"
    np.savez(folder / "two_arrays.npz", A=clean[:10], B=clean[:10])
    bad["two_arrays.npz"] = "name the batch 'X'"
    (folder / "not_a_zip.npz").write_bytes(b"PK but not a zip")
    bad["not_a_zip.npz"] = "not a valid .npz archive"
    np.save(folder / "truncated.npy", clean[:50])
    raw = (folder / "truncated.npy").read_bytes()
    (folder / "truncated.npy").write_bytes(raw[:-100])
    bad["truncated.npy"] = "truncated"
    np.save(folder / "pickled_objects.npy", np.array([{"a": 1}, None], dtype=object),
            allow_pickle=True)
    bad["pickled_objects.npy"] = "Python objects"
    (folder / "text.npy").write_text("1,2,3,4\n5,6,7,8\n")
    bad["text.npy"] = "not a valid .npy array"
    (folder / "empty.npy").write_bytes(b"")
    bad["empty.npy"] = "not a valid .npy array"
    (folder / "empty.npz").write_bytes(b"")
    bad["empty.npz"] = "not a valid .npz archive"
    np.save(folder / "zero_rows.npy", np.zeros((0, 4)))
    bad["zero_rows.npy"] = "0 rows"
    np.save(folder / "one_row.npy", np.zeros((1, 4)))
    bad["one_row.npy"] = "1 rows"
    np.save(folder / "one_d.npy", np.zeros(4))
    bad["one_d.npy"] = "expected (n_samples, 4)"
    np.save(folder / "complex.npy", clean[:20].astype(np.complex128))
    bad["complex.npy"] = "dtype complex128"
    np.save(folder / "bool.npy", clean[:20] > 0)
    bad["bool.npy"] = "dtype bool"
    np.save(folder / "strings.npy", clean[:20].astype(str))
    bad["strings.npy"] = "dtype <U"
    np.save(folder / "datetimes.npy", np.zeros((20, 4), dtype="datetime64[s]"))
    bad["datetimes.npy"] = "dtype datetime64"
    with_nan, with_inf = clean[:20].copy(), clean[:20].copy()
    with_nan[3, 1], with_inf[5, 2] = np.nan, np.inf
    np.save(folder / "nan.npy", with_nan)
    bad["nan.npy"] = "NaN"
    np.savez(folder / "inf.npz", X=with_inf)
    bad["inf.npz"] = "infinity"
    np.save(folder / "wrong_width.npy", clean[:20, :3])
    bad["wrong_width.npy"] = "expected (n_samples, 4)"
    (folder / "folder.npy").mkdir()
    bad["folder.npy"] = "not a regular file"
    if hasattr(os, "mkfifo"):  # POSIX
        os.mkfifo(folder / "pipe.npy")  # opening it would block the run
        bad["pipe.npy"] = "not a regular file"
    (folder / "broken_link.npz").symlink_to(folder / "nowhere")
    bad["broken_link.npz"] = "not a regular file"
    return bad


def _write_good_files(folder, clean):
    """Batches the monitor must test, by name: their number of rows."""
    np.save(folder / "good_float64.npy", clean[:60])
    np.save(folder / "good_float32.npy", clean[60:100].astype(np.float32))
    np.save(folder / "good_float16.npy", clean[100:140].astype(np.float16))
    np.save(folder / "good_int.npy", np.round(clean[140:180] * 10).astype(np.int32))
    np.save(folder / "good_images.npy", clean[180:230].reshape(50, 2, 2))
    np.save(folder / "good_fortran.npy", np.asfortranarray(clean[230:260]))
    np.savez_compressed(folder / "good_compressed.npz", X=clean[260:300])
    np.savez(folder / "good_single.npz", batch=clean[300:330])
    return {"good_float64.npy": 60, "good_float32.npy": 40, "good_float16.npy": 40,
            "good_int.npy": 40, "good_images.npy": 50, "good_fortran.npy": 30,
            "good_compressed.npz": 40, "good_single.npz": 30}


def test_monitor_never_loses_a_batch(tmp_path, data, capsys):
    ref, clean = data
    folder = tmp_path / "mixed"
    folder.mkdir()
    bad = _write_bad_files(folder, clean)
    good = _write_good_files(folder, clean)
    detector = MMDDriftDetector(random_state=0).fit(ref)
    out = tmp_path / "out"
    records = run_monitor(detector, folder, out, top_k=5)
    by_name = {r["batch"]: r for r in records}
    assert len(records) == len(by_name) == len(bad) + len(good)  # each file once
    for name, rows in good.items():
        assert by_name[name]["status"] == "ok", by_name[name]
        assert by_name[name]["n_samples"] == rows
        assert 0 < by_name[name]["p_value"] <= 1
    for name, reason in bad.items():
        assert by_name[name]["status"] == "error", name
        assert reason in by_name[name]["error"], (name, by_name[name]["error"])
        assert "\n" not in by_name[name]["error"]
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) == len(records)
    assert not (out / "in_progress.json").exists()
    assert (out / "detection_rate.png").stat().st_size > 0
    # a rerun never stalls on an old bad file: each is recorded once, then skipped
    assert run_monitor(detector, folder, out) == []
    assert len((out / "history.jsonl").read_text().splitlines()) == len(records)
    # the same through the command line: exit status 1 and a count of the failures
    status = main(["monitor", str(_saved(tmp_path, detector) and tmp_path / "det.npz"),
                   str(folder), "--output-dir", str(tmp_path / "cli"), "--quiet"])
    assert status == 1
    err = capsys.readouterr().err
    assert f"{len(good)} batches tested" in err and f"{len(bad)} failed" in err
    assert "Traceback" not in err


def test_monitor_max_batch_bytes(tmp_path, data, capsys):
    ref, clean = data
    folder = tmp_path / "b"
    folder.mkdir()
    np.save(folder / "big.npy", clean[:100])  # 3,200 bytes of data
    np.save(folder / "small.npy", clean[:10])
    detector = MMDDriftDetector(random_state=0).fit(ref)
    records = run_monitor(detector, folder, tmp_path / "out", max_batch_bytes=1000)
    assert [r["status"] for r in records] == ["error", "ok"]
    assert "3,200 bytes" in records[0]["error"]
    with pytest.raises(ValueError, match="max_batch_bytes"):
        run_monitor(detector, folder, tmp_path / "out", max_batch_bytes=0)
    save_detector(detector, tmp_path / "det.npz")
    assert main(["monitor", str(tmp_path / "det.npz"), str(folder), "--output-dir",
                 str(tmp_path / "cli"), "--max-batch-mib", "0.001", "--quiet"]) == 1
    assert "more than max_batch_bytes=1,048" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["monitor", str(tmp_path / "det.npz"), str(folder), "--max-batch-mib", "-1"])
    assert "not a positive number of MiB" in capsys.readouterr().err


def test_monitor_survives_any_exception_and_a_killed_run(tmp_path, data, monkeypatch):
    ref, clean = data
    folder = tmp_path / "b"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"b{i}.npy", clean[40 * i:40 * (i + 1)])
    detector = MMDDriftDetector(random_state=0).fit(ref)
    real_test = MMDDriftDetector.test

    def flaky(self, X):
        if X[0, 0] == clean[40, 0]:
            raise RuntimeError("device lost")
        return real_test(self, X)

    monkeypatch.setattr(MMDDriftDetector, "test", flaky)
    out = tmp_path / "out"
    records = run_monitor(detector, folder, out)
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert records[1]["error"] == "RuntimeError: device lost"
    # a run killed while testing a batch leaves a marker: the next run records that
    # batch as an error once and does not retry it (rescan does)
    np.save(folder / "b3.npy", clean[200:240])
    np.save(folder / "b4.npy", clean[240:280])
    (out / "in_progress.json").write_text(json.dumps({"batch": "b3.npy"}))
    records = run_monitor(detector, folder, out)
    assert [(r["batch"], r["status"]) for r in records] == [("b3.npy", "error"),
                                                            ("b4.npy", "ok")]
    assert "earlier run stopped" in records[0]["error"]
    assert not (out / "in_progress.json").exists()
    assert run_monitor(detector, folder, out) == []
    (out / "in_progress.json").write_text("{torn")  # a marker torn by the crash
    assert run_monitor(detector, folder, out) == []
    assert not (out / "in_progress.json").exists()
