"""The "paste" augmentation: small annotated defects lifted off their part and laid on defect-free surfaces."""
import numpy as np
import pytest
import torch

from edge.train.augment import PASTE_P, Augmentation, lift_defect, paste_defects, plan_paste
from edge.train.recipe import choose_augmentation

S = 32


def _frame(top=0, left=0, h=S, w=S):
    return [top, left, h, w]


def _set():
    """Six 32 px samples: 0, 1 defect-free; 2 a small interior pit; 3 a pit touching its frame's border;
    4 a large stain (over 2 % of the frame); 5 a pit without annotation (mask unknown)."""
    masks = np.zeros((6, S, S), bool)
    masks[2, 10:13, 14:17] = True
    masks[3, 0:3, 5:8] = True
    masks[4, 4:20, 4:20] = True
    masks[5, 10:12, 10:12] = True
    annotated = np.array([False, False, True, True, True, False])
    y = np.array([0, 0, 1, 1, 2, 1])
    content = np.array([_frame()] * 6)
    return masks, annotated, y, content


def test_plan_paste_lends_only_small_interior_annotated_defects_onto_defect_free_training_surfaces():
    masks, annotated, y, content = _set()
    plan = plan_paste(masks, annotated, content, y, np.arange(6), ok_index=0)
    assert plan.donors.tolist() == [False, False, True, False, False, False]
    assert plan.surfaces.tolist() == [0, 1]
    # only training images lend: a validation pit, or a validation surface, is never shown in training
    plan = plan_paste(masks, annotated, content, y, np.array([0, 2, 3, 4, 5]), ok_index=0)
    assert plan.surfaces.tolist() == [0]
    # the frame is the letterboxed content, not the padded input: a pit 2 px from the frame's side is out
    content_narrow = content.copy()
    content_narrow[2] = [0, 15, S, 10]            # frame columns 15..24; the pit's column 14 lies outside
    assert plan_paste(masks, annotated, content_narrow, y, np.arange(6), ok_index=0) is None


def test_plan_paste_is_off_without_a_defect_free_class_or_a_small_defect():
    masks, annotated, y, content = _set()
    assert plan_paste(masks, annotated, content, y, np.arange(6), ok_index=-1) is None
    assert plan_paste(masks, annotated, content, y, np.array([0, 1, 3, 4, 5]), ok_index=0) is None


def _shaded_surface(h=S, w=S):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return 0.3 + 0.4 * xx / w + 0.1 * yy / h             # slow shading, which must stay behind


def test_lift_defect_takes_the_defect_and_leaves_the_surface_shading_behind():
    img = _shaded_surface()
    mask = np.zeros((S, S), bool)
    mask[14:17, 20:23] = True
    img[mask] -= 0.25                                       # a dark pit
    delta, m, (y0, x0) = lift_defect(torch.from_numpy(img)[None], torch.from_numpy(mask))
    assert (y0, x0) == (12, 18)                            # the box grown by 2 px
    assert delta.shape == (1, 7, 7) and m.shape == (7, 7)
    inside = delta[0][m > 0.5]
    assert torch.allclose(inside, torch.full_like(inside, -0.25), atol=0.02)
    assert delta[0][m < 0.5].abs().max() < 0.03            # around the pit: the shading, nearly flat locally


def _grown(m: torch.Tensor, px: int = 3) -> torch.Tensor:
    return torch.nn.functional.max_pool2d(m[None, None].float(), 2 * px + 1, 1, px)[0, 0] > 0


