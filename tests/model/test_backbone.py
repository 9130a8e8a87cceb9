"""Backbone loading: tiny config, local files, caches, offline errors, air-gapped import."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import save_file

from entroad import backbone as bb
from entroad.config import BackboneConfig
from entroad.errors import ConfigError, WeightsNotFoundError
from tests.conftest import tiny_params


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Empty weights store and HF cache: nothing pretrained is on this 'machine'."""
    monkeypatch.setenv("ENTROAD_WEIGHTS_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def hf(tmp_path) -> str:
    """A private, empty Hugging Face / open_clip cache (real weights elsewhere never count)."""
    return str(tmp_path / "hf")


def test_tiny_random_init_is_deterministic_and_labelled():
    a = bb.load_backbone(tiny_params().backbone)
    b = bb.load_backbone(tiny_params().backbone)
    assert a.info.random_init and a.info.weights_sha256.startswith("random-init:")
    assert a.info.weights_sha256 == b.info.weights_sha256
    assert a.info.grid == 7 and a.info.patch_size == 16
    assert not any(p.requires_grad for p in a.model.parameters())
    c = bb.load_backbone(tiny_params(**{"backbone.init_seed": 1}).backbone)
    assert c.info.weights_sha256 != a.info.weights_sha256


def test_random_init_build_is_thread_safe_and_leaves_the_global_rng_alone():
    cfg = tiny_params().backbone
    with torch.random.fork_rng(devices=[]):  # how earlier versions seeded it: same weights now
        torch.manual_seed(cfg.init_seed)
        before = "random-init:" + bb.state_sha256(bb._create(cfg.name, None, cfg.image_size, False))
    hashes: list[str] = []
    stop = threading.Event()

    def build():
        hashes.append(bb.load_backbone(cfg).info.weights_sha256)

    def draw_from_global_rng():
        while not stop.is_set():
            torch.randn(64)

    noise = threading.Thread(target=draw_from_global_rng)
    noise.start()
    builders = [threading.Thread(target=build) for _ in range(3)]
    for t in builders:
        t.start()
    for t in builders:
        t.join()
    stop.set()
    noise.join()
    assert hashes == [before] * 3
    state = torch.random.get_rng_state()
    bb.load_backbone(cfg)
    assert torch.equal(state, torch.random.get_rng_state())


def test_missing_pretrained_weights_name_the_file_and_the_fix(isolated_caches):
    with pytest.raises(WeightsNotFoundError) as err:
        bb.resolve_weights("ViT-L-14-336", "openai", hf(isolated_caches))
    msg = str(err.value)
    assert "timm/vit_large_patch14_clip_336.openai/open_clip_pytorch_model.bin" in msg
    assert "entroad weights import PATH --name ViT-L-14-336 --tag openai" in msg
    assert "entroad weights fetch" in msg and "offline mode" in msg
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        bb.resolve_weights("ViT-B-16", str(isolated_caches / "nope.safetensors"), hf(isolated_caches))
    with pytest.raises(ConfigError, match="known tags"):
        bb.resolve_weights("ViT-B-16", "no-such-tag")
    with pytest.raises(ConfigError, match="not an open_clip model"):
        bb.resolve_weights("ViT-Q-99", "openai")
    # fetch refuses cleanly in offline mode instead of trying the network
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE"):
        bb.fetch_weights("ViT-B-16", "openai", hf(isolated_caches))


def test_fallback_to_tiny_when_weights_are_missing(isolated_caches):
    cfg = BackboneConfig(
        name="ViT-L-14-336", pretrained="openai", random_init_fallback=True, fallback_image_size=112,
        cache_dir=hf(isolated_caches),
    )
    got = bb.load_backbone(cfg)
    assert got.info.name == "entroad-tiny" and got.info.random_init and got.info.image_size == 112
    assert "entroad weights import" in got.info.fallback_reason
    with pytest.raises(WeightsNotFoundError):
        bb.load_backbone(cfg, allow_fallback=False)


def test_hf_cache_hit_is_found_without_network(isolated_caches):
    # the layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/file}
    repo = isolated_caches / "hf" / "models--timm--vit_large_patch14_clip_336.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"weights")
    assert bb.resolve_weights("ViT-L-14-336", "openai", hf(isolated_caches)) == snap / "open_clip_model.safetensors"


def test_local_weights_file_loads_with_positional_interpolation_and_hash(tmp_path):
    src = bb.load_backbone(tiny_params(**{"backbone.image_size": 224}).backbone)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    cfg = tiny_params(**{"backbone.pretrained": str(path), "backbone.image_size": 112}).backbone
    got = bb.load_backbone(cfg)
    assert not got.info.random_init and got.info.weights_file == str(path)
    assert got.info.weights_sha256 == bb.file_sha256(path) and len(got.info.weights_sha256) == 64
    # 14x14 grid at 224 px interpolated to 7x7 at 112 px; the other weights are the file's
    assert got.model.visual.positional_embedding.shape == (1 + 49, 128)
    assert torch.equal(got.model.visual.conv1.weight, src.model.visual.conv1.weight)


def test_image_size_must_be_divisible_by_patch():
    with pytest.raises(ConfigError, match="not divisible by the patch size 16"):
        bb.load_backbone(tiny_params(**{"backbone.image_size": 100}).backbone)


def test_air_gapped_import_makes_the_tag_resolvable(tmp_path, isolated_caches):
    bogus = tmp_path / "ViT-B-32.safetensors"
    save_file({"x": torch.zeros(2)}, str(bogus))
    with pytest.raises(WeightsNotFoundError, match="does not load into ViT-B-32"):
        bb.import_weights(bogus, "ViT-B-32", "openai", verify=True)
    assert not (isolated_caches / "store" / "ViT-B-32").exists()
    dest = bb.import_weights(bogus, "ViT-B-32", "openai", verify=False)
    assert dest.parent == isolated_caches / "store" / "ViT-B-32" / "openai"
    assert bb.resolve_weights("ViT-B-32", "openai", hf(isolated_caches)) == dest
    assert (dest.parent / "weights.json").read_text().count(bb.file_sha256(dest)) == 1
