"""The choices a training run makes from its data (size, epochs) and the augmentation, without training."""
import numpy as np
import pytest
import torch

from edge.errors import InvalidInput
from edge.train.augment import Augmentation, zoom_keeping_defect
from edge.train.recipe import MAX_AUTO_SIZE, choose_epochs, choose_size, downscale_note


def test_the_input_size_follows_the_images_and_their_defects_and_says_why():
    # large defects (NEU-DET: 10th percentile 18 px in 200 px images): trained small, but not below 128
    neu = choose_size([(200, 200)] * 10, [18.0] * 6 + [40.0] * 24)
    assert neu.size == 128 and "18.0 px wide" in neu.reason and neu.source_size == (200, 200)
    # tiny defects keep the full resolution, up to the automatic maximum
    tiny = choose_size([(240, 240)] * 5, [3.0] * 20)
    assert tiny.size == 240 and tiny.defect_px_p10 == pytest.approx(3.0)
    big = choose_size([(300, 300)] * 5 + [(600, 200)] * 6, [3.0] * 20)
    assert big.size == MAX_AUTO_SIZE and "largest size chosen automatically" in big.reason
    assert big.defect_px_p10 < 2 and "consider a larger --size" in big.reason     # 3 px at scale 0.43
    unannotated = choose_size([(300, 300)] * 4, [])
    assert unannotated.size == MAX_AUTO_SIZE and "no annotations" in unannotated.reason
    small = choose_size([(40, 50)] * 3, [])
    assert small.size == 64 and "minimum" in small.reason
    # unannotated photographs much larger than the input: the user is told what the scaling costs
    note = downscale_note(2000, 224)
    assert "scaled down 8.9x" in note and "narrower than about 18 px" in note and "masks or boxes" in note
    assert downscale_note(300, 224) == ""
    assert choose_size([(203, 203)], []).size % 8 == 0


def test_the_training_images_typical_shape_keeps_their_long_side_whatever_the_orientation():
    from edge.data.geometry import should_tile, training_scale

    # half portrait, half landscape, 1:3: the median H and the median W are both near the short side
    shapes = [(66, 196), (196, 66), (70, 200), (200, 70), (60, 190)]
    choice = choose_size(shapes, [5.0] * 10)
    assert choice.source_size == (66, 196)                      # landscape the majority: (short, long)
    assert choose_size([(196, 66), (200, 70), (66, 196)], []).source_size == (196, 66)
    served = {"size": [choice.size] * 2, "source_size": list(choice.source_size)}
    assert training_scale(served) == pytest.approx(choice.size / 196)
    # a frame like the training images is letterboxed whole, as training did; three times larger is tiled
    assert not should_tile(240, 80, served) and should_tile(600, 200, served)


def test_epochs_are_sized_to_the_data_and_cut_to_the_time_budget():
    e, why = choose_epochs(1000, None, seconds_per_epoch=None, budget_s=None)
    assert e == 60 and "1000 training images" in why
    e, why = choose_epochs(1000, None, seconds_per_epoch=30.0, budget_s=600.0)
    assert e == 20 and "cut to 20" in why and "measured" in why
    assert choose_epochs(100_000, None, None, None)[0] == 12           # at least a dozen passes
    assert choose_epochs(10, None, None, None)[0] == 150               # and a bound for tiny sets
    assert choose_epochs(1000, 7, seconds_per_epoch=1.0, budget_s=600.0) == (7, "--epochs 7")
    e, why = choose_epochs(1000, None, seconds_per_epoch=30.0, budget_s=-20.0)   # loading spent the budget
    assert e == 1 and "spent before training began" in why


def test_zoom_keeps_the_defect_in_view_and_moves_the_mask_with_the_image():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(256, 1, 64, 64)
    m = torch.zeros(256, 1, 64, 64)
    x[:, :, 2:6, 50:60] = 1.0          # the defect sits in a corner: the easiest to crop away
    m[:, :, 2:6, 50:60] = 1.0
    xo, mo = zoom_keeping_defect(x, m, (1.2, 1.6), g)
    assert (mo.flatten(1).sum(1) > 0).all()                      # never cropped out
    assert not ((xo > 0.5) & (mo < 0.5)).any()                   # every defect pixel stays masked...
    assert ((mo > 0.5) & (xo < 0.05)).sum() == 0                 # ...and the mask is not bigger than the defect


