"""The user-guided handler core in-process: hint mapping, the RGB-hint rule, distribution, palette, gamut, errors.

References are independent: skimage for Lab, torch's own bilinear upsampling of the full logits map (the
thesis's "bilinear upsampling to full resolution") for the distribution at a point, the hint equations
stated in ``chromaflow.serving.guided`` for the planes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import lab2rgb, rgb2lab
from tests.web.conftest import b64, decode_png, png_bytes, tiny_guided

from chromaflow.serving import Request
from chromaflow.serving.guided import (
    ENDPOINTS,
    GuidedConfig,
    GuidedInput,
    GuidedService,
    Hint,
    distribution_at,
    endpoint_for,
    guided_batch,
    hint_planes,
    model_position,
    palette_at,
    rgb_hint_ab,
)

SIZE = 64  # network input side in these tests (multiple of 8)


@pytest.fixture(scope="module")
def model():
    return tiny_guided()


def svc(model, endpoint, **cfg):
    return GuidedService(model, GuidedConfig(size=SIZE, **cfg), endpoint=endpoint)


def call(service, body):
    return service.handle([Request(body=body, content_type="application/json")])[0]


def test_model_position_maps_pixel_centres():
    # W=144 -> 64: pixel x maps to floor((x + .5) * 64 / 144)
    for x in (0, 1, 71.9, 143, 143.99):
        mx, my = model_position(x, 0, (96, 144), SIZE)
        assert mx == int((math.floor(x) + 0.5) * SIZE / 144) and my == 0
    assert model_position(143.99, 95.5, (96, 144), SIZE) == (63, 63)


def test_hint_planes_patch_clipping_and_overwrite():
    l_full = torch.full((96, 144), 50.0)
    hints = [Hint(0, 0, ab=(10.0, -20.0)), Hint(72, 48, ab=(30.0, 40.0)), Hint(75, 48, ab=(-5.0, 5.0))]
    ab, mask, applied = hint_planes(hints, l_full, SIZE, 3)
    assert ab.shape == (2, SIZE, SIZE) and mask.shape == (1, SIZE, SIZE)
    assert mask[0, :2, :2].all() and mask.sum() == 4 + 9 + 3  # corner clipped to 2x2; 2nd/3rd overlap by 6
    assert torch.equal(ab[:, 0, 0], torch.tensor([10.0, -20.0]))
    mx, my = applied[2]["model_x"], applied[2]["model_y"]
    assert torch.equal(ab[:, my, mx - 1], torch.tensor([-5.0, 5.0]))  # later hint wins in the overlap
    assert applied[1]["a"] == 30.0 and applied[0]["model_x"] == 0


def test_rgb_hint_in_gamut_is_its_lab_ab():
    rgb = torch.tensor([[200.0, 120.0, 40.0], [30.0, 90.0, 200.0]])
    lab = rgb2lab(rgb.numpy()[None] / 255.0)[0]  # skimage reference
    ab = rgb_hint_ab(rgb, torch.tensor(lab[:, 0]))  # at its own L it is displayable: unchanged
    np.testing.assert_allclose(ab.numpy(), lab[:, 1:], atol=0.05)


def test_rgb_hint_out_of_gamut_is_shrunk_to_the_gamut_boundary_along_its_hue():
    rgb = torch.tensor([[255.0, 0.0, 0.0], [0.0, 0.0, 255.0]])
    L = torch.tensor([90.0, 85.0])  # pure red / blue are not displayable that light
    ab = rgb_hint_ab(rgb, L).numpy()
    ref = rgb2lab(rgb.numpy()[None] / 255.0)[0, :, 1:]
    for i in range(2):
        s = np.linalg.norm(ab[i]) / np.linalg.norm(ref[i])
        assert 0.05 < s < 1 and abs(np.arctan2(*ab[i][::-1]) - np.arctan2(*ref[i][::-1])) < 1e-6  # same hue
        for scale, inside in ((1.0, True), (1.1, False)):
            lab = np.array([[[float(L[i]), *(ab[i] * scale)]]])
            back = rgb2lab(lab2rgb(lab))  # skimage clips out-of-gamut colours: the round trip then moves
            assert (np.abs(back - lab).max() < 0.05) == inside


def test_distribution_at_matches_bilinear_upsampling_of_the_logits_map():
    torch.manual_seed(1)
    logits = torch.randn(313, 16, 16)
    hw = (96, 144)
    full = F.interpolate(logits[None], size=hw, mode="bilinear", align_corners=False)[0]
    for x, y in ((0, 0), (143, 95), (70.6, 33.2), (5, 90)):
        ref = torch.softmax(full[:, int(y), int(x)].double(), 0)
        torch.testing.assert_close(distribution_at(logits, x, y, hw), ref, atol=1e-5, rtol=1e-4)


def test_palette_colours_at_the_points_lightness_match_skimage():
    probs = torch.softmax(torch.randn(313, generator=torch.Generator().manual_seed(3)), 0)
    pal = palette_at(probs, 60.0, k=9)
    assert 1 <= len(pal) <= 9 and abs(sum(c["weight"] for c in pal) - 1) < 1e-6
    assert [c["weight"] for c in pal] == sorted((c["weight"] for c in pal), reverse=True)
    for c in pal:
        ref = lab2rgb(np.array([[[60.0, c["a"], c["b"]]]]))[0, 0] * 255
        if c["in_gamut"]:
            assert np.abs(np.array(c["rgb"]) - ref).max() <= 1.0


def test_colorize_guided_png_keeps_the_input_l(model, photo, photo_b64):
    s = svc(model, "colorize_guided")
    plain = call(s, {"image": photo_b64})
    assert plain.status == 200 and plain.content_type == "image/png"
    out0 = decode_png(plain.body)
    assert out0.shape == photo.shape
    # the output keeps the input's L (skimage) except where a colour had to be clipped into sRGB
    dl = np.abs(rgb2lab(out0)[..., 0] - rgb2lab(photo)[..., 0])
    assert np.median(dl) < 0.5 and np.mean(dl < 1.5) > 0.98


@pytest.mark.parametrize(("x", "y"), [(72, 48), (20, 20)])
def test_the_shipped_model_moves_the_colour_toward_a_saturated_hint(photo, x, y):
    """weights/guided, one 3x3 hint of a saturated purple (a, b) = (70, -50) that the photo does not have: the
    mean skimage ab of the 7x7 pixels around the point goes from ~90 ab units away to within 15 of the hint."""
    from chromaflow.models.shipped import load_shipped

    net, _ = load_shipped("guided")
    rgb = torch.from_numpy(photo.copy()).permute(2, 0, 1)
    hint = np.array([70.0, -50.0])
    plain, hinted = guided_batch(net, [GuidedInput(rgb), GuidedInput(rgb, [Hint(x, y, ab=tuple(hint))])], size=SIZE)

    def dist_to_hint(r) -> float:
        lab = rgb2lab(r.rgb.permute(1, 2, 0).numpy())
        return float(np.linalg.norm(lab[y - 3 : y + 4, x - 3 : x + 4, 1:].reshape(-1, 2).mean(0) - hint))

    before, after = dist_to_hint(plain), dist_to_hint(hinted)
    assert before > 60 and after < 15 and after < 0.2 * before, (before, after)


class Spy(torch.nn.Module):
    """Records what the network receives (the hint contract is checked on the inputs, not on an untrained output)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config, self.calls = net, net.config, []
        self.global_branch = net.global_branch

    def forward(self, *args):
        self.calls.append([a if a is None else a.detach().clone() for a in args])
        return self.net(*args)


