"""End-to-end evaluation on tiny synthetic datasets with a tiny random-init checkpoint.

The numbers are meaningless (random backbone) but the plumbing is checked against
independent recomputation: per-class image metrics from the per-image scores with
scikit-learn, pixel metrics from maps collected by hand, means over classes, exclusions.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from entroad.data.torch_dataset import ManifestImageDataset
from entroad.errors import CheckpointError, ConfigError, EvaluationError
from entroad.evaluation import metrics as M
from entroad.evaluation import pixel_metrics as PM
from entroad.evaluation.engine import evaluate, run_evaluation
from entroad.evaluation.reference import reference_key
from entroad.model_source import find_checkpoint_dir, parse_ablations, resolved_checkpoint
from tests.evaluation.conftest import dataset, eval_params, read_json

TOL = 1e-6  # percent points; values are recomputed from the same float32 model outputs


@pytest.fixture(scope="module")
def full_run(checkpoint, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    res = evaluate(
        checkpoint,
        [data_root / "mvtec-ad", data_root / "polyps", data_root / "nomask"],
        eval_params(),
        out,
        ablations="entropy=none,routing=none+confidence=off",
        device="cpu",
        progress=False,
    )
    return res, out


def test_outputs_and_identity(full_run):
    res, out = full_run
    for name in ("results.csv", "results.json", "results.md", "scores.csv", "report.html", "report.md"):
        assert (out / name).is_file(), name
    assert list((out / "figures").glob("*.png"))
    js = read_json(out / "results.json")
    assert js["random_init"] is True and js["model"]["random_init"] is True
    assert js["model"]["backbone"] == "entroad-tiny"
    assert js["model"]["weights_sha256"].startswith("random-init:")
    versions = {d["name"]: d["data_version"] for d in js["datasets"]}
    assert all(v.startswith(("content:", "md5:")) or v.endswith(".dir") for v in versions.values()), versions
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["random_init"] for r in rows} == {"True"}
    assert {r["variant"] for r in rows} == {"full", "entropy=none", "routing=none+confidence=off"}
    assert "RANDOM-INIT" in (out / "results.md").read_text()


def test_image_metrics_match_sklearn_on_written_scores(full_run):
    res, out = full_run
    with open(out / "scores.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["variant"] == "full" and r["dataset"] == "mvtec-ad"]
    assert len(rows) == 12
    d = res.dataset("mvtec-ad")
    per_class = []
    for c in d.classes:
        y = np.array([int(r["label"]) for r in rows if r["class"] == c.cls])
        s = np.array([float(r["score"]) for r in rows if r["class"] == c.cls])
        assert abs(c.metrics["image_auroc"] - 100 * roc_auc_score(y, s)) < 1e-3  # CSV keeps 6 decimals
        assert abs(c.metrics["image_ap"] - 100 * average_precision_score(y, s)) < 1e-3
        per_class.append(c.metrics["image_auroc"])
    assert d.metrics["image_auroc"] == pytest.approx(np.mean(per_class), abs=1e-9)


def _collect_maps(model, ds, cls):
    info = model.backbone_info
    tds = ManifestImageDataset(ds, model.image_size, info.mean, info.std, split="test", classes=[cls])
    maps, masks = [], []
    for i in range(len(tds)):
        item = tds[i]
        if item["pixel_label"]:
            maps.append(model.predict(item["image"][None]).anomaly_map[0].numpy())
            masks.append(item["mask"].numpy() > 0.5)
    return np.stack(maps), np.stack(masks)


def test_pixel_metrics_match_direct_computation(full_run, loaded_model, data_root):
    res, _ = full_run
    ds = dataset(data_root, "mvtec-ad")
    for c in res.dataset("mvtec-ad").classes:
        maps, masks = _collect_maps(loaded_model, ds, c.cls)
        assert c.n_pixel_images == len(maps) == 6
        assert c.pixel_exact is True
        y, s = masks.ravel(), maps.ravel().astype(np.float64)
        assert abs(c.metrics["pixel_auroc"] - 100 * roc_auc_score(y, s)) < 1e-4
        assert abs(c.metrics["pixel_ap"] - 100 * average_precision_score(y, s)) < 1e-4
        assert abs(c.metrics["pixel_aupro"] - 100 * PM.aupro(maps, masks, 0.3)) < 1e-4


def test_binned_mode_within_its_bound(loaded_model, data_root, full_run):
    exact = full_run[0].dataset("mvtec-ad")
    res = evaluate(
        loaded_model, [data_root / "mvtec-ad"], eval_params(**{"evaluation.pixel_metrics": "binned"}), progress=False
    )
    d = res.dataset("mvtec-ad")
    assert d.pixel_exact is False
    for c_b, c_e in zip(d.classes, exact.classes, strict=True):
        for k in ("pixel_auroc", "pixel_ap", "pixel_aupro"):
            assert abs(c_b.metrics[k] - c_e.metrics[k]) <= c_b.pixel_bound[k] + 1e-6, (c_b.cls, k)
        assert max(c_b.pixel_bound.values()) < 0.1  # 65536 bins: well under a tenth of a point here


def test_exclusions_are_reported_not_silent(full_run):
    res, _ = full_run
    polyps = res.dataset("polyps")  # only anomalous images (with masks)
    assert all(polyps.metrics[k] is None for k in M.IMAGE_KEYS)
    assert polyps.metrics["pixel_auroc"] is not None
    assert any("only anomalous" in e["reason"] for e in polyps.exclusions)
    assert any("Image-level metrics are absent" in n for n in polyps.notes)
    assert polyps.operating_point is None
    nomask = res.dataset("nomask")  # no masks at all
    assert all(nomask.metrics[k] is None for k in M.PIXEL_KEYS)
    assert nomask.metrics["image_auroc"] is not None
    assert any("no pixel annotations" in e["reason"] for e in nomask.exclusions)
    js = read_json(full_run[1] / "results.json")
    assert all(v is None or math.isfinite(v) for d in js["datasets"] for v in d["metrics"].values())


def test_single_label_class_is_excluded(loaded_model, data_root):
    # min_per_label above the class sizes: every class has "too few images of one label".
    res = evaluate(loaded_model, [data_root / "mvtec-ad"], eval_params(**{"evaluation.min_per_label": 4}), progress=False)
    d = res.dataset("mvtec-ad")
    assert d.metrics["image_auroc"] is None
    assert d.exclusions[0]["class"] == "(all)" and "too few images" in d.exclusions[0]["reason"]


def test_ablation_variants_are_different_models_on_the_same_data(full_run):
    res, _ = full_run
    assert set(res.variants) == {"entropy=none", "routing=none+confidence=off"}
    assert res.variants["entropy=none"].model.options["entropy"] == "none"
    v = res.variants["routing=none+confidence=off"].model.options
    assert v["routing"] == "none" and v["confidence"] is False
    base = res.dataset("mvtec-ad")
    for var in res.variants.values():
        other = var.dataset("mvtec-ad")
        assert other.images == base.images  # same images, same order
        assert not np.allclose(other.scores, base.scores)  # and really a different model
    rows = res.ablation_table()
    row = next(r for r in rows if r["variant"] == "entropy=none" and r["dataset"] == "mvtec-ad")
    assert row["delta_pixel_auroc"] == pytest.approx(row["pixel_auroc"] - base.metrics["pixel_auroc"])


def test_parse_ablations():
    assert parse_ablations("entropy=none,routing=none") == {"entropy=none": {"entropy": "none"}, "routing=none": {"routing": "none"}}
    assert parse_ablations("model.alpha=1+branches=prior") == {"alpha=1+branches=prior": {"alpha": 1, "branches": "prior"}}
    with pytest.raises(ConfigError):
        parse_ablations("entropy")


def test_unknown_ablation_option_is_a_config_error(checkpoint, data_root):
    with pytest.raises(ConfigError, match="not a model option"):
        evaluate(checkpoint, [data_root / "nomask"], eval_params(), ablations="entropyy=none", device="cpu", progress=False)


def test_nan_map_is_an_error_naming_the_image(loaded_model, data_root, monkeypatch):
    model = loaded_model
    real = model.predict

    def broken(images, class_names=None):
        out = real(images, class_names)
        out.anomaly_map[0, 5, 5] = float("nan")
        return out

    monkeypatch.setattr(model, "predict", broken)
    ds = dataset(data_root, "mvtec-ad")
    with pytest.raises(EvaluationError, match=r"images/.*\.png.*non-finite"):
        run_evaluation({"full": model}, [(ds, ds.root)], eval_params(), "test", progress=False)


def test_empty_split_and_mismatched_variants(loaded_model, data_root):
    model = loaded_model
    ds = dataset(data_root, "nomask")
    with pytest.raises(EvaluationError, match="no images in split 'train'"):
        run_evaluation({"full": model}, [(ds, ds.root)], eval_params(**{"evaluation.split": "train"}), "t", progress=False)

    class Other:  # a variant on another image size must be refused, not silently compared
        image_size = 224
        backbone_info = model.backbone_info

    with pytest.raises(EvaluationError, match="does not share"):
        run_evaluation({"full": model, "x": Other()}, [(ds, ds.root)], eval_params(), "t", progress=False)


def test_backbone_mismatch_is_refused(checkpoint, data_root, tmp_path):
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(checkpoint, bad)
    cfg = read_json(bad / "config.json")
    cfg["backbone"]["weights_sha256"] = "random-init:" + "0" * 64
    (bad / "config.json").write_text(__import__("json").dumps(cfg))
    with pytest.raises(CheckpointError):
        evaluate(bad, [data_root / "nomask"], eval_params(), device="cpu", progress=False)


def test_suite_targets_and_in_domain_flag(loaded_model, data_root, tmp_path):

    from entroad.data.synthetic import write_processed_dataset

    write_processed_dataset(tmp_path / "processed", "aux-train", ["wood"], 2, 2, 48, seed=5)
    p = eval_params(**{
        "data.root": str(tmp_path),
        "evaluation.suites": {"industrial": {"train": "visa", "targets": ["aux-train"]}},
    })
    res = evaluate(loaded_model, None, p, suite="industrial", progress=False)
    assert [d.name for d in res.datasets] == ["aux-train"]
    d = res.datasets[0]
    assert d.in_domain and any("not zero-shot" in n for n in d.notes)
    assert any("expects a model trained on 'visa'" in n for n in res.settings["notes"])
    with pytest.raises(ConfigError, match="no suite named"):
        evaluate(loaded_model, None, p, suite="medical", progress=False)


def test_reference_matching():
    assert reference_key("mvtec-ad") == "mvtec" and reference_key("MVTec_AD") == "mvtec"
    assert reference_key("visa") == "visa" and reference_key("brain-mri") == "brainmri"
    assert reference_key("synthetic-industrial") is None
    assert reference_key("my-parts", {"my-parts": "visa"}) == "visa"
    with pytest.raises(ConfigError):
        reference_key("x", {"x": "imagenet"})


def test_report_sits_beside_reference_numbers(full_run):
    res, out = full_run
    assert res.dataset("mvtec-ad").reference == "mvtec"
    html = (out / "report.html").read_text()
    assert "AnomalyCLIP" in html and "91.5" in html
    # the §9 comparison uses the anchors' AUPRO definition, and the report names both
    assert res.settings["aupro"] == "official"
    for c in res.dataset("mvtec-ad").classes:
        assert c.metrics["pixel_aupro_anomalyclip"] is not None
        assert c.metrics["pixel_aupro_anomalyclip"] != c.metrics["pixel_aupro"]
    assert "AUPRO (AnomalyCLIP def.)" in html and "AUPRO definition" in html


def test_checkpoint_resolution_from_artifact_uri(checkpoint, tmp_path):
    import shutil

    nested = tmp_path / "run" / "model" / "artifacts" / "checkpoint"
    shutil.copytree(checkpoint, nested)
    assert find_checkpoint_dir(tmp_path / "run") == nested
    with resolved_checkpoint(f"file://{tmp_path / 'run'}") as local:
        assert (local / "weights.safetensors").is_file() and local.name == "checkpoint"
        downloaded = local
    assert not downloaded.exists()  # the temporary download is cleaned up
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        with resolved_checkpoint(tmp_path / "missing"):
            pass


def test_in_memory_model_and_mlflow_metrics(loaded_model, data_root):
    model = loaded_model
    res = evaluate(model, [data_root / "nomask"], eval_params(), progress=False)
    flat = res.mlflow_metrics()
    assert set(flat) == {f"nomask/{k}" for k in M.IMAGE_KEYS}
    assert res.domain_means()["industrial"]["image_auroc"] == flat["nomask/image_auroc"]
    assert torch.is_tensor(model.gamma)  # the model was not consumed


@pytest.mark.slow
@pytest.mark.integration
def test_evaluate_a_registered_model_by_alias(checkpoint, data_root, tmp_path, monkeypatch):
    """``models:/name@alias`` resolves through a real MLflow registry to the logged checkpoint."""
    import mlflow
    from mlflow import MlflowClient

    from entroad.tracking.pyfunc import log_pyfunc_model
    from entroad.tracking.store import ensure_experiment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = eval_params(**{"tracking.artifact_root": str(tmp_path / "artifacts")})
    with mlflow.start_run(experiment_id=ensure_experiment(p)):
        info = log_pyfunc_model(checkpoint)
    version = mlflow.register_model(info.model_uri, "entroad-eval-test")
    MlflowClient().set_registered_model_alias("entroad-eval-test", "champion", version.version)
    res = evaluate("models:/entroad-eval-test@champion", [data_root / "nomask"], p, device="cpu", progress=False)
    assert res.model.source == "models:/entroad-eval-test@champion"
    assert res.model.weights_sha256 == read_json(checkpoint / "config.json")["backbone"]["weights_sha256"]
    assert res.dataset("nomask").metrics["image_auroc"] is not None