def test_augmentation_parts_are_parsed_checked_and_seeded():
    assert Augmentation.parse("flips") == Augmentation(flips=(2, 3))
    aug = Augmentation.parse("flips,rot90,photometric,noise")
    assert aug.rotate90 and aug.photometric and aug.noise > 0
    assert Augmentation.parse("none").flips == ()
    for spec, message in (("flips,twirl", "unknown part"), ("rot90", "not square"), ("none,flips", "cannot be combined")):
        with pytest.raises(ValueError, match=message):
            Augmentation.parse(spec, square=spec != "rot90")
    with pytest.raises(ValueError, match="physical units"):
        Augmentation.parse("photometric", photographs=False)
    x = torch.rand(8, 1, 32, 32)
    a1, m1 = aug(x.clone(), torch.zeros(8, 1, 32, 32), torch.Generator().manual_seed(3))
    a2, m2 = aug(x.clone(), torch.zeros(8, 1, 32, 32), torch.Generator().manual_seed(3))
    assert a1.shape == x.shape and torch.equal(a1, a2) and torch.equal(m1, m2)


def test_the_prior_correction_is_chosen_on_validation_and_keeps_the_smaller_tau_on_ties():
    import numpy as np

    from edge.train.recipe import choose_prior_correction

    counts = np.array([90, 10])                     # a defect-free majority
    # balanced logits that lean towards the rare class: half the majority is called a defect
    logits = np.array([[0.0, 0.5]] * 45 + [[1.0, 0.0]] * 45 + [[0.0, 1.0]] * 10)
    y = np.array([0] * 90 + [1] * 10)
    accuracy = lambda t, p: float((t == p).mean())          # noqa: E731
    tau, scores = choose_prior_correction(logits, y, counts, 1.0, accuracy)
    assert scores[0.0] == 0.55 and scores[0.25] == 1.0 and scores[1.0] == 0.9 and tau == 0.25
    clean = np.array([[1.0, 0.0]] * 90 + [[0.0, 1.0]] * 10)        # right at tau 0 and 0.25: the smaller wins
    assert choose_prior_correction(clean, y, counts, 1.0, accuracy)[0] == 0.0
    assert choose_prior_correction(logits, y, np.array([50, 50]), 1.0, accuracy) == (0.0, {})   # balanced data
    assert choose_prior_correction(logits, y, counts, 0.0, accuracy) == (0.0, {})              # no rebalancing


def test_the_cam_method_is_the_one_that_localised_best_on_validation():
    from edge.audit.localisation import choose_cam_method

    pointing = {"gradcam": {"scratch": 0.3, "pit": 1.0}, "gradcam++": {"scratch": 0.6, "pit": 0.9},
                "hirescam": {"scratch": 0.9, "pit": 0.95}}
    method, why = choose_cam_method(pointing)
    assert method == "hirescam" and "worst class 0.90" in why
    tie = {"gradcam": {"a": 0.9}, "hirescam": {"a": 0.9}}
    assert choose_cam_method(tie)[0] == "gradcam"                  # ties keep the reference method
    assert choose_cam_method({"gradcam": {}, "hirescam": {}}) [0] == "gradcam"   # nothing to judge by
    # the reason says why there was nothing: no annotations, or none of the annotated defects answered right
    assert "no sample with a mask" in choose_cam_method({})[1]
    assert "no annotated defect classified correctly" in choose_cam_method({"gradcam": {}, "hirescam": {}})[1]
    # equal pointing games: the map that covers the annotated defects better (tolerant IoU) decides
    tie = {"hirescam": {"a": 1.0, "b": 1.0}, "gradcam-elementwise": {"a": 1.0, "b": 1.0}}
    iou = {"hirescam": {"a": 0.9, "b": 0.8}, "gradcam-elementwise": {"a": 0.95, "b": 0.85}}
    method, why = choose_cam_method(tie, overlap=iou)
    assert method == "gradcam-elementwise" and "tolerant IoU 0.90" in why
    assert choose_cam_method(tie)[0] == "hirescam"
    # the pointing game still comes first
    assert choose_cam_method({**tie, "hirescam": {"a": 1.0, "b": 1.0}, "gradcam-elementwise": {"a": 1.0, "b": 0.9}},
                             overlap=iou)[0] == "hirescam"


def test_the_cam_method_is_chosen_on_the_validation_split_and_some_annotated_training_samples():
    import numpy as np

    from edge.train.train import cam_choice_samples

    labels = ["ok"] * 10 + ["pit"] * 50 + ["crack"] * 5
    annotated = np.array([lbl != "ok" for lbl in labels])
    tr, va = np.arange(0, 60), np.arange(60, 65)
    idx, added = cam_choice_samples(labels, annotated, tr, va, seed=0, per_class=30)
    assert list(idx[:5]) == list(va)                                 # the validation split, all of it
    extra = idx[5:]
    assert added == len(extra) == 30 and {labels[i] for i in extra} == {"pit"}   # at most 30 a class
    assert len(set(extra)) == 30 and set(extra) <= set(tr) and all(annotated[extra])  # annotated training ones
    again, _ = cam_choice_samples(labels, annotated, tr, va, seed=0, per_class=30)
    assert list(again) == list(idx)                                  # seeded
    assert cam_choice_samples(labels, np.zeros(65, bool), tr, va, 0)[1] == 0       # nothing annotated