def test_hints_and_global_reach_the_network_in_its_contract(model, photo):
    spy = Spy(model)
    rgb = torch.from_numpy(photo.copy()).permute(2, 0, 1)
    g = torch.zeros(313 + 3)
    g[313 + 1 :] = torch.tensor([0.9, 1.0])
    guided_batch(spy, [GuidedInput(rgb, [Hint(72, 48, ab=(80.0, -55.0))], global_hint=g), GuidedInput(rgb)], size=SIZE)
    (l, hint_ab, mask, glob), c = spy.calls[0], model.config["contract"]
    mx, my = model_position(72, 48, (96, 144), SIZE)
    # L: bilinear antialiased resize of skimage's L, normalized
    ref_l = torch.from_numpy(rgb2lab(photo)[..., 0]).float()[None, None]
    ref_l = F.interpolate(ref_l, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(l[:1], (ref_l - c["l_cent"]) / c["l_norm"], atol=2e-3, rtol=0)
    assert torch.allclose(
        hint_ab[0, :, my - 1 : my + 2, mx - 1 : mx + 2], torch.tensor([80.0, -55.0])[:, None, None] / 110
    )
    assert (mask[0, 0] + c["mask_cent"]).sum() == 9 and (mask[1] + c["mask_cent"]).sum() == 0
    assert torch.equal(glob[0], g) and torch.equal(glob[1], torch.zeros(316))  # no global: nothing revealed


def test_one_pass_gives_image_and_the_same_palette_as_the_palette_endpoint(model, photo_b64):
    body = {"image": photo_b64, "hints": [{"x": 10, "y": 20, "r": 250, "g": 30, "b": 30}], "point": {"x": 50, "y": 40}}
    doc = call(svc(model, "colorize_guided"), {**body, "format": "json"}).json()
    pal = call(svc(model, "palette"), {**body, "with_image": True}).json()
    assert doc["palette"]["colors"] == pal["colors"] and doc["image"] == pal["image"]
    assert doc["hints"][0]["model_x"] == int(10.5 * SIZE / 144) and (doc["width"], doc["height"]) == (144, 96)
    assert len(pal["colors"]) == 9 and 0 <= pal["L"] <= 100


def test_batch_items_do_not_depend_on_each_other(model, photo):
    a = GuidedInput(
        torch.from_numpy(photo.copy()).permute(2, 0, 1).contiguous(), [Hint(3, 4, ab=(20.0, 20.0))], point=(5, 6)
    )
    b = GuidedInput(torch.from_numpy(photo[:40, :64].copy()).permute(2, 0, 1).contiguous(), [], point=(1, 1))
    both = guided_batch(model, [a, b], size=SIZE)
    alone = guided_batch(model, [a], size=SIZE)[0]
    torch.testing.assert_close(both[0].rgb, alone.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(both[0].probs, alone.probs, atol=1e-6, rtol=0)


def test_global_hints_are_accepted_and_refused_without_the_branch(model, photo_b64):
    with_branch = svc(model, "colorize_guided")
    assert call(with_branch, {"image": photo_b64, "global": {"saturation": 0.9}}).status == 200
    hist = [0.0] * 313
    hist[100] = 2.0
    assert call(with_branch, {"image": photo_b64, "global": {"histogram": hist}}).status == 200
    r = call(
        svc(tiny_guided(global_hints=False), "colorize_guided"), {"image": photo_b64, "global": {"saturation": 0.5}}
    )
    assert r.status == 400 and r.json()["error"] == "global_unsupported"


def test_gamut_swatch_alpha_is_the_srgb_gamut(model, photo_b64):
    s = svc(model, "gamut")
    doc = call(s, {"L": 50, "resolution": 23}).json()
    assert doc["resolution"] == 23 and doc["ab_max"] == 110
    import base64
    import io

    from PIL import Image

    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["image"]))))
    assert rgba.shape == (23, 23, 4)
    step = 220 / 22
    for r in range(0, 23, 2):
        for c in range(0, 23, 2):
            lab = np.array([[[50.0, -110 + c * step, 110 - r * step]]])
            inside = np.abs(rgb2lab(lab2rgb(lab)) - lab).max() < 0.3  # skimage round trip
            if abs(np.abs(rgb2lab(lab2rgb(lab)) - lab).max() - 0.3) > 0.2:  # skip borderline colours
                assert (rgba[r, c, 3] == 255) == inside, (r, c)
    at_point = call(s, {"image": photo_b64, "point": {"x": 3, "y": 4}, "format": "png"})
    assert at_point.status == 200 and at_point.content_type == "image/png"


