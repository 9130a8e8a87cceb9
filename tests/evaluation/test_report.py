"""The report from a hand-built result (no model): self-contained HTML, Markdown, PNG figures."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from entroad.evaluation import metrics as M
from entroad.evaluation import pixel_metrics as PM
from entroad.evaluation.report import write_report
from entroad.evaluation.results import (
    ClassResult,
    DatasetResult,
    EvaluationResult,
    Example,
    ModelIdentity,
)
from entroad.evaluation.writers import write_results


def _identity(random_init: bool) -> ModelIdentity:
    return ModelIdentity(
        source="runs/train/model", backbone="ViT-L-14-336" if not random_init else "entroad-tiny",
        pretrained=None if random_init else "openai", random_init=random_init,
        weights_sha256="random-init:abc" if random_init else "f" * 64, image_size=64,
        options={"entropy": "2d", "routing": "soft"},
    )


def _example(tmp_path, label: int, score: float, rng) -> Example:
    path = tmp_path / f"img_{label}_{score:.2f}.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    mask = np.zeros((64, 64), bool)
    mask[10:20, 30:40] = label == 1
    return Example(
        dataset="mvtec", cls="bottle", image=path.name, image_path=path, label=label, score=score,
        anomaly_map=rng.random((64, 64)).astype(np.float16), mask=mask if label else None,
        entropy_map=rng.normal(size=(4, 4)).astype(np.float32), routing_map=rng.random((4, 4)).astype(np.float32),
        confidence_map=rng.random((4, 4)).astype(np.float32),
    )


def make_result(tmp_path, random_init: bool = True) -> EvaluationResult:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    s = rng.random(40) + 0.3 * y
    im = M.image_metrics(s, y)
    masks = np.zeros((4, 32, 32), bool)
    masks[1:, 8:16, 8:16] = True
    pm = PM.pixel_metrics(np.clip(masks * 0.3 + rng.random(masks.shape) * 0.7, 0, 1), masks)
    metrics = {**im.as_percent(), **pm.as_percent()}
    cls = ClassResult(
        dataset="mvtec", cls="bottle", n_images=40, n_normal=20, n_anomalous=20, n_pixel_images=4,
        metrics=metrics, pixel_exact=True, pixel_bound=dict.fromkeys(M.PIXEL_KEYS, 0.0),
        image_curves=im.curves, pixel_curves=pm.curves,
    )
    lonely = ClassResult(
        dataset="mvtec", cls="cable", n_images=3, n_normal=0, n_anomalous=3, n_pixel_images=0,
        metrics=dict.fromkeys(M.METRIC_KEYS), excluded={"image": "only anomalous images (3)"},
    )
    op = M.operating_point(s, y, specificity=0.9)
    examples = {
        "most_anomalous": [_example(tmp_path, 1, 0.95, rng), _example(tmp_path, 0, 0.9, rng)],
        "false_positives": [_example(tmp_path, 0, 0.9, rng)],
        "false_negatives": [],
    }
    d = DatasetResult(
        name="mvtec", domain="industrial", data_version="content:1234", split="test", n_images=43,
        n_normal=20, n_anomalous=23, metrics=metrics, classes=[cls, lonely],
        exclusions=[{"class": "cable", "metrics": "image", "reason": "only anomalous images (3)"}],
        pixel_exact=True, pixel_bound=dict.fromkeys(M.PIXEL_KEYS, 0.0), operating_point=op, reference="mvtec",
        scores=s, labels=y, image_classes=["bottle"] * 40, images=[f"i{i}.png" for i in range(40)], examples=examples,
    )
    return EvaluationResult(model=_identity(random_init), datasets=[d], settings={"split": "test", "max_fpr": 0.3, "pixel_bins": 65536})


def test_html_is_self_contained_with_all_sections(tmp_path):
    res = make_result(tmp_path)
    html_path, md_path = write_report(res, tmp_path / "out")
    html = html_path.read_text()
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "http://" not in html and "https://" not in html
    for s in srcs:  # every embedded figure decodes as a PNG
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()
    for text in ("RANDOM-INIT BACKBONE", "Operating point", "Per class", "only anomalous images (3)",
                 "AnomalyCLIP", "specificity ≥ 90%", "Most anomalous images", "Entropy z", "routing r", "confidence:"):
        assert text in html, text
    op = res.datasets[0].operating_point
    assert f"<td>{op.tp}</td>" in html and f"{op.threshold:.6g}" in html


def test_figures_are_written_and_linked_from_markdown(tmp_path):
    res = make_result(tmp_path)
    out = tmp_path / "out"
    _, md_path = write_report(res, out)
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["mvtec_curves.png", "mvtec_false_positives.png", "mvtec_most_anomalous.png", "mvtec_scores.png"]
    md = md_path.read_text()
    for name in pngs:
        assert f"(figures/{name})" in md
        Image.open(out / "figures" / name).verify()
    assert "RANDOM-INIT" in md


def test_no_banner_for_pretrained_backbone(tmp_path):
    html_path, _ = write_report(make_result(tmp_path, random_init=False), tmp_path / "out")
    assert "RANDOM-INIT" not in html_path.read_text()


def test_example_grid_shows_the_mask_where_it_is(tmp_path):
    """The ground-truth contour is drawn over the defect, not mirrored (a real bug once)."""
    import matplotlib

    matplotlib.use("Agg")
    from entroad.evaluation.figures import examples_figure

    rng = np.random.default_rng(1)
    ex = _example(tmp_path, 1, 0.9, rng)
    ex.mask = np.zeros((64, 64), bool)
    ex.mask[4:14, 4:14] = True  # top-left corner only
    captured = {}
    import matplotlib.axes

    real = matplotlib.axes.Axes.contour

    def spy(self, *args, **kwargs):
        cs = real(self, *args, **kwargs)
        captured.setdefault("paths", []).append(cs)
        return cs

    matplotlib.axes.Axes.contour = spy
    try:
        examples_figure([ex], "t", 0.5, tmp_path / "grid.png")
    finally:
        matplotlib.axes.Axes.contour = real
    verts = np.concatenate([p.vertices for p in captured["paths"][0].get_paths()])
    assert verts[:, 1].max() < 20 and verts[:, 0].max() < 20  # rows (y) near the top, columns near the left


def test_results_files_from_a_hand_built_result(tmp_path):
    res = make_result(tmp_path)
    out = write_results(res, tmp_path / "res", report=False)
    assert not (out / "report.html").exists()
    md = (out / "results.md").read_text()
    assert "| mvtec |" in md and "only anomalous images (3)" in md
    import json

    js = json.loads((out / "results.json").read_text())
    assert js["datasets"][0]["operating_point"]["rule"] == "anomalous if score > threshold"
    assert js["datasets"][0]["metrics"]["image_auroc"] == pytest.approx(res.datasets[0].metrics["image_auroc"])


def test_grid_titles_say_when_there_is_no_threshold(tmp_path, monkeypatch):
    import entroad.evaluation.figures as R

    res = make_result(tmp_path)
    res.datasets[0].operating_point = None
    titles = []
    real = R.examples_figure
    monkeypatch.setattr(R, "examples_figure", lambda exs, title, thr, path: titles.append((title, thr)) or real(exs, title, thr, path))
    R.make_figures(res, tmp_path / "figs")
    assert titles and all(thr is None and "no operating point" in t for t, thr in titles)


def test_example_grid_colorbars_are_opaque(tmp_path):
    """The overlay is drawn at alpha 0.5; its colour bar must still show the full colours."""
    import matplotlib.figure

    from entroad.evaluation.figures import examples_figure

    rng = np.random.default_rng(2)
    bars = []
    real = matplotlib.figure.Figure.colorbar

    def spy(self, mappable, *a, **k):
        bars.append(mappable.get_alpha())
        return real(self, mappable, *a, **k)

    matplotlib.figure.Figure.colorbar = spy
    try:
        examples_figure([_example(tmp_path, 1, 0.9, rng)], "t", 0.5, tmp_path / "g.png")
    finally:
        matplotlib.figure.Figure.colorbar = real
    assert len(bars) == 4 and all(a is None or a == 1 for a in bars)