def test_attention_pooling_only_where_masks_or_boxes_can_guide_it():
    from edge.train.recipe import choose_pool
    assert choose_pool(True)[0] == "attention"
    pool, why = choose_pool(False)
    assert pool == "meanmax" and "no masks or boxes" in why


def test_context_layers_on_photographs_from_scratch_only_unless_asked():
    from edge.errors import InvalidInput
    from edge.train.recipe import PHOTO_CONTEXT, choose_context
    assert choose_context(None, True, "scratch")[0] == PHOTO_CONTEXT > 0
    assert choose_context(None, False, "scratch")[0] == 0 and "simulator" in choose_context(None, False, "scratch")[1]
    assert choose_context(None, True, "lite0")[0] == 0
    assert choose_context(0, True, "scratch") == (0, "--context 0")
    assert choose_context(1, False, "scratch") == (1, "--context 1 (a Grad-CAM cell sees 75 px)")
    assert choose_context(0, True, "lite0")[0] == 0
    for bad, backbone, says in ((4, "scratch", "0 to 3"), (-1, "scratch", "0 to 3"), (2, "lite0", "from-scratch")):
        with pytest.raises(InvalidInput, match=says):
            choose_context(bad, True, backbone)


def test_context_layers_widen_what_a_grad_cam_cell_sees_and_keep_the_target_layer_last():
    """The receptive field of one target-layer cell, read off the input gradient, is what the training log
    says: 43 px for the plain network, 43 + 2 * 8 * (2 + 4) = 139 px with two dilated layers (and 267 with
    three); the map's resolution is unchanged."""
    import torch

    from edge.train.models import FusionClassifier

    def field(context: int) -> tuple[int, tuple]:
        torch.manual_seed(0)
        model = FusionClassifier(1, 3, width=8, context=context).eval()
        x = torch.randn(1, 1, 320, 320, requires_grad=True)
        a = model.features(x)
        a[0, :, 20, 20].sum().backward()
        rows = (x.grad[0, 0].abs() > 0).any(dim=1).nonzero()
        return int(rows.max() - rows.min() + 1), tuple(a.shape[2:])

    from edge.train.recipe import context_field_px

    for context in (0, 2, 3):
        assert field(context) == (context_field_px(context), (40, 40))
    assert context_field_px(0) == 43 and context_field_px(2) == 139
    model = FusionClassifier(1, 3, width=8, context=2)
    last = model.features[len(model.features) - 1][0]
    assert model.target_layer == f"features.{len(model.features) - 1}" and last.dilation == (1, 1)


def test_the_run_says_which_classes_its_model_misses_on_validation():
    import numpy as np

    from edge.evaluate import classification_metrics
    from edge.train.classifier import validation_summary

    classes = ["ok", "crack", "pit"]
    y = np.array([0] * 40 + [1] * 20 + [2] * 6)
    good = validation_summary(classification_metrics(y, y, classes))
    assert good == ["validation (66 images): accuracy 100.0 %; recall ok 1.00 (40), crack 1.00 (20), pit 1.00 (6)"]
    pred = y.copy()
    pred[40:52] = 0                                  # 12 of 20 cracks missed, 5 of 6 pits
    pred[60:65] = 0
    head, caution = validation_summary(classification_metrics(y, pred, classes))
    assert "crack 0.40 (20)" in head and "pit 0.17 (6)" in head
    assert "crack (40 % of 20)" in caution and "pit (17 % of 6, too few to say more than roughly)" in caution
    assert "ok" not in caution.split("More examples")[0] and "edge-xai evaluate" in caution
    # a class too small to reach the validation split is said to be unjudged, not left out
    y2, p2 = np.array([0] * 5 + [2] * 2), np.array([0] * 5 + [2] * 2)
    head, unseen = validation_summary(classification_metrics(y2, p2, classes))
    assert "crack - (0)" in head and "holds no image of crack" in unseen


def test_the_pretrained_backbone_is_chosen_for_photographs_nothing_else_localises():
    from edge.errors import InvalidInput
    from edge.train.recipe import choose_backbone

    backbone, why = choose_backbone("auto", photographs=True, localised=False, available=True)
    assert backbone == "lite0" and "without masks or boxes" in why
    backbone, why = choose_backbone("auto", True, True, True)
    assert backbone == "scratch" and "--backbone lite0" in why                # masks/boxes teach the finer layer;
    assert "--backbone lite0" not in choose_backbone("auto", True, True, False)[1]   # the option said if installed
    assert choose_backbone("auto", False, False, True)[0] == "scratch"      # simulator frames
    backbone, why = choose_backbone("auto", True, False, available=False)
    assert backbone == "scratch" and "not installed" in why
    assert choose_backbone("lite0", False, True, True) == ("lite0", "--backbone lite0")
    assert choose_backbone("scratch", True, False, True) == ("scratch", "--backbone scratch")
    with pytest.raises(InvalidInput, match="--backbone 'vgg'"):
        choose_backbone("vgg", True, False, True)