def test_paste_defects_moves_a_defect_onto_a_surface_inside_its_frame_and_keeps_the_rest():
    masks, annotated, y, content = _set()
    x = np.stack([_shaded_surface() for _ in range(6)])[:, None].copy()
    x[2, 0][masks[2]] -= 0.3
    x[1, 0] += 0.05                                         # the two surfaces differ, to see which was used
    content[1] = [4, 0, 24, S]                              # surface 1 is letterboxed: rows 4..27
    plan = plan_paste(masks, annotated, content, y, np.arange(6), ok_index=0)
    x_all, m_all = torch.from_numpy(x), torch.from_numpy(masks[:, None].astype(np.float32))
    idx = torch.tensor([0, 2, 4, 2, 2, 2, 2, 2])
    xb, mb = paste_defects(x_all[idx].clone(), m_all[idx].clone(), idx, plan, x_all, torch.Generator().manual_seed(3),
                           p=1.0)
    for k in (0, 2):                                        # not donors: untouched
        assert torch.equal(xb[k], x_all[idx[k]]) and torch.equal(mb[k], m_all[idx[k]])
    places = set()
    for k in range(1, 8):
        if k == 2:
            continue
        moved = mb[k, 0] > 0.5
        assert int(moved.sum()) == 9                        # the pit's 3 x 3 pixels, moved whole
        rows, cols = torch.nonzero(moved.any(1)).flatten(), torch.nonzero(moved.any(0)).flatten()
        surface = 1 if torch.allclose(xb[k, 0, 0:2, 0:2], x_all[1, 0, 0:2, 0:2]) else 0
        top, left, h, w = content[surface]
        assert rows[0] >= top + 2 and rows[-1] < top + h - 2 and cols[0] >= left + 2 and cols[-1] < left + w - 2
        diff = xb[k, 0] - x_all[surface, 0]
        assert torch.allclose(diff[moved], torch.full((9,), -0.3), atol=0.03)   # the pit, on the new surface
        assert diff[~_grown(moved)].abs().max() < 1e-6                          # nothing else changed
        places.add((surface, int(rows[0]), int(cols[0])))
    assert len(places) > 3                                  # random places, on both surfaces
    assert {p[0] for p in places} == {0, 1}
    # the same generator, the same batch
    again = paste_defects(x_all[idx].clone(), m_all[idx].clone(), idx, plan, x_all, torch.Generator().manual_seed(3),
                          p=1.0)
    assert torch.equal(again[0], xb) and torch.equal(again[1], mb)


def test_paste_defects_leaves_a_defect_too_large_for_the_surface_frame_where_it_was():
    masks, annotated, y, content = _set()
    content[0] = content[1] = [14, 0, 5, S]                 # the surfaces' frames: 5 px high, no room for 3 + 2 x 2
    plan = plan_paste(masks, annotated, content, y, np.arange(6), ok_index=0)
    x_all = torch.rand(6, 1, S, S, generator=torch.Generator().manual_seed(0))
    m_all = torch.from_numpy(masks[:, None].astype(np.float32))
    idx = torch.tensor([2])
    xb, mb = paste_defects(x_all[idx].clone(), m_all[idx].clone(), idx, plan, x_all, torch.Generator(), p=1.0)
    assert torch.equal(xb, x_all[idx]) and torch.equal(mb, m_all[idx])


def test_paste_is_a_part_of_augment_and_auto_chooses_it_for_annotated_photographs_with_a_defect_free_class():
    aug = Augmentation.parse("flips,paste")
    assert aug.paste == PASTE_P and not aug.flips_only and aug.describe()["paste"] == PASTE_P
    assert Augmentation.parse("flips").paste == 0
    assert choose_augmentation("auto", True, True, True, "scratch")[0] == "flips,paste"
    for args in ((False, True, True, "scratch"),      # simulator frames
                 (True, False, True, "scratch"),      # no defect-free class (NEU-DET)
                 (True, True, False, "scratch"),      # no masks or boxes (elpv)
                 (True, True, True, "lite0")):        # the pretrained backbone's per-image cache
        assert choose_augmentation("auto", *args)[0] == "flips"
    assert choose_augmentation("flips,noise", True, True, True, "scratch") == ("flips,noise", "--augment flips,noise")
    with pytest.raises(Exception, match="paste2"):
        Augmentation.parse("flips,paste2")
    # how often: paste=P, P in (0, 1]; a bad value names the part
    assert Augmentation.parse("flips,paste=0.25").paste == 0.25
    assert Augmentation.parse("paste=1").paste == 1.0
    for bad in ("paste=0", "paste=1.5", "paste=half", "paste="):
        with pytest.raises(Exception, match=f"--augment {bad}: the probability"):
            Augmentation.parse(f"flips,{bad}")
