"""The attention-driven cropping landmark model: a global stage on the proxy, regional stages on crops.

The network sees pixel values in 0..255 (float); it normalises them itself. Both stages return points in
the pixels of their own input (proxy or crop); fflm.geometry maps them to the original image.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from fflm.geometry import local_to_box
from fflm.model.config import ModelConfig
from fflm.model.hourglass import HourglassNet
from fflm.model.layers import SoftArgmax, confidence, roi_align
from fflm.model.serving import for_inference, stack_convnets
from fflm.shape import ShapeModel


@dataclass
class StageOutput:
    """Points [B, N, 2] in the stage's input pixels, their confidence [B, N], and every stack's points."""

    points: torch.Tensor
    scores: torch.Tensor
    stack_points: list[torch.Tensor]

    def rows(self, index: torch.Tensor | slice) -> "StageOutput":
        """The faces at `index`."""
        return StageOutput(self.points[index], self.scores[index], [p[index] for p in self.stack_points])

    @staticmethod
    def cat(parts: list["StageOutput"]) -> "StageOutput":
        """Faces of several outputs, in order."""
        return StageOutput(torch.cat([o.points for o in parts]), torch.cat([o.scores for o in parts]),
                           [torch.cat(ps) for ps in zip(*(o.stack_points for o in parts))])


class LandmarkNet(nn.Module):
    """Global hourglass + one regional hourglass per region (optionally stacked `regional_stages` deep)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.scheme = config.landmark_scheme
        self.global_net = HourglassNet(3, self.scheme.num_points, config.global_net)
        self.global_head = SoftArgmax(config.temperature, config.learn_temperature)
        self.regional_nets = nn.ModuleList(
            nn.ModuleList(HourglassNet(3, len(r.indices), config.regional_net) for r in self.scheme.regions)
            for _ in range(config.regional_stages)
        )
        self.regional_heads = nn.ModuleList(
            nn.ModuleList(SoftArgmax(config.temperature, config.learn_temperature) for _ in self.scheme.regions)
            for _ in range(config.regional_stages)
        )
        k = config.shape_prior.components
        if k:  # the shape model (fflm.shape), fitted from the training annotations; zeros until then
            self.register_buffer("shape_mean", torch.zeros(self.scheme.num_points, 2))
            self.register_buffer("shape_components", torch.zeros(k, self.scheme.num_points, 2))
            self.register_buffer("shape_variances", torch.zeros(k))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255, persistent=False)
        self.stacked_regions: nn.ModuleList | None = None  # a serving copy's grouped regional networks (for_serving)
        self.rows_per_call: int | None = None  # a serving copy's largest network call (for_serving); None: any

    def shape_model(self) -> ShapeModel | None:
        """The stored shape model, or None when the configuration has none or it was never fitted."""
        if not self.config.shape_prior.components or not bool((self.shape_variances > 0).all()):
            return None
        return ShapeModel(*(t.detach().cpu().double().numpy() for t in
                            (self.shape_mean, self.shape_components, self.shape_variances)))

    def set_shape_model(self, model: ShapeModel) -> None:
        """Store a fitted shape model (its mode count must be the configuration's)."""
        for name, value in (("shape_mean", model.mean), ("shape_components", model.components),
                            ("shape_variances", model.variances)):
            buf = getattr(self, name)
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype))

    def _run(self, net: HourglassNet, head: SoftArgmax, x: torch.Tensor) -> StageOutput:
        if self.rows_per_call is not None and len(x) > self.rows_per_call:
            return StageOutput.cat([self._run(net, head, part) for part in x.split(self.rows_per_call)])
        return self._points(net((x - self.mean) / self.std), head, net.stride)

    @staticmethod
    def _points(heatmaps: list[torch.Tensor], head: SoftArgmax, stride: int) -> StageOutput:
        pts = [head(h, stride) for h in heatmaps]
        last_pts, last_prob = pts[-1]
        return StageOutput(last_pts, confidence(last_prob, last_pts, stride), [p for p, _ in pts])

    def run_global(self, proxy: torch.Tensor, flip: bool = False, direct: StageOutput | None = None) -> StageOutput:
        """Global stage on proxies [B, 3, P, P]; points in proxy pixels. With `flip` (test-time augmentation) the
        mirrored proxies go through in the same call and each estimate is averaged with its mirror image,
        matched through the scheme's flip pairs (pixel centre x mirrors to P - 1 - x). `direct`: this stage's
        plain output on these proxies, when the caller already has it: only the mirrored ones then run."""
        if not flip:
            return direct if direct is not None else self._run(self.global_net, self.global_head, proxy)
        if direct is None:
            return self.run_global_mirrored(proxy)[1]
        mirrored = self._run(self.global_net, self.global_head, proxy.flip(-1))
        return _average_mirrored(StageOutput.cat([direct, mirrored]), len(proxy), self.scheme.flip_permutation(),
                                 proxy.shape[-1])

    def run_global_mirrored(self, proxy: torch.Tensor) -> tuple[StageOutput, StageOutput]:
        """The global stage's plain output on `proxy` and, from the same call, its average with the mirrored
        estimate (run_global with flip)."""
        both = self._run(self.global_net, self.global_head, torch.cat([proxy, proxy.flip(-1)]))
        b = len(proxy)
        return both.rows(slice(None, b)), _average_mirrored(both, b, self.scheme.flip_permutation(), proxy.shape[-1])

    def run_region(self, region: int, crops: torch.Tensor, stage: int = 0) -> StageOutput:
        """Regional stage `stage` of region `region` on crops [K, 3, S, S]; points in crop pixels."""
        return self._run(self.regional_nets[stage][region], self.regional_heads[stage][region], crops)

    def run_regions(self, crops: torch.Tensor, stage: int = 0, flip: bool = False) -> list[StageOutput]:
        """Regional stage `stage` of every region on crops [K, R, 3, S, S]: one StageOutput per region. After
        `for_serving` the R networks run as one grouped network (one call, inference only). With `flip`, each
        region's mirrored crop also goes through its mirror region's network (the other eye's; nose and mouth
        their own) in the same call, and the two estimates are averaged."""
        mirrors = self.scheme.region_mirrors() if flip else None
        if mirrors is not None:
            k, side = len(crops), crops.shape[-1]
            both = self.run_regions(torch.cat([crops, crops[:, [j for j, _ in mirrors]].flip(-1)]), stage)
            # rows [:k] of network i: region i's own crops; rows [k:] of network j: region i's mirrored crops
            return [_average_mirrored(StageOutput.cat([both[i].rows(slice(None, k)), both[j].rows(slice(k, None))]),
                                      k, order, side)
                    for i, (j, order) in enumerate(mirrors)]
        stacked = self.stacked_regions
        if stacked is None:
            return [self.run_region(r, crops[:, r], stage) for r in range(len(self.scheme.regions))]
        if self.rows_per_call is not None and len(crops) > self.rows_per_call:
            parts = [self.run_regions(part, stage) for part in crops.split(self.rows_per_call)]
            return [StageOutput.cat(list(region)) for region in zip(*parts)]
        k, r, c, h, w = crops.shape
        x = ((crops - self.mean[:, None]) / self.std[:, None]).reshape(k, r * c, h, w)
        maps = stacked[stage](x.contiguous(memory_format=torch.channels_last))
        width = maps[0].shape[1] // r
        heads = self.regional_heads[stage]
        return [self._points([m[:, i * width : i * width + len(region.indices)] for m in maps], heads[i],
                             self.regional_nets[stage][i].stride)
                for i, region in enumerate(self.scheme.regions)]

    def for_serving(self, dtype: torch.dtype = torch.float32, rows_per_call: int | None = None) -> "LandmarkNet":
        """A copy ready to serve; this model is left as it is (it can go on training or be saved). The copy is in
        eval mode without gradients, its BatchNorm folded and its weights channels-last (fflm.model.serving), each
        stage's regional networks stacked into one grouped network that `run_regions` calls once, and the
        hourglasses' weights in `dtype` for autocast (cast once here, not at every call; the shape model,
        normalisation and heads stay float32). `rows_per_call`: more faces (or crops) than this go through each
        network in several calls of at most this many (see fflm.pipeline.CPU_ROWS). Its state dict no longer
        matches a weights file."""
        served = for_inference(copy.deepcopy(self))
        served.rows_per_call = rows_per_call
        served.stacked_regions = nn.ModuleList(stack_convnets(list(nets)) for nets in served.regional_nets)
        for net in (served.global_net, served.regional_nets, served.stacked_regions):
            net.to(dtype)
        return served

    def region_boxes(self, points: torch.Tensor, frame_side: torch.Tensor) -> torch.Tensor:
        """Boxes [B, R, 4] around each region's points [B, N, 2] (any pixel frame), made square.

        Side = extent·(1 + 2·margin), at least region_min_side·frame_side ([B]).
        """
        cfg = self.config
        boxes = []
        for region in self.scheme.regions:
            p = points[:, list(region.indices)]
            lo, hi = p.amin(dim=1), p.amax(dim=1)
            centre = (lo + hi) / 2
            side = (hi - lo).amax(dim=-1) * (1 + 2 * cfg.region_margin)
            side = torch.maximum(side, frame_side * cfg.region_min_side)
            half = side[:, None] / 2
            boxes.append(torch.cat([centre - half, centre + half], dim=-1))
        return torch.stack(boxes, dim=1)

    def infer(self, proxy: torch.Tensor | None, frames: torch.Tensor, crop: Callable[[torch.Tensor], torch.Tensor],
              jitter: float = 0.0, centre_jitter: float = 0.0, global_out: StageOutput | None = None,
              flip: bool = False) -> dict[str, Any]:
        """The whole flow for B faces: global stage on proxies [B, 3, P, P] of the face frames [B, 4] (image
        pixels), region boxes from its points, crops through `crop(boxes [B, R, 4]) -> [B, R, 3, S, S]`, and the
        regional stages. One call per region network for all faces.

        With jitter > 0 each region box's width and height are scaled by (1 + jitter·N(0, 1)) independently and
        its centre moved by centre_jitter·side·N(0, 1) (paper 3.2). Returns, in image pixels: `global` points
        per stack, `refined` per regional stage ([B, N_refined, 2]), `final` [B, N, 2], `scores` [B, N]
        (regional confidence where refined, global elsewhere), `global_scores`, and the region `boxes`.
        `global_out`: the global stage's output when the caller already has it (then `proxy` is unused).
        `flip`: mirrored test-time augmentation in both stages (see run_global and run_regions).
        """
        p = self.config.proxy_size
        g = global_out if global_out is not None else self.run_global(proxy, flip)
        global_pts = [local_to_box(s, frames, p) for s in g.stack_points]
        current, scores = global_pts[-1], g.scores.clone()
        refined_all, boxes_all = [], []
        side = frames[:, 2] - frames[:, 0]
        for stage in range(self.config.regional_stages):
            boxes = self.region_boxes(current.detach(), side)
            if jitter > 0 or centre_jitter > 0:
                boxes = _jitter_boxes(boxes, jitter, centre_jitter)
            crops = crop(boxes)
            refined = current.clone()
            for r, (region, out) in enumerate(zip(self.scheme.regions, self.run_regions(crops, stage, flip))):
                idx = list(region.indices)
                refined[:, idx] = local_to_box(out.points, boxes[:, r], self.config.crop_size)
                scores[:, idx] = out.scores
            refined_all.append(refined[:, self.scheme.refined_indices])
            boxes_all.append(boxes)
            current = refined
        return {"global": global_pts, "refined": refined_all, "final": current, "scores": scores,
                "global_scores": g.scores, "boxes": boxes_all}

    def forward(self, images: torch.Tensor, jitter: float = 0.0, centre_jitter: float = 0.0,
                flip: bool = False) -> dict[str, Any]:
        """The training path: whole images [B, 3, R, R] (0..255), each one face frame, as float tensors.

        The proxy is the area-average of the image; crops come from the full-resolution image. `flip`: as in `infer`
        (a teacher's targets use it).
        """
        b, _, h, w = images.shape
        p = self.config.proxy_size
        proxy = images if (h, w) == (p, p) else F.interpolate(images, size=(p, p), mode="area")
        frames = images.new_tensor([-0.5, -0.5, w - 0.5, h - 0.5]).expand(b, 4)
        nr = len(self.scheme.regions)
        batch_index = torch.arange(b, device=images.device).repeat_interleave(nr)

        def crop(boxes: torch.Tensor) -> torch.Tensor:
            crops = roi_align(images, boxes.reshape(-1, 4), batch_index, self.config.crop_size)
            return crops.reshape(b, nr, *crops.shape[1:])

        return self.infer(proxy, frames, crop, jitter, centre_jitter, flip=flip)


def _average_mirrored(both: StageOutput, b: int, order: list[int], side: int) -> StageOutput:
    """Rows [:b] are direct estimates, rows [b:] estimates on mirrored inputs whose point `order[s]` is the mirror
    of point s: each direct estimate averaged with its mirrored one mapped back (pixel centre x -> side - 1 - x)."""
    def average(points: torch.Tensor) -> torch.Tensor:
        mirrored = points[b:, order].clone()
        mirrored[..., 0] = (side - 1) - mirrored[..., 0]
        return (points[:b] + mirrored) / 2

    return StageOutput(average(both.points), (both.scores[:b] + both.scores[b:, order]) / 2,
                       [average(p) for p in both.stack_points])


def _jitter_boxes(boxes: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = boxes[..., 2:] - boxes[..., :2]
    size = size * (1 + scale * torch.randn_like(size)).clamp(0.7, 1.4)
    centre = centre + shift * size * torch.randn_like(centre)
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)