def test_fine_tuning_is_sized_in_fewer_samples_than_learning_from_scratch():
    from edge.train.recipe import PRETRAINED_MIN_FIT_EPOCHS, PRETRAINED_SAMPLES_SEEN

    e, why = choose_epochs(1773, None, None, None, PRETRAINED_SAMPLES_SEEN, PRETRAINED_MIN_FIT_EPOCHS)
    assert e == 12 and f"about {PRETRAINED_SAMPLES_SEEN} samples" in why
    assert choose_epochs(1773, None, None, None)[0] == 34


def test_the_pretrained_backbone_is_not_chosen_larger_than_it_was_trained():
    from edge.train.recipe import cap_for_pretrained

    assert cap_for_pretrained(160, "why") == (160, "why")
    size, why = cap_for_pretrained(256, "the images' median long side is 300 px")
    assert size == 224 and why.startswith("the images'") and "224 px for the pretrained backbone" in why


def test_bfloat16_is_chosen_only_where_the_cpu_computes_it():
    from edge.errors import InvalidInput
    from edge.train.recipe import choose_precision

    precision, why = choose_precision("auto", native=True)
    assert precision == "bf16" and "natively" in why
    assert choose_precision("auto", native=False)[0] == "fp32"           # emulated bf16 is slower
    precision, why = choose_precision("auto", native=True, pretrained=True)
    assert precision == "fp32" and "pretrained backbone" in why         # not shown harmless for fine-tuning
    assert choose_precision("bf16", native=True, pretrained=True)[0] == "bf16"
    assert choose_precision("fp32", native=True) == ("fp32", "--precision fp32")
    assert choose_precision("bf16", native=True) == ("bf16", "--precision bf16")
    with pytest.raises(InvalidInput, match="no native bfloat16"):
        choose_precision("bf16", native=False)
    with pytest.raises(InvalidInput, match="--precision 'fp16'"):
        choose_precision("fp16", native=True)


@pytest.mark.skipif(not __import__("edge.train.classifier", fromlist=["bf16_native"]).bf16_native(),
                    reason="needs a CPU with native bfloat16")
def test_a_bfloat16_training_step_keeps_float32_weights_and_a_float32_loss():
    import numpy as np

    from edge.data.preprocess import Normalisation
    from edge.train.augment import Augmentation
    from edge.train.classifier import ClassifierData, ClassifierRecipe, _step, make_model

    recipe = ClassifierRecipe(pool="attention", precision="bf16")
    model = make_model(1, 3, recipe, mask_head=True).train()
    n = 4
    x = torch.rand(n, 1, 32, 32)
    y = torch.tensor([0, 1, 2, 1])
    data = ClassifierData(x.numpy(), y.numpy(), np.zeros((n, 32, 32), bool), np.ones(n, bool), np.arange(n),
                          np.arange(0), ["ok", "a", "b"], Normalisation("per_image"))
    tensors = (x, y, torch.zeros(n, 1, 32, 32), torch.ones(n, dtype=torch.bool))
    loss = _step(model, data, recipe, Augmentation.parse("none", square=True, photographs=True), torch.arange(n),
                 torch.Generator().manual_seed(0), torch.nn.CrossEntropyLoss(), True, tensors)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_each_image_s_defect_weighs_as_much_as_the_rest_of_that_image_in_the_mask_loss():
    import torch.nn.functional as F

    from edge.train.classifier import balanced_mask_loss

    target = torch.zeros(4, 1, 4, 4)
    target[0, 0, 1, 1] = 1              # a one-cell pit
    target[1, 0, :1, :] = 1             # a four-cell scratch
    target[2, 0, :3, :] = 1             # a stain over three quarters of the frame
    logits = torch.zeros_like(target, requires_grad=True)       # image 3: defect-free
    balanced_mask_loss(logits, target).backward()
    pull = logits.grad.abs()
    on = [pull[i][target[i] > 0].sum().item() for i in range(3)]
    off = [pull[i][target[i] == 0].sum().item() for i in range(3)]
    # the pit's one cell pulls as hard as its 15 defect-free cells together; so do the scratch's four
    assert on[0] == pytest.approx(off[0]) and on[1] == pytest.approx(off[1])
    assert on[0] == pytest.approx(15 * pull[0, 0, 0, 0].item())
    # a defect larger than the rest of its image is not weighed down: each cell counts once
    assert pull[2, 0, 0, 0].item() == pytest.approx(pull[2, 0, 3, 0].item())
    # defect-free images, and images whose defect fills half: plain binary cross-entropy
    half = torch.zeros(2, 1, 4, 4)
    half[0, 0, :2, :] = 1
    random = torch.randn(2, 1, 4, 4)
    assert balanced_mask_loss(random, half).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(random, half).item())


