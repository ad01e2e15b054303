"""The training targets are a fixed, small number of device ops (issue 18), counted on the CPU without a GPU.

The fixed path (what a GPU and ``torch.compile`` run; ``lab.CPU_BLOCKED = False`` runs it here) is profiled
with ``torch.profiler`` at batch 2 and 64 and two image sizes: the number of kernel-launching aten ops must
not change, and the same code on the ``meta`` device (which has no data: any ``.item()``, ``nonzero`` or
``bool()`` raises) proves it never waits on the device.
"""

from __future__ import annotations

import collections
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from chromaflow.color import lab
from chromaflow.color.constants import Q
from chromaflow.data.hints import global_hints, simulate_local_hints
from chromaflow.train.tasks.colorization import ColorizationTask
from chromaflow.train.tasks.guided import GuidedTask

# ops that launch no kernel by themselves: views, allocations, metadata (aten::to / reshape / contiguous count
# when they copy, i.e. when a child does)
NO_KERNEL = {
    "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::select", "aten::slice",
    "aten::permute", "aten::expand", "aten::expand_as", "aten::unsqueeze", "aten::squeeze", "aten::transpose",
    "aten::t", "aten::alias", "aten::detach", "aten::lift_fresh", "aten::empty", "aten::empty_strided",
    "aten::empty_like", "aten::resize_", "aten::result_type", "aten::_unsafe_view", "aten::view_as",
    "aten::unbind", "aten::to", "aten::contiguous", "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense",
}  # fmt: skip
SYNCS = {"aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::masked_select"}
BATCHES, SIZES = (2, 64), (64, 96)


def _launches(e) -> bool:
    return e.name not in NO_KERNEL or any(_launches(c) for c in e.cpu_children if c.name.startswith("aten::"))


