"""Held-out evaluation of a tokenizer, shared by the training recipe and ``scripts/evaluate.py``.

:func:`evaluate` runs a tokenizer over a data loader (prepared by Accelerate or plain), gathers
per-item metrics across processes and returns their means, plus codebook usage, perplexity,
bits per token and the measured bitrate:

* image: ``psnr``, ``ssim``;
* depth: ``rmse``, ``abs_rel``, ``delta1`` on valid pixels (metres);
* audio: ``si_sdr``, ``mel_distance``, ``stft_distance`` (+ ``pesq``, ``stoi`` when installed);
* video: ``psnr``, ``ssim`` averaged over frames;
* all: ``usage``, ``perplexity``, ``bits_per_token``, ``bits_per_pixel`` (image, depth, video) or
  ``bits_per_second`` (audio, video).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..quantizers import CodebookUsage

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "si_sdr": True, "delta1": True, "pesq": True, "stoi": True,
                    "rmse": False, "abs_rel": False, "mel_distance": False, "stft_distance": False}


def item_metrics(modality: str, x: Tensor, y: Tensor, out: Any, sample_rate: int) -> dict[str, Tensor]:
    """Per-item quality metrics ``{name: (B,) tensor}`` of reconstructions ``y`` of inputs ``x``."""
    from .. import metrics

    if modality == "image":
        y = y.clamp(-1, 1)
        return {"psnr": metrics.psnr(y, x), "ssim": metrics.ssim(y, x)}
    if modality == "video":
        p, s = metrics.video_psnr_ssim(y.clamp(-1, 1), x)
        return {"psnr": p, "ssim": s}
    if modality == "depth":
        valid = out.valid_mask if getattr(out, "valid_mask", None) is not None else torch.isfinite(x) & (x > 0)
        errs = metrics.depth_errors(y, x, valid)
        return {k: errs[k] for k in ("rmse", "abs_rel", "delta1")}
    if modality == "audio":
        res = {
            "si_sdr": metrics.si_sdr(y, x),
            "mel_distance": metrics.mel_distance(y, x, sample_rate=sample_rate),
            "stft_distance": metrics.stft_distance(y, x),
        }
        res.update(metrics.pesq_stoi(y, x, sample_rate=sample_rate))  # {} unless pesq / pystoi are installed
        return res
    raise ValueError(f"unknown modality {modality!r}")


def _per_item(v: Any, batch: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.float64, device=device).detach()
    return t.reshape(-1).expand(batch).clone() if t.numel() == 1 else t.reshape(batch, -1).mean(1)


@torch.no_grad()
def evaluate(tokenizer: nn.Module, loader, accelerator=None, modality: str | None = None) -> dict[str, float]:
    """Mean metrics of ``tokenizer`` over ``loader`` (batches ``{"x": tensor}`` or tensors).

    With an ``accelerate.Accelerator`` the per-item metrics are gathered across processes
    (``gather_for_metrics`` drops the items duplicated to even out the last batch) and the
    code counts are summed, so every process returns the same figures.
    """
    model = accelerator.unwrap_model(tokenizer) if accelerator is not None else tokenizer
    modality = modality or model.modality
    sample_rate = getattr(model.config, "sample_rate", 16000)
    was_training = model.training
    model.eval()
    usage = CodebookUsage(model.codebook_size, model.num_stages)
    sums: dict[str, list[float]] = {}  # metric -> [sum, count] over items where it is defined (not NaN)
    count, bits_per_item, units_per_item = 0, None, None
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    for batch in loader:
        x = batch["x"] if isinstance(batch, dict) else batch
        if x is None:
            continue
        x = x.to(device)
        out = model(x)
        y = out.reconstruction.float()
        per = {k: _per_item(v, x.shape[0], device) for k, v in item_metrics(modality, x.float(), y, out, sample_rate).items()}
        indices = out.indices
        usage.update(indices.reshape(-1, *indices.shape[-model.grid_ndim - (model.num_stages > 1):])
                     if model.num_stages > 1 else indices)
        if bits_per_item is None:
            bits_per_item = indices[0].numel() * model.bits_per_token
            units_per_item = _units(modality, x, model)
        if accelerator is not None:
            per = accelerator.gather_for_metrics(per)
        for k, v in per.items():
            ok = ~torch.isnan(v)
            acc = sums.setdefault(k, [0.0, 0])
            acc[0] += float(v[ok].double().sum())
            acc[1] += int(ok.sum())
        count += next(iter(per.values())).shape[0]
    if accelerator is not None:
        usage.all_reduce()
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the data source gave no items")
    res = {k: total / n if n else float("nan") for k, (total, n) in sums.items()}
    res.update(usage=usage.usage, perplexity=usage.perplexity, codebook_size=float(model.codebook_size),
               num_stages=float(model.num_stages), bits_per_token=model.bits_per_token, items=float(count))
    for unit, amount in units_per_item.items():
        res[f"bits_per_{unit}"] = bits_per_item / amount
    return res


def _units(modality: str, x: Tensor, model: nn.Module) -> dict[str, float]:
    """Pixels and/or seconds in one item, for the bitrate."""
    if modality in ("image", "depth"):
        return {"pixel": float(x.shape[-1] * x.shape[-2])}
    if modality == "audio":
        return {"second": x.shape[-1] / model.config.sample_rate}
    if modality == "video":
        t = x.shape[2]
        return {"pixel": float(t * x.shape[-1] * x.shape[-2]), "second": t / model.config.fps}
    raise ValueError(f"unknown modality {modality!r}")


def to_unit_image(x: Tensor, modality: str) -> Tensor:
    """Inputs or reconstructions -> displayable ``(B, 3, H, W)`` in [0, 1].

    Depth is shown as inverse depth, video frames side by side, audio as a spectrogram.
    """
    if modality == "depth":
        d = x.float()
        valid = torch.isfinite(d) & (d > 0)
        inv = torch.where(valid, 1.0 / d.clamp_min(1e-6), torch.zeros_like(d))
        hi = inv.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
        return (inv / hi).expand(-1, 3, -1, -1)
    if modality == "audio":  # log-magnitude spectrogram, low frequencies at the bottom
        wav = x.float().mean(1)
        spec = torch.stft(wav, 256, 64, window=torch.hann_window(256, device=x.device), return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5)).flip(1)
        return ((db + 100) / 100).clamp(0, 1)[:, None].expand(-1, 3, -1, -1)
    if modality == "video":
        x = x.permute(0, 1, 3, 2, 4).flatten(3)  # (B, 3, H, T * W)
    return ((x.float() + 1) / 2).clamp(0, 1)


def grid(originals: Tensor, reconstructions: Tensor, modality: str, cols: int = 4, pad: int = 2) -> Tensor:
    """A ``(3, H', W')`` image in [0, 1] of original/reconstruction pairs, ``cols`` pairs per row."""
    a, b = to_unit_image(originals, modality).cpu(), to_unit_image(reconstructions, modality).cpu()
    n, (h, w) = a.shape[0], a.shape[-2:]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    pair_w = 2 * w + pad
    canvas = torch.ones(3, rows * (h + 2 * pad) - 2 * pad, cols * (pair_w + 3 * pad) - 3 * pad)
    for i in range(n):
        top, left = (i // cols) * (h + 2 * pad), (i % cols) * (pair_w + 3 * pad)
        canvas[:, top : top + h, left : left + w] = a[i]
        canvas[:, top : top + h, left + w + pad : left + pair_w] = b[i]
    return canvas


@torch.no_grad()
def log_reconstructions(log, model: nn.Module, dataset, modality: str, step: int, sample_rate: int = 16000,
                        num: int = 4) -> None:
    """The first ``num`` items of ``dataset`` beside ``model``'s reconstructions, to a
    :class:`~fsqtok.training.TrainLogger` with TensorBoard: one grid image (image, depth, video
    frames), or the first two audio clips of each. Does nothing without TensorBoard."""
    if log.tb is None:
        return
    was_training = model.training
    model.eval()
    x = torch.stack([dataset[i] for i in range(min(num, len(dataset)))]).to(next(model.parameters()).device)
    y = model(x).reconstruction
    model.train(was_training)
    if modality != "audio":
        log.images("reconstructions", grid(x, y, modality), step)
        return
    for name, clips in (("original", x), ("reconstruction", y)):
        for i, clip in enumerate(clips[:2]):
            log.audio(f"{name}/{i}", clip.mean(0), step, sample_rate)


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """``{row name: metrics}`` -> a Markdown table with one column per metric."""
    keys: list[str] = []
    for metrics in results.values():
        keys += [k for k in metrics if k not in keys]
    head = "| | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    body = ""
    for name, metrics in results.items():
        cells = [_fmt(metrics.get(k)) for k in keys]
        body += f"| {name} | " + " | ".join(cells) + " |\n"
    return head + body


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.4g}"
    return str(v)