def test_a_defect_image_whose_mask_marks_nothing_is_not_taught_that_nothing_is_there(tmp_path):
    from edge.train.train import mask_ground_truth, unmarked_note

    masks = np.zeros((5, 4, 4), bool)
    masks[1, 2, 2] = True                        # a marked pit
    has_mask = np.array([True, True, True, False, True])
    y = np.array([0, 1, 1, 1, 2])                # 0 is the defect-free class
    known, unmarked = mask_ground_truth(has_mask, masks, y, ok_index=0)
    # defect-free: ground truth, mask file or not; a marked defect: ground truth; a defect whose mask file
    # marks nothing (2, 4) and one without a mask file (3): no mask loss
    assert known.tolist() == [True, True, False, False, False]
    assert unmarked.tolist() == [False, False, True, False, True]
    # a set without a defect-free class (NEU-DET): the same for every class
    known, unmarked = mask_ground_truth(has_mask, masks, y, ok_index=-1)
    assert known.tolist() == [False, True, False, False, False] and unmarked.tolist() == [True, False, True, False, True]
    paths = [tmp_path / "pit" / f"{i}.png" for i in range(5)]
    note = unmarked_note(np.array([False, True, True, True, True]), paths, tmp_path)
    assert note.startswith("4 defect images with a mask that marks nothing (pit/1.png, pit/2.png, pit/3.png and 1 more)")


def test_the_defect_free_class_is_found_by_its_name_or_named_by_the_user():
    from edge.train.recipe import choose_ok_class

    assert choose_ok_class(["crack", "ok"], None)[0] == "ok"
    assert choose_ok_class(["Good", "scratch"], None)[0] == "Good"             # MVTec AD's name, any case
    assert choose_ok_class(["dent", "no_defect"], None)[0] == "no_defect"
    assert choose_ok_class(["Defect-Free", "pit"], None)[0] == "Defect-Free"
    assert choose_ok_class(["MT_Blowhole", "MT_Crack", "MT_Free"], None)[0] == "MT_Free"   # the magnetic-tile set
    assert choose_ok_class(["OkParts", "NgParts"], None)[0] == "OkParts"
    assert choose_ok_class(["not_ok", "scratch", "no_good"], None)[0] is None          # negated: defects
    name, why = choose_ok_class(["crazing", "nok", "scratches"], None)          # NOK is "not OK"
    assert name is None and "every class is taken for a defect" in why
    assert choose_ok_class(["a", "b"], "b") == ("b", "--ok-class")
    with pytest.raises(InvalidInput, match=r"--ok-class 'good': no class folder of that name \(classes: a, b\)"):
        choose_ok_class(["a", "b"], "good")
    with pytest.raises(InvalidInput, match="class folders good, ok all look like the defect-free class"):
        choose_ok_class(["good", "ok", "pit"], None)


def test_defects_too_thin_for_the_size_get_a_tile_size_that_keeps_them():
    from edge.train.recipe import choose_size

    # 3 px cracks in 2448 px frames: at 256 px they would be 0.3 px; tiles of 256 px keep them at 3 px
    why = choose_size([(2048, 2448)] * 5, [3.0] * 10).reason
    assert "may not survive" in why and "tiles of about 256 px" in why and "stay 3.0 px wide" in why
    assert "--tile 256" in why and "training cuts them by itself" in why      # how to get them
    # 20 px defects in 5000 px frames: 640 px tiles shrunk to 256 px keep them at the 8 px target
    why = choose_size([(4000, 5000)] * 5, [20.0] * 10).reason
    assert "tiles of about 640 px" in why and "stay 8.0 px wide" in why
    assert "tiles" not in choose_size([(200, 200)] * 5, [20.0] * 10).reason     # nothing to warn about