def kernel_ops(fn) -> collections.Counter:
    """The aten ops called by one call of ``fn`` (top level: an op's own sub-ops are not counted again) that
    launch work on the device, by name; pure views and allocations are left out (see NO_KERNEL)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    top = [e for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
    return collections.Counter(e.name for e in top if _launches(e))


def _syncs(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()} & SYNCS


@pytest.fixture
def fixed_path(monkeypatch):
    monkeypatch.setattr(lab, "CPU_BLOCKED", False)


class Items(torch.utils.data.Dataset):
    """Training items over a fixed uint8 batch."""

    def __init__(self, rgb: torch.Tensor) -> None:
        self.rgb = rgb

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        return {"rgb": self.rgb[i], "id": str(i), "label": None}


def _rgb(b: int, s: int, device: str = "cpu") -> torch.Tensor:
    rgb = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=torch.Generator().manual_seed(b + s))
    return rgb.to(device)


def _colorization_targets(task: ColorizationTask, rgb: torch.Tensor):
    """Lab, normalized L, area-downsampled ab, soft-encoding, rebalancing and the loss on given logits."""
    l_in, ab = task._targets(rgb)
    logits = torch.zeros(rgb.shape[0], Q, rgb.shape[2] // 4, rgb.shape[3] // 4, device=rgb.device)
    return task.class_loss(logits, ab)


def _counts(fn) -> dict[tuple[int, int], collections.Counter]:
    fn(_rgb(2, 32))  # warm-up: tables built and cached (once per device)
    inputs = {(b, s): _rgb(b, s) for b in BATCHES for s in SIZES}
    return {key: kernel_ops(lambda x=x: fn(x)) for key, x in inputs.items()}


def _assert_fixed(counts: dict, limit: int) -> int:
    first = next(iter(counts.values()))
    for key, c in counts.items():
        assert c == first, f"batch/size {key}: {dict(c - first)} more, {dict(first - c)} fewer than {BATCHES[0]}"
    total = sum(first.values())
    assert total < limit, f"{total} ops: {dict(first)}"
    return total


def test_colorization_targets_are_a_fixed_small_number_of_ops(fixed_path):
    task = ColorizationTask([], loss="rebalanced", soft_k=5)
    n = _assert_fixed(_counts(lambda rgb: _colorization_targets(task, rgb)), limit=50)
    print(f"colorization targets + rebalanced soft-CE: {n} kernel ops")


def test_colour_targets_alone_are_under_40_ops(fixed_path):
    """rgb_to_lab + area downsample + encode_soft + rebalancing gather: the targets, without input and loss."""
    import torch.nn.functional as F

    from chromaflow import color

    task = ColorizationTask([], loss="rebalanced", soft_k=5)
    cw = task._class_weights_on(torch.device("cpu"))

    def targets(rgb):
        ab = color.rgb_to_lab(rgb)[:, 1:]
        idx, w = color.encode_soft(F.interpolate(ab, scale_factor=0.25, mode="area"), k=5)
        return idx, w, cw[idx[:, 0]]

    n = _assert_fixed(_counts(targets), limit=40)
    print(f"colour targets: {n} kernel ops")


def test_hint_simulation_is_a_fixed_number_of_ops(fixed_path):
    def hints(rgb):
        ab = lab.rgb_to_lab(rgb)[:, 1:]
        return simulate_local_hints(ab), global_hints(ab, rgb.float() / 255)

    n = _assert_fixed(_counts(hints), limit=150)
    print(f"guided hints (local + global): {n} kernel ops")


def test_blocked_cpu_path_would_fail_the_count():
    """The check can fail: the eager CPU path (blocks of pixels) grows with the batch."""
    task = ColorizationTask([], loss="rebalanced", soft_k=5)
    counts = _counts(lambda rgb: _colorization_targets(task, rgb))
    assert counts[(2, 64)] != counts[(64, 64)]


def test_targets_and_hints_never_sync_on_meta():
    """On ``meta`` there is no data: a host sync anywhere in the path would raise."""
    import torch.nn.functional as F

    from chromaflow import color

    with pytest.raises(RuntimeError):  # the probe itself: meta really refuses to give a value
        bool(torch.zeros(1, device="meta").sum())
    rgb = torch.empty(4, 3, 32, 32, dtype=torch.uint8, device="meta")
    ab = color.rgb_to_lab(rgb)[:, 1:]
    idx, w = color.encode_soft(F.interpolate(ab, scale_factor=0.25, mode="area"), k=10)
    logits = torch.empty(4, Q, 8, 8, device="meta")
    weights = torch.ones(Q, device="meta")
    loss = color.soft_cross_entropy(logits, idx, w, pixel_weight=weights[idx[:, 0]])
    assert loss.device.type == "meta" and idx.shape == (4, 10, 8, 8)
    hint, mask = simulate_local_hints(ab)
    assert hint.shape == (4, 2, 32, 32) and mask.shape == (4, 1, 32, 32)
    assert global_hints(ab, rgb.float() / 255).shape == (4, Q + 3)


def test_target_path_compiles_without_graph_breaks():
    """torch.compile(fullgraph=True) of the colour targets and the hint simulation: one graph, no break."""
    from chromaflow import color
    from chromaflow.color import encode
    from chromaflow.data import hints

    def targets(rgb):
        lab_ = color.rgb_to_lab(rgb)
        ab = torch.nn.functional.interpolate(lab_[:, 1:], scale_factor=0.25, mode="area")
        hint, mask = simulate_local_hints(lab_[:, 1:])
        return color.encode_soft(ab, k=5), color.encode_hard(ab), hint, mask, global_hints(ab, rgb.float() / 255)

    cpu = torch.device("cpu")
    lab.warm_up(cpu), encode.warm_up(cpu, (1, 5)), hints.warm_up(cpu)
    torch._dynamo.reset()
    compiled = torch.compile(targets, fullgraph=True, backend="eager")
    rgb = _rgb(2, 32)
    (idx, w), hard, hint, mask, _ = compiled(rgb)
    with torch.no_grad():
        (ridx, rw), rhard, _, _, _ = targets(rgb)
    assert torch.equal(idx, ridx) and torch.equal(hard, rhard)
    torch.testing.assert_close(w, rw)


@pytest.mark.parametrize("task_type", ["colorization", "guided"])
def test_whole_training_loss_has_no_graph_break(task_type):
    """What ``--compile`` compiles (the task's loss: targets + network + loss) is one graph (dynamo.explain)."""
    if task_type == "colorization":
        task = ColorizationTask([], loss="rebalanced", width=0.125, soft_k=5)
    else:
        task = GuidedTask([], width=0.125, global_hints=True)
    torch.manual_seed(0)
    model = task.build_model().train()
    task.prepare(torch.device("cpu"))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(task.loss)(model, {"rgb": _rgb(2, 32), "id": ["a", "b"], "label": [None] * 2})
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_colorize_batch_is_a_fixed_number_of_ops(fixed_path):
    """Serving: images of one size go through Lab, the network, decoding and back together."""
    from chromaflow.models import create_model
    from chromaflow.serving import colorize_batch

    torch.manual_seed(0)
    model = create_model("eccv16", width=0.0625).eval()

    def serve(rgb):
        return colorize_batch(model, list(rgb), size=32)

    counts = _counts(serve)
    n = _assert_fixed(counts, limit=10**6)  # the network's own ops are in the count: equal is what matters
    print(f"colorize_batch (eccv16 width 1/16): {n} kernel ops")
    out = serve(_rgb(3, 40))
    assert len(out) == 3 and out[0].shape == (3, 40, 40)


@pytest.mark.slow
def test_engine_compile_trains_the_whole_loss(tmp_path):
    """``--compile`` (inductor on the CPU): the compiled loss - targets, network and loss - trains and matches eager."""
    from chromaflow.train.engine import TrainConfig, fit

    data = Items(_rgb(4, 32))
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        task = ColorizationTask(data, loss="rebalanced", width=0.0625, soft_k=5)
        cfg = TrainConfig(out=str(tmp_path / str(compiled)), steps=3, batch_size=2, compile=compiled, log_every=1)
        runs[compiled] = fit(task, cfg)
    assert runs[True]["final_loss"] == pytest.approx(runs[False]["final_loss"], rel=1e-3)


def test_prepare_warms_what_the_step_finds():
    """``prepare(torch.device("cpu", 0))`` (as the engine names a device) leaves the rebalancing weights where a step
    on tensors reporting ``cpu`` looks: copied once. On CUDA the same mismatch ("cuda" vs "cuda:0") was a host sync
    inside the first step, caught by the gpu test below on an H200."""
    task = ColorizationTask([], loss="rebalanced", soft_k=5)
    task.prepare(torch.device("cpu", 0))
    warmed = dict(task._weights_on)
    task.class_loss(torch.zeros(2, Q, 4, 4), torch.zeros(2, 2, 16, 16))
    assert task._weights_on == warmed and len(warmed) == 1


@pytest.mark.gpu
def test_gpu_targets_never_sync_and_match_the_cpu():
    """On CUDA: the whole target path under ``set_sync_debug_mode("error")`` (any host sync raises), and the bins
    equal the CPU's for the same ab, exactly."""
    from chromaflow import color
    from chromaflow.data import hints

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    dev = torch.device("cuda")
    task = ColorizationTask([], loss="rebalanced", soft_k=5)
    task.prepare(dev), hints.warm_up(dev), color.encode.warm_up(dev, (10,))  # k=10 below: its tables too
    rgb = _rgb(16, 64)
    x = rgb.to(dev)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        l_in, ab = task._targets(x)
        loss, ab_small = task.class_loss(torch.zeros(16, Q, 16, 16, device=dev), ab)
        idx, w = color.encode_soft(ab_small, k=10)
        hint, mask = simulate_local_hints(ab)
        g = global_hints(ab, x.float() / 255)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.testing.assert_close(ab.cpu(), color.rgb_to_lab(rgb)[:, 1:], rtol=0, atol=1e-3)
    ridx, rw = color.encode_soft(ab_small.cpu(), k=10)
    assert torch.equal(idx.cpu(), ridx)
    torch.testing.assert_close(w.cpu(), rw, rtol=0, atol=1e-6)
    assert torch.isfinite(loss).item() and l_in.shape == mask.shape == (16, 1, 64, 64)
    assert hint.shape == (16, 2, 64, 64) and g.shape == (16, Q + 3)
    assert torch.equal(color.encode_hard(ab_small).cpu(), ridx[:, 0])


@pytest.mark.parametrize("task_type", ["colorization", "guided"])
def test_gpu_configuration_trains_on_the_cpu(task_type, fixed_path, tmp_path):
    """What a GPU runs - the fixed path, bf16 autocast, channels_last batches - end to end through the engine."""
    from chromaflow.train.engine import TrainConfig, fit

    data = Items(_rgb(4, 32))
    if task_type == "colorization":
        task = ColorizationTask(data, loss="rebalanced", width=0.0625, soft_k=5)
    else:
        task = GuidedTask(data, width=0.0625, global_hints=True)
    cfg = TrainConfig(out=str(tmp_path), steps=2, batch_size=2, amp="bf16", channels_last=True, log_every=1)
    m = fit(task, cfg)
    assert m["step"] == 2 and math.isfinite(m["final_loss"])
