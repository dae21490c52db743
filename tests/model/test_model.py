"""fflm.model: LandmarkNet shapes and coordinate frames, gradients, configuration and presets."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fflm.model import HourglassConfig, LandmarkNet, ModelConfig, preset
from fflm.model.layers import roi_align
from fflm.scheme import IBUG68, LandmarkScheme, Region
from conftest import randomise_batchnorm, tiny_config

B, R = 2, 128  # batch, input image side (proxy 64, crops 32 in tiny_config)


def images(b: int = B, r: int = R, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, r, r, generator=torch.Generator().manual_seed(seed)) * 255


def ten_point_scheme() -> LandmarkScheme:
    return LandmarkScheme(
        name="ten",
        num_points=10,
        regions=(Region("left", (0, 1, 2)), Region("right", (5, 6, 7, 8))),
        flip_pairs=((0, 5), (1, 6), (2, 7)),
        norm_points=(0, 5),
    )


def check_shapes(out: dict, b: int, n: int, n_refined: int, n_regions: int, stacks: int = 1, stages: int = 1):
    assert len(out["global"]) == stacks
    assert all(g.shape == (b, n, 2) for g in out["global"])
    assert len(out["refined"]) == stages and all(r.shape == (b, n_refined, 2) for r in out["refined"])
    assert len(out["boxes"]) == stages and all(x.shape == (b, n_regions, 4) for x in out["boxes"])
    assert out["final"].shape == (b, n, 2)
    assert out["scores"].shape == (b, n) and out["global_scores"].shape == (b, n)
    assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()
    for v in [out["final"], out["scores"], *out["global"], *out["refined"], *out["boxes"]]:
        assert torch.isfinite(v).all()


# ---------------------------------------------------------------- shapes


def test_forward_shapes_regular(tiny_model):
    with torch.no_grad():
        out = tiny_model(images())
    check_shapes(out, B, 68, 51, 4)
    assert tiny_model.config.variant == "regular"


def test_forward_shapes_light():
    cfg = tiny_config(global_net=HourglassConfig(width=8, depth=2, stem_stride=4, light=True),
                      regional_net=HourglassConfig(width=8, depth=1, stem_stride=4, light=True))
    model = LandmarkNet(cfg).eval()
    assert cfg.variant == "light"
    with torch.no_grad():
        check_shapes(model(images()), B, 68, 51, 4)


def test_forward_shapes_two_stacks():
    cfg = tiny_config(global_net=HourglassConfig(width=8, depth=2, stem_stride=4, stacks=2),
                      regional_net=HourglassConfig(width=8, depth=1, stem_stride=4, stacks=2))
    model = LandmarkNet(cfg).eval()
    with torch.no_grad():
        out = model(images())
        check_shapes(out, B, 68, 51, 4, stacks=2)
        region = model.run_region(0, torch.rand(3, 3, 32, 32) * 255)
    assert len(region.stack_points) == 2 and region.points.shape == (3, 11, 2)
    assert torch.equal(region.points, region.stack_points[-1])


def test_forward_shapes_two_regional_stages():
    model = LandmarkNet(tiny_config(regional_stages=2)).eval()
    assert len(model.regional_nets) == 2 and all(len(s) == 4 for s in model.regional_nets)
    with torch.no_grad():
        out = model(images())
    check_shapes(out, B, 68, 51, 4, stages=2)
    # the final points are the last stage's refinement where refined
    torch.testing.assert_close(out["final"][:, IBUG68.refined_indices], out["refined"][-1])


def test_custom_scheme_shapes():
    scheme = ten_point_scheme()
    model = LandmarkNet(tiny_config(scheme=scheme.to_dict())).eval()
    assert model.scheme == scheme
    assert len(model.regional_nets[0]) == 2
    assert model.global_net.heads[0].out_channels == 10
    assert [net.heads[0].out_channels for net in model.regional_nets[0]] == [3, 4]
    with torch.no_grad():
        out = model(images())
    check_shapes(out, B, 10, 7, 2)
    # unrefined points (3, 4, 9) keep their global estimate and score
    for i in (3, 4, 9):
        torch.testing.assert_close(out["final"][:, i], out["global"][-1][:, i])
        torch.testing.assert_close(out["scores"][:, i], out["global_scores"][:, i])


def test_proxy_sized_input_and_batch_of_one(tiny_model):
    with torch.no_grad():
        out = tiny_model(images(1, 64))
    check_shapes(out, 1, 68, 51, 4)


# ---------------------------------------------------------------- coordinate frames, with stub networks


def one_hot_stub(net: nn.Module, n_out: int, cell: tuple[int, int], calls: list):
    """Make `net` return one very sharp heatmap per point at `cell`, and record the (normalised) input."""
    i, j = cell

    def forward(x):
        calls.append(x.detach().clone())
        h, w = x.shape[-2] // net.stride, x.shape[-1] // net.stride
        logits = torch.zeros(x.shape[0], n_out, h, w)
        logits[:, :, i, j] = 1e4
        return [logits]

    net.forward = forward


def test_forward_returns_image_pixels(tiny_model):
    """Global stub peaks at proxy cell (3, 5) of the stride-4 map: proxy point (4·5 + 1.5, 4·3 + 1.5) =
    (21.5, 13.5); with a 128 px image as a 64 px proxy, image point = 2·proxy + 0.5 = (43.5, 27.5).

    All points coincide, so each region box has the minimum side 0.12·128 = 15.36 around (43.5, 27.5).
    Regional stubs peak at crop cell (2, 6): crop point (25.5, 9.5); in the image
    x0 + (u + 0.5)·15.36/32."""
    model = tiny_model
    g_calls, r_calls = [], []
    one_hot_stub(model.global_net, 68, (3, 5), g_calls)
    for net, region in zip(model.regional_nets[0], IBUG68.regions):
        one_hot_stub(net, len(region.indices), (2, 6), r_calls)
    x = images()
    with torch.no_grad():
        out = model(x)

    gx, gy = 43.5, 27.5
    torch.testing.assert_close(out["global"][0], torch.tensor([gx, gy]).expand(B, 68, 2))
    half = 0.12 * 128 / 2
    box = torch.tensor([gx - half, gy - half, gx + half, gy + half])
    torch.testing.assert_close(out["boxes"][0], box.expand(B, 4, 4))
    side = 2 * half
    fx = gx - half + (25.5 + 0.5) * side / 32
    fy = gy - half + (9.5 + 0.5) * side / 32
    want = torch.tensor([gx, gy]).repeat(B, 68, 1)
    want[:, IBUG68.refined_indices] = torch.tensor([fx, fy])
    torch.testing.assert_close(out["final"], want)
    torch.testing.assert_close(out["refined"][0], torch.tensor([fx, fy]).expand(B, 51, 2))
    # one-hot heatmaps: every score is 1
    torch.testing.assert_close(out["scores"], torch.ones(B, 68))

    # what the networks saw (undoing the normalisation): the area-averaged proxy, and crops of the image
    mean, std = model.mean, model.std
    torch.testing.assert_close(g_calls[0] * std + mean, F.avg_pool2d(x, 2), rtol=0, atol=1e-3)
    assert len(r_calls) == 4
    crops = roi_align(x, box.expand(B, 4), torch.arange(B), 32)
    for c in r_calls:
        torch.testing.assert_close(c * std + mean, crops, rtol=0, atol=1e-3)


def test_infer_maps_through_given_frames(tiny_model):
    """infer() with a frame [10, 20, 74, 84] (64 px = proxy size): image point = proxy point + (10.5, 20.5)."""
    calls = []
    one_hot_stub(tiny_model.global_net, 68, (0, 15), calls)  # proxy (61.5, 1.5)
    frames = torch.tensor([[10.0, 20.0, 74.0, 84.0]])
    seen = []

    def crop(boxes):
        seen.append(boxes.clone())
        return torch.zeros(1, 4, 3, 32, 32)

    with torch.no_grad():
        out = tiny_model.infer(torch.zeros(1, 3, 64, 64), frames, crop)
    torch.testing.assert_close(out["global"][0], torch.tensor([72.0, 22.0]).expand(1, 68, 2))
    assert len(seen) == 1 and seen[0].shape == (1, 4, 4)
    torch.testing.assert_close(seen[0], out["boxes"][0])


# ---------------------------------------------------------------- gradients


def test_gradients_reach_global_and_regional_parameters():
    torch.manual_seed(0)
    model = LandmarkNet(tiny_config()).train()
    out = model(images())
    target = torch.rand(B, 68, 2) * R
    F.l1_loss(out["final"], target).backward()
    assert model.global_net.heads[0].weight.grad.abs().sum() > 0  # through the unrefined jaw points
    assert model.global_net.stem[0][0].weight.grad.abs().sum() > 0
    assert model.global_head.log_beta.grad.abs() > 0
    for net, head in zip(model.regional_nets[0], model.regional_heads[0]):
        assert net.heads[0].weight.grad.abs().sum() > 0
        assert net.stem[0][0].weight.grad.abs().sum() > 0
        assert head.log_beta.grad.abs() > 0


def test_refined_points_do_not_backpropagate_into_the_global_stage():
    """Region boxes are built from detached global points: a loss on refined points trains only the
    regional networks."""
    torch.manual_seed(0)
    model = LandmarkNet(tiny_config()).train()
    out = model(images())
    out["final"][:, IBUG68.refined_indices].sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.global_net.parameters())
    assert all(net.heads[0].weight.grad.abs().sum() > 0 for net in model.regional_nets[0])


def test_fixed_temperature_has_no_parameter():
    model = LandmarkNet(tiny_config(learn_temperature=False, temperature=2.0))
    names = [n for n, _ in model.named_parameters()]
    assert not any("log_beta" in n for n in names)
    assert "global_head.log_beta" in model.state_dict()
    torch.testing.assert_close(model.global_head.log_beta.exp(), torch.tensor(0.5))


# ---------------------------------------------------------------- region boxes


def test_region_boxes_hand_values(tiny_model):
    """Nose points (27..35) span x 10..30, y 40..50: centre (20, 45), side 20·(1 + 2·0.25) = 30.
    Right-eye points sit at (50, 50) but one at (52, 51): extent 2 → 3 < 0.12·100 = 12, so side 12.
    Mouth points span 0..100 in y only: side 150 around (5, 50)."""
    pts = torch.zeros(2, 68, 2)
    nose = list(range(27, 36))
    pts[:, nose, 0] = torch.linspace(10, 30, 9)
    pts[:, nose, 1] = torch.linspace(40, 50, 9).flip(0)
    eye = list(range(17, 22)) + list(range(36, 42))
    pts[:, eye] = torch.tensor([50.0, 50.0])
    pts[:, 36] = torch.tensor([52.0, 51.0])
    mouth = list(range(48, 68))
    pts[:, mouth, 0] = 5.0
    pts[:, mouth, 1] = torch.linspace(0, 100, 20)
    frame_side = torch.tensor([100.0, 1000.0])  # second face: minimum side 120 wins for eyes and nose
    boxes = tiny_model.region_boxes(pts, frame_side)
    assert boxes.shape == (2, 4, 4)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([45.0, 44.5, 57.0, 56.5]))
    torch.testing.assert_close(boxes[0, 2], torch.tensor([5.0, 30.0, 35.0, 60.0]))
    torch.testing.assert_close(boxes[0, 3], torch.tensor([-70.0, -25.0, 80.0, 125.0]))
    torch.testing.assert_close(boxes[1, 0], torch.tensor([-9.0, -9.5, 111.0, 110.5]))
    torch.testing.assert_close(boxes[1, 2], torch.tensor([-40.0, -15.0, 80.0, 105.0]))
    torch.testing.assert_close(boxes[1, 3], torch.tensor([-70.0, -25.0, 80.0, 125.0]))
    side = boxes[..., 2:] - boxes[..., :2]
    torch.testing.assert_close(side[..., 0], side[..., 1])  # square


def test_region_boxes_follow_config():
    model = LandmarkNet(tiny_config(region_margin=0.5, region_min_side=0.0, scheme=ten_point_scheme().to_dict()))
    pts = torch.zeros(1, 10, 2)
    pts[0, [0, 1, 2]] = torch.tensor([[0.0, 0.0], [4.0, 1.0], [2.0, 2.0]])  # extent 4: side 4·2 = 8
    pts[0, [5, 6, 7, 8]] = torch.tensor([[10.0, 10.0]] * 4)  # no extent, no minimum: empty box
    boxes = model.region_boxes(pts, torch.tensor([100.0]))
    torch.testing.assert_close(boxes[0], torch.tensor([[-2.0, -3.0, 6.0, 5.0], [10.0, 10.0, 10.0, 10.0]]))


# ---------------------------------------------------------------- configuration


def test_config_json_round_trip():
    cfg = tiny_config(regional_stages=2, frame_scale=1.3, region_margin=0.2, temperature=0.5,
                      learn_temperature=False, scheme=ten_point_scheme().to_dict())
    text = cfg.to_json()
    json.loads(text)  # valid JSON
    back = ModelConfig.from_json(text)
    assert back == cfg
    assert isinstance(back.global_net, HourglassConfig) and back.global_net == cfg.global_net
    assert back.landmark_scheme == ten_point_scheme()


def test_default_config_round_trip():
    cfg = ModelConfig()
    back = ModelConfig.from_json(cfg.to_json())
    assert back == cfg and back.landmark_scheme == IBUG68


@pytest.mark.parametrize("kwargs", [dict(stem_stride=3), dict(stem_stride=8), dict(width=7), dict(width=2),
                                    dict(depth=0), dict(stacks=0), dict(blocks=0)])
def test_hourglass_config_validation(kwargs):
    with pytest.raises(ValueError):
        HourglassConfig(**kwargs)


def test_model_config_validation():
    # tiny global net: depth 2, stride 4 → proxy must be a multiple of 16; regional: depth 1, stride 4 → 8
    with pytest.raises(ValueError, match="proxy_size 72 must be a multiple of 16"):
        tiny_config(proxy_size=72)
    with pytest.raises(ValueError, match="crop_size 36 must be a multiple of 8"):
        tiny_config(crop_size=36)
    with pytest.raises(ValueError, match="regional_stages"):
        tiny_config(regional_stages=0)
    with pytest.raises(ValueError, match="stem_stride"):
        tiny_config(global_net={"width": 8, "depth": 2, "stem_stride": 3})
    with pytest.raises(ValueError):
        tiny_config(scheme={"num_points": 5, "norm_points": [0, 9]})
    tiny_config(proxy_size=80, crop_size=40)  # multiples are fine


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"bogus_field": 1}', '{"proxy_size": 72}',
                                  '{"global_net": {"width": 8, "colour": "red"}}'])
def test_config_from_bad_json(text):
    with pytest.raises(ValueError):
        ModelConfig.from_json(text)


def test_preset_light_uses_depthwise_convolutions():
    light = LandmarkNet(preset("light"))
    grouped = [m for m in light.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.groups == m.in_channels == m.out_channels for m in grouped)
    assert light.config.variant == "light" and light.config.regional_net.light
    regular = LandmarkNet(preset("regular"))
    assert not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in regular.modules())
    n_light = sum(p.numel() for p in light.parameters())
    n_regular = sum(p.numel() for p in regular.parameters())
    assert n_light < n_regular / 2


def test_preset_options():
    regular = preset("regular")
    assert regular.variant == "regular" and not regular.regional_net.light
    assert regular.landmark_scheme == IBUG68 and regular.crop_size == 128
    assert preset("regular", crop_size=256).crop_size == 256
    cfg = preset("light", scheme=ten_point_scheme())
    assert cfg.landmark_scheme == ten_point_scheme() and cfg.variant == "light"
    with pytest.raises(ValueError, match="unknown variant"):
        preset("heavy")


def test_fused_batchnorm_gives_the_same_points():
    """Folding BatchNorm into the convolutions (done by Landmarker) must not change the outputs."""
    import copy

    from fflm.model.serving import fuse_batchnorm

    torch.manual_seed(0)
    m = randomise_batchnorm(LandmarkNet(tiny_config()).eval())
    fused = fuse_batchnorm(copy.deepcopy(m))
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in fused.modules())
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.inference_mode():
        torch.testing.assert_close(fused(x)["final"], m(x)["final"], atol=1e-3, rtol=0)


def test_flip_averaged_global_stage_is_mirror_equivariant(tiny_model):
    """Whatever the weights, the flip-averaged estimate on a mirrored proxy is the mirror image of the estimate
    on the proxy: f(Mx) = M f(x), with M mirroring x (pixel centre c → P - 1 - c) and relabelling by flip pairs."""
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 255
    perm = tiny_model.scheme.flip_permutation()
    with torch.inference_mode():
        a = tiny_model.run_global(x, flip=True)
        b = tiny_model.run_global(x.flip(-1), flip=True)
        plain = tiny_model.run_global(x)
    mirrored = b.points[:, perm].clone()
    mirrored[..., 0] = 63 - mirrored[..., 0]
    torch.testing.assert_close(a.points, mirrored, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.scores, b.scores[:, perm], atol=1e-5, rtol=0)
    assert not torch.allclose(a.points, plain.points, atol=1e-3)  # the average really differs from one pass


def test_flip_average_hand_computed(tiny_model, monkeypatch):
    """Stubbed network: every point at (10, 20) on the proxy and (40, 30) on the mirrored proxy (P = 64). The
    mirrored estimate maps back to (63 - 40, 30) = (23, 30), so the average is (16.5, 25) for every point."""
    from fflm.model.network import StageOutput

    def run(net, head, x):
        b = len(x) // 2
        pts = torch.cat([torch.tensor([10.0, 20.0]).expand(b, 68, 2), torch.tensor([40.0, 30.0]).expand(b, 68, 2)])
        scores = torch.cat([torch.full((b, 68), 0.2), torch.full((b, 68), 0.6)])
        return StageOutput(pts, scores, [pts])

    monkeypatch.setattr(tiny_model, "_run", run)
    out = tiny_model.run_global(torch.zeros(3, 3, 64, 64), flip=True)
    torch.testing.assert_close(out.points, torch.tensor([16.5, 25.0]).expand(3, 68, 2))
    torch.testing.assert_close(out.scores, torch.full((3, 68), 0.4))


@pytest.mark.parametrize("stacked", [False, True])
def test_flip_averaged_regional_stage_is_mirror_equivariant(stacked):
    """Mirroring every crop and swapping the eyes' crops mirrors the flip-averaged regional estimate: region
    i's points on the mirrored crops are region j's (its mirror) points on the originals, mirrored in x and
    relabelled. Checked with and without the grouped (stacked) networks."""
    import copy

    from fflm.model.serving import for_inference

    torch.manual_seed(2)
    m = randomise_batchnorm(LandmarkNet(tiny_config()).eval())
    served = m.for_serving() if stacked else for_inference(copy.deepcopy(m))
    mirrors = served.scheme.region_mirrors()
    crops = torch.rand(2, len(mirrors), 3, 32, 32) * 255
    with torch.inference_mode():
        a = served.run_regions(crops, flip=True)
        b = served.run_regions(crops[:, [j for j, _ in mirrors]].flip(-1), flip=True)
        plain = served.run_regions(crops)
    for i, (j, order) in enumerate(mirrors):
        mirrored = b[j].points[:, order].clone()
        mirrored[..., 0] = 31 - mirrored[..., 0]
        torch.testing.assert_close(a[i].points, mirrored, atol=1e-3, rtol=0)
        torch.testing.assert_close(a[i].scores, b[j].scores[:, order], atol=1e-5, rtol=0)
        assert not torch.allclose(a[i].points, plain[i].points, atol=1e-3)


def test_flip_regional_average_hand_computed(tiny_model, monkeypatch):
    """Stubbed regional networks: network r puts every point at (r, 2r) on direct crops and (10 + r, 5) on
    mirrored ones (S = 32). Region 0 (right eye) averages its own direct (0, 0) with network 1's mirrored
    estimate mapped back (31 - 11, 5) = (20, 5): (10, 2.5); the nose (2) with its own: ((2 + 19) / 2, (4 + 5) / 2)."""
    from fflm.model.network import StageOutput

    regions = tiny_model.scheme.regions

    def run_regions(crops, stage=0, flip=False):
        assert not flip
        k = len(crops) // 2
        out = []
        for r, region in enumerate(regions):
            n = len(region.indices)
            pts = torch.cat([torch.tensor([float(r), 2.0 * r]).expand(k, n, 2),
                             torch.tensor([10.0 + r, 5.0]).expand(k, n, 2)])
            out.append(StageOutput(pts, torch.full((2 * k, n), 0.5), [pts]))
        return out

    real = type(tiny_model).run_regions
    monkeypatch.setattr(tiny_model, "run_regions", lambda crops, stage=0, flip=False: (
        real(tiny_model, crops, stage, flip) if flip else run_regions(crops, stage)))
    out = tiny_model.run_regions(torch.zeros(3, 4, 3, 32, 32), flip=True)
    torch.testing.assert_close(out[0].points, torch.tensor([10.0, 2.5]).expand(3, 11, 2))
    torch.testing.assert_close(out[1].points, torch.tensor([(1 + 21) / 2, (2 + 5) / 2]).expand(3, 11, 2))
    torch.testing.assert_close(out[2].points, torch.tensor([(2 + 19) / 2, (4 + 5) / 2]).expand(3, 9, 2))


@pytest.mark.parametrize("light, stacks, stages", [(False, 1, 1), (True, 2, 2)])
def test_stacked_regions_give_the_same_points(light, stacks, stages):
    """The grouped network that runs all regions in one call (inference) must give each region's own points.
    Regions hold 6 to 20 points, so the heads (and with two stacks the heat-map merges) are zero-padded."""
    import copy

    from fflm.model.serving import for_inference

    torch.manual_seed(0)
    net = HourglassConfig(width=8, depth=1, stem_stride=4, light=light, stacks=stacks)
    m = randomise_batchnorm(LandmarkNet(tiny_config(regional_net=net, regional_stages=stages)).eval())
    separately, stacked = for_inference(copy.deepcopy(m)), m.for_serving()
    assert separately.stacked_regions is None and len(stacked.stacked_regions) == stages
    crops = torch.rand(3, len(m.scheme.regions), 3, 32, 32) * 255
    with torch.inference_mode():
        for stage in range(stages):
            separate = separately.run_regions(crops, stage)
            together = stacked.run_regions(crops, stage)
            for a, b in zip(together, separate):
                torch.testing.assert_close(a.points, b.points, atol=1e-3, rtol=0)
                torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)
                for p, q in zip(a.stack_points, b.stack_points):
                    torch.testing.assert_close(p, q, atol=1e-3, rtol=0)


def test_stacking_refuses_unfolded_batchnorm():
    from fflm.model.serving import stack_convnets

    m = LandmarkNet(tiny_config())
    with pytest.raises(ValueError, match="BatchNorm"):
        stack_convnets(list(m.regional_nets[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_for_serving_is_a_copy_and_leaves_the_trained_model_as_it_was(dtype):
    """The serving copy is folded, stacked and cast; the trained model keeps its BatchNorm, gradients, dtype and
    state dict (it could go on training or be saved), and both give the same points."""
    torch.manual_seed(4)
    m = randomise_batchnorm(LandmarkNet(tiny_config()).eval())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    served = m.for_serving(dtype)
    assert served is not m and m.stacked_regions is None
    assert all(p.requires_grad and p.dtype == torch.float32 for p in m.parameters())
    assert sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules()) > 0
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in served.modules())
    assert m.state_dict().keys() == before.keys() and all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    assert {p.dtype for p in served.global_net.parameters()} == {p.dtype for p in served.stacked_regions.parameters()} == {dtype}
    assert served.global_head.log_beta.dtype == torch.float32  # the heads stay float32
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.inference_mode(), torch.autocast("cpu", dtype, enabled=dtype != torch.float32):
        a, b = m(x)["final"], served(x)["final"]
    torch.testing.assert_close(b.float(), a.float(), atol=0.05 if dtype == torch.float32 else 1.5, rtol=0)


def test_rows_per_call_splits_the_networks_calls_and_changes_no_point():
    """A serving copy with rows_per_call 3 runs 7 faces' proxies (with mirrors: 14 rows) through the global network,
    and their crops through the stacked regional networks, in calls of at most 3 rows, with the points, scores and
    mirrored averages of one call per stage."""
    torch.manual_seed(5)
    m = randomise_batchnorm(LandmarkNet(tiny_config()).eval())
    whole, split = m.for_serving(), m.for_serving(rows_per_call=3)
    assert (whole.rows_per_call, split.rows_per_call) == (None, 3)
    sizes = []
    for net in (split.global_net, *split.stacked_regions):
        net.register_forward_pre_hook(lambda _, args: sizes.append(len(args[0])))
    proxy, crops = torch.rand(7, 3, 64, 64) * 255, torch.rand(7, len(m.scheme.regions), 3, 32, 32) * 255
    with torch.inference_mode():
        for flip in (False, True):
            sizes.clear()
            a, b = whole.run_global(proxy, flip), split.run_global(proxy, flip)
            torch.testing.assert_close(b.points, a.points, atol=1e-4, rtol=0)
            torch.testing.assert_close(b.scores, a.scores, atol=1e-5, rtol=0)
            ra, rb = whole.run_regions(crops, flip=flip), split.run_regions(crops, flip=flip)
            for x, y in zip(ra, rb):
                torch.testing.assert_close(y.points, x.points, atol=1e-4, rtol=0)
            rows = 14 if flip else 7  # the mirrored proxies and crops go in the same calls
            assert sizes == ([3] * (rows // 3) + [rows % 3]) * 2  # the global network's calls, then the regional's
        plain, averaged = split.run_global_mirrored(proxy)
        torch.testing.assert_close(plain.points, whole.run_global(proxy).points, atol=1e-4, rtol=0)
        torch.testing.assert_close(averaged.points, whole.run_global(proxy, True).points, atol=1e-4, rtol=0)