def test_training_cuts_large_frames_into_tiles_where_their_defects_would_vanish_whole():
    from edge.train.recipe import choose_tiling

    frames = [(2048, 2448)] * 6
    labels = ["ok", "ok", "crack", "crack", "pit", "pit"]
    # 3 px cracks in 2448 px frames, letterboxed into 256 px: 0.3 px; 256 px tiles keep them 3 px wide
    tile, why = choose_tiling(frames, [3.0] * 10, labels, [False, False] + [True] * 4, "ok", 256)
    assert tile == 256 and "cut into 256 px tiles" in why and "0.3 px letterboxed whole" in why
    assert "keep 3.0 px" in why and "--tile off" in why
    # 20 px defects in 5000 px frames: 640 px tiles, shrunk into the 256 px input, keep them 8 px wide
    tile, why = choose_tiling([(4000, 5000)] * 6, [20.0] * 10, labels, [True] * 6, "ok", 256)
    assert tile == 640 and "keep 8.0 px" in why
    # defects that stay 2 px wide whole, or no annotations at all: tiling is not in question
    assert choose_tiling([(600, 800)] * 6, [10.0] * 10, labels, [True] * 6, "ok", 256) == (None, "")
    assert choose_tiling(frames, [], labels, [False] * 6, "ok", 256) == (None, "")
    # frames not much larger than a tile: the served path would letterbox them whole, so train them whole
    tile, why = choose_tiling([(300, 350)] * 6, [2.0] * 10, labels, [True] * 6, "ok", 256)
    assert tile is None and "not more than 1.5 tiles" in why
    # a defect frame to be cut needs its mask or boxes: one of four missing is too many (a tenth at most)
    tile, why = choose_tiling(frames, [3.0] * 10, labels, [False, False, True, True, True, False], "ok", 256)
    assert tile is None and "1 of the 4 defect images" in why and "annotate them" in why
    # one of twenty missing: cut, and said
    tile, why = choose_tiling([(2048, 2448)] * 21, [3.0] * 10, ["ok"] + ["crack"] * 20, [False] + [True] * 19 + [False],
                              "ok", 256)
    assert tile == 256 and "1 defect images without annotations left out" in why
    # asked for: off, or a side
    assert choose_tiling(frames, [3.0] * 10, labels, [True] * 6, "ok", 256, "off") == (None, "--tile off: frames trained whole")
    assert choose_tiling(frames, [30.0] * 10, labels, [True] * 6, "ok", 256, 512) == (512, "--tile 512")


@pytest.mark.parametrize("text, parsed", [(None, "auto"), ("auto", "auto"), ("OFF", "off"), ("0", "off"), ("384", 384),
                                          (384, 384)])
def test_the_tile_option_reads_auto_off_or_a_side(text, parsed):
    from edge.train.recipe import parse_tile

    assert parse_tile(text) == parsed


@pytest.mark.parametrize("text", ["big", "-5", "16", "5000", "2.5"])
def test_a_bad_tile_option_is_named(text):
    from edge.train.recipe import parse_tile

    with pytest.raises(InvalidInput, match="--tile .*expected auto, off or a tile side between 32 and 4096"):
        parse_tile(text)


def test_the_budget_asks_only_for_the_epochs_a_run_plans():
    from edge.train.recipe import MIN_FIT_EPOCHS, epochs_that_must_fit, fit_size_to_budget

    # elpv-sized (1773 images): about 60 000 samples is 34 epochs, so 30 must fit; 4834 tiles plan 13
    assert epochs_that_must_fit(34, MIN_FIT_EPOCHS) == 30
    assert epochs_that_must_fit(13, MIN_FIT_EPOCHS) == 13
    seconds = {256: 50.0, 224: 38.0, 192: 30.0, 160: 26.0, 128: 13.0}.__getitem__
    # 720 s: 14 epochs of 50 s fit at 256 px, 30 only at 128 px
    assert fit_size_to_budget(256, 128, seconds, 720, epochs_that_must_fit(13, MIN_FIT_EPOCHS))[0] == 256
    assert fit_size_to_budget(256, 128, seconds, 720, epochs_that_must_fit(34, MIN_FIT_EPOCHS))[0] == 128


def test_from_scratch_three_quarters_of_the_planned_epochs_must_fit_while_defects_stay_resolved():
    from edge.train.recipe import MIN_FIT_EPOCHS, SCHEDULES, epochs_that_must_fit, fit_size_in_tiers

    scratch = SCHEDULES["scratch"]
    assert epochs_that_must_fit(68, MIN_FIT_EPOCHS, scratch.fit_share) == 51     # 3/4 of an 889-image plan
    assert epochs_that_must_fit(34, MIN_FIT_EPOCHS, scratch.fit_share) == 30     # the floor still holds
    assert epochs_that_must_fit(13, MIN_FIT_EPOCHS, scratch.fit_share) == 13     # and never more than planned
    assert SCHEDULES["lite0"].fit_share == 0.0                                    # fine-tuning keeps its 8

    # an epoch's seconds by size, as a 2-core CPU without bfloat16 measured them on ~900 images
    seconds = {216: 26.0, 192: 20.0, 184: 19.0, 160: 14.0, 152: 12.0, 128: 9.0}
    def tiers(needed, long_side, p10, budget, planned=68):
        return fit_size_in_tiers(needed, long_side, p10, lambda s, _: seconds[s], budget, planned,
                                 MIN_FIT_EPOCHS, scratch.fit_share)

    # defects 5 px at long side 197: 192 px holds 42 epochs of 840 s (30 would do, 51 do not); 160 px keeps
    # them 4.1 px wide and holds 60: lowered for the epochs
    size, why = tiers(192, 197, 5.0, 840)
    assert size == 160 and "so that 51 epochs fit" in why
    # defects 5 px at long side 223: 152 px would hold the 51 but narrow them to 3.4 px; 184 px (4.1 px)
    # holds 44, enough for the 30 a converged model needs: resolution kept
    size, why = tiers(216, 223, 5.0, 840)
    assert size == 184 and "the lowest that keeps the thinner defects 4 px wide, where only 44 of the 51" in why
    # where not even 30 epochs fit at the resolved size, the second tier lowers on towards 2 px
    size, why = tiers(216, 223, 5.0, 300)
    assert size == 128 and "so that 30 epochs fit" in why
    # without the share (fine-tuning, or a plan of 30 epochs or fewer) one tier: as before
    assert tiers(192, 197, 5.0, 840, planned=34)[0] == 192
    assert tiers(192, 197, None, 840)[0] == 160                                  # no masks: no resolution floor