HINT = {"x": 1, "y": 1, "a": 0, "b": 0}
BAD = {
    "hint_outside_x": ({"hints": [{**HINT, "x": 144}]}, "hint_outside_image"),
    "hint_outside_neg": ({"hints": [{**HINT, "y": -0.5}]}, "hint_outside_image"),
    "hint_nan": ({"hints": [{**HINT, "x": float("nan")}]}, "bad_hint"),
    "hint_inf_colour": ({"hints": [{**HINT, "a": float("inf")}]}, "bad_color"),
    "hint_not_list": ({"hints": {"x": 1}}, "bad_hint"),
    "hint_mixed_keys": ({"hints": [{"x": 1, "y": 1, "r": 1, "a": 2, "b": 3}]}, "bad_hint"),
    "hint_string": ({"hints": [{**HINT, "x": "3"}]}, "bad_hint"),
    "too_many": ({"hints": [HINT] * 5}, "too_many_hints"),
    "rgb_over_255": ({"hints": [{"x": 1, "y": 1, "r": 256, "g": 0, "b": 0}]}, "bad_color"),
    "ab_over_110": ({"hints": [{**HINT, "a": 111}]}, "bad_color"),
    "bad_global": ({"global": {"saturation": 1.5}}, "bad_global"),
    "bad_hist": ({"global": {"histogram": [1.0] * 5}}, "bad_global"),
    "point_outside": ({"point": {"x": 0, "y": 96}}, "point_outside_image"),
    "bad_k": ({"point": {"x": 0, "y": 0}, "k": 0}, "bad_option"),
    "temperature": ({"T": 0.38}, "bad_option"),
    "no_image": ({"image": None}, "bad_json"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_400_with_a_reason(model, photo_b64, case):
    extra, kind = BAD[case]
    r = call(svc(model, "colorize_guided", max_hints=4), {"image": photo_b64, **extra})
    assert r.status == 400, r.body
    err = r.json()
    assert err["error"] == kind and err["code"] == 400 and err["message"]


def test_palette_needs_a_point_and_gamut_needs_L(model, photo_b64):
    r = call(svc(model, "palette"), {"image": photo_b64})
    assert r.status == 400 and r.json()["error"] == "bad_point"
    for body in ({}, {"L": 101}, {"L": "x"}):
        r = call(svc(model, "gamut"), body)
        assert r.status == 400 and r.json()["error"] == "bad_option"


def test_non_json_bodies(model, photo):
    s = svc(model, "colorize_guided")
    r = s.handle([Request(body=png_bytes(photo), content_type="image/png")])[0]
    assert r.status == 415
    r = s.handle([Request(body=b"{nope", content_type="application/json")])[0]
    assert r.status == 400 and r.json()["error"] == "bad_json"
    # a bad request does not fail the good one beside it in the batch
    good = Request(body=json.dumps({"image": b64(png_bytes(photo))}).encode(), content_type="application/json")
    assert [x.status for x in s.handle([Request(b"", "application/json"), good])] == [400, 200]


def test_config_and_endpoint_names():
    with pytest.raises(ValueError, match="size"):
        GuidedConfig.from_mapping({"size": 100})
    with pytest.raises(ValueError, match="unknown"):
        GuidedConfig.from_mapping({"method": "mode"})
    assert GuidedConfig.from_mapping({"hint_patch": "5"}).hint_patch == 5
    assert [endpoint_for(n) for n in ENDPOINTS] == list(ENDPOINTS)
    assert endpoint_for("kodak-palette") == "palette" and endpoint_for("anything") == "colorize_guided"