def test_the_size_is_fitted_to_the_budget_left_at_that_size_and_says_when_nothing_fits():
    from edge.train.recipe import fit_size_to_budget

    seconds = {256: 50.0, 224: 38.0, 192: 30.0, 160: 26.0, 128: 13.0}.__getitem__
    # the reserve after the loop grows with the size: 600 s at 256 px leave 300 s (6 epochs), at 224 px 500 s
    left = {256: 300.0, 224: 500.0, 192: 520.0, 160: 540.0, 128: 560.0}.__getitem__
    size, why = fit_size_to_budget(256, 128, seconds, left, 10)
    assert size == 224 and "10 epochs fit the 8 min" in why
    # a budget the run has already spent: the lowest size, and the reason says there is no time for training
    size, why = fit_size_to_budget(256, 128, seconds, lambda s: -20.0, 10)
    assert size == 128 and "leaves no time for training" in why and "-0" not in why
    # even the lowest size fits fewer epochs than wanted: said, in seconds under two minutes
    size, why = fit_size_to_budget(256, 128, seconds, 65.0, 10)
    assert size == 128 and "only 5 of the 10 epochs wanted fit the 65 s" in why
    # no budget: the size wanted
    assert fit_size_to_budget(256, 128, seconds, lambda s: None, 10) == (256, "")


def test_epochs_are_planned_again_at_the_pace_they_really_take():
    from edge.train.recipe import after_loop_seconds, replan_epochs

    # 11 planned, 4 done, 60 s left: at 20 s an epoch only 3 more fit
    assert replan_epochs(11, 4, 12, 60.0, 20.0) == 7
    assert replan_epochs(11, 4, 12, 5.0, 20.0) == 4                  # not one more fits: stop now
    assert replan_epochs(11, 4, 12, -30.0, 20.0) == 4                # past the deadline
    assert replan_epochs(11, 4, 12, 141.0, 20.0) == 11               # fits (7 more in 140 s): as planned
    assert replan_epochs(11, 4, 12, 135.0, 20.0) == 11               # 5 s over: within half an epoch, kept
    # faster than the probe said: more, but only with a tenth to spare and never past the cap
    assert replan_epochs(8, 4, 12, 110.0, 20.0) == 8                 # 5 more fit, 4.95 with the margin
    assert replan_epochs(8, 4, 12, 200.0, 20.0) == 12
    assert replan_epochs(8, 4, 9, 200.0, 20.0) == 9
    assert replan_epochs(8, 4, 8, 200.0, 20.0) == 8                  # --epochs 8 is a cap
    # two fast epochs among slower ones: no more than the recent pace would cut again
    assert replan_epochs(50, 10, 55, 480.0, 10.0, 12.0) == 50
    assert replan_epochs(50, 10, 55, 600.0, 10.0, 12.0) == 55
    # what the run keeps back for the export and calibration grows with the network's step cost
    assert after_loop_seconds(1.29, "lite0") > 140 and after_loop_seconds(0.05, "scratch") == 45.0


def test_a_filling_cache_makes_later_epochs_cheaper_in_the_plan():
    from edge.train.recipe import cache_fill_factor, choose_epochs, epochs_cost, epochs_within, replan_epochs

    f = cache_fill_factor(0.6, 4)                 # a cached step costs 60 %; 4 flipped views per image
    assert f(1) == 1.0 and f(2) == pytest.approx(0.6 + 0.4 * 0.75) and f(40) == pytest.approx(0.6, abs=1e-4)
    assert [cache_fill_factor(1.0, 4)(k) for k in (1, 5)] == [1.0, 1.0]          # no saving: every epoch alike
    assert cache_fill_factor(0.5, 1)(2) == 0.5                                   # one view: cached after epoch 1
    # 600 s at 80 s an uncached epoch: 7 epochs without the cache, 9 as it fills (f sums to 6.9 over 9)
    assert epochs_within(600, 80) == 7 and epochs_within(600, 80, f) == 9
    assert epochs_cost(f, 1, 9) == pytest.approx(6.88, abs=0.01) and epochs_cost(None, 3, 5) == 3.0
    assert epochs_within(600, 80, f, cap=8) == 8 and epochs_within(10, 80, f) == 0
    e, why = choose_epochs(1773, None, 80.0, 600.0, 20_000, 8, f)
    assert e == 9 and "as the frozen layers' cache fills" in why
    assert choose_epochs(1773, None, 80.0, 600.0, 20_000, 8)[0] == 7
    # elpv-like: after its first, uncached epoch (77 s) the loop has 530 s for 8 more planned; at the first
    # epoch's pace they would overrun and the plan was cut, with the cache's fall they fit
    g = cache_fill_factor(0.69, 4)
    assert replan_epochs(9, 1, 12, 530.0, 77.0) == 7
    assert replan_epochs(9, 1, 12, 530.0, 77.0, factor=g) == 9


def test_a_replanned_one_cycle_schedule_goes_on_where_the_new_one_would_be():
    from edge.train.classifier import _one_cycle

    def rates(total, start, n, opt=None):
        w = torch.nn.Parameter(torch.zeros(1))
        opt = opt or torch.optim.AdamW([w], lr=1e-3)
        sched = _one_cycle(opt, 1e-3, total, start)
        out = []
        for _ in range(n):
            out.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
            opt.step()
            sched.step()
        return out, opt

    fresh, _ = rates(80, 0, 80)
    _, opt = rates(100, 0, 30)                           # planned 100 steps, 30 done, then re-planned to 80
    rest, _ = rates(80, 30, 50, opt)
    assert rest == fresh[30:]
    assert fresh[-1][0] < 1e-6                           # the new schedule still anneals to its end


def test_a_run_past_its_deadline_stops_after_the_epoch_it_is_in():
    import time

    import numpy as np

    from edge.data.preprocess import Normalisation
    from edge.train.augment import Augmentation
    from edge.train.classifier import ClassifierData, ClassifierRecipe, fit_classifier

    rng = np.random.default_rng(0)
    n = 16
    x = rng.random((n, 1, 32, 32), dtype=np.float32)
    y = np.arange(n) % 2
    x[y == 1, 0, 10:20, 15] = 0.0
    data = ClassifierData(x, y, np.zeros((n, 32, 32), bool), np.ones(n, bool), np.arange(12), np.arange(12, 16),
                          ["ok", "crack"], Normalisation("per_image"))
    recipe = ClassifierRecipe(width=8, batch_size=4)
    _, log = fit_classifier(data, recipe, Augmentation.parse("flips"), 5, torch.Generator().manual_seed(0),
                            progress=False, deadline=time.perf_counter() - 1.0, max_epochs=5)
    assert log.epochs == 1 and len(log.history) == 1
    assert log.replans == [{"after_epoch": 1, "epochs": 1, "epoch_seconds": log.replans[0]["epoch_seconds"]}]
    _, log = fit_classifier(data, recipe, Augmentation.parse("flips"), 2, torch.Generator().manual_seed(0),
                            progress=False, deadline=time.perf_counter() + 600.0, max_epochs=3)
    assert log.epochs == 3 and len(log.history) == 3 and log.replans[0]["epochs"] == 3     # time to spare


def test_the_checkpoint_kept_is_the_latest_within_one_standard_error_of_the_best():
    from edge.train.classifier import keep_epoch, selection_score_se

    # elpv's run of 2026-11-30: the 5th epoch scored best by 0.02, within the split's noise
    scores = [0.536, 0.605, 0.622, 0.660, 0.668, 0.626, 0.640, 0.650, 0.650, 0.644, 0.636]
    assert keep_epoch(scores, [0.04] * 11) == 11
    assert keep_epoch(scores, [0.01] * 11) == 5                      # a precise split keeps the best
    assert keep_epoch([0.5, 0.9, 0.6], [0.05] * 3) == 2              # clearly better earlier: kept
    assert keep_epoch([0.7, 0.7, 0.7], [0.0] * 3) == 3               # ties: the later

    def metrics(acc, recalls):
        return {"accuracy": acc, "per_class": {c: {"recall": r, "support": n} for c, (r, n) in recalls.items()}}

    small = selection_score_se(metrics(0.741, {"ok": (0.8, 113), "p100": (0.8, 54), "p33": (0.5, 22), "p67": (0.25, 8)}))
    large = selection_score_se(metrics(0.741, {"ok": (0.8, 1130), "p100": (0.8, 540), "p33": (0.5, 220), "p67": (0.25, 80)}))
    assert 0.03 < small < 0.05 and large < small / 3 + 1e-9
    # a recall of 1.0 on a handful of images is not exact
    assert selection_score_se(metrics(1.0, {"a": (1.0, 5), "b": (1.0, 5)})) > 0.05
