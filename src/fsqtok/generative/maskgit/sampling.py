"""From MaskGIT's tokens to images: the tokenizer check, decoding, labelled grids (sampled tokens go to
shards through :func:`fsqtok.shards.pipeline.write_token_shards`).

Used by ``scripts/sample_maskgit.py`` and by the MaskGIT recipe's TensorBoard sample grids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor


class TokenizerMismatch(RuntimeError):
    """A tokenizer whose weights are not those that made the model's training tokens."""


def tokenizer_hash(tok: Any, source: str) -> str:
    """The weights identity that token shards record (sha256 of model.safetensors; see ``fsqtok.shards``)."""
    from ...shards.manifest import tokenizer_identity

    return tokenizer_identity(tok, source)["weights_sha256"]


def load_matching_tokenizer(config: Any, source: str | None = None) -> Any:
    """:func:`resolve_tokenizer` without a model folder to fall back to; the tokenizer only."""
    return resolve_tokenizer(config, source)[0]


def resolve_tokenizer(config: Any, source: str | None = None, model_dir: str | Path | None = None) -> tuple[Any, str]:
    """Load the tokenizer of a generative model and check its weights; return it and where it came from.

    Tried in this order: ``source`` (an explicit ``--tokenizer``: a failure is final), the location
    ``config.tokenizer`` records, then ``model_dir/tokenizer`` (the copy a training run saves inside
    the model folder). Raises ``FileNotFoundError`` (one line naming what was tried) when none loads,
    and :class:`TokenizerMismatch` when its weights hash differs from ``config.tokenizer_sha256``,
    when the config records no hash, or when its codebook or stages do not fit the model.
    """
    from ...tokenizers import load_tokenizer

    if not config.tokenizer_sha256:
        raise TokenizerMismatch("the model's config records no tokenizer_sha256, so no tokenizer can be checked "
                                "against it; set it to the sha256 of the tokenizer's model.safetensors")
    own = Path(model_dir) / "tokenizer" if model_dir is not None else None
    tried = [source] if source else [s for s in (config.tokenizer, own and str(own)) if s]
    if not tried:
        raise TokenizerMismatch("the model's config names no tokenizer; pass one (--tokenizer)")
    for where in tried:
        try:
            tok = load_tokenizer(where)
            break
        except FileNotFoundError as e:
            if source:
                raise
            if where == tried[-1]:
                raise FileNotFoundError(f"the model's tokenizer is at none of {', '.join(tried)} ({e}); "
                                        "pass it with --tokenizer") from None
    digest = tokenizer_hash(tok, str(where))
    if digest != config.tokenizer_sha256:
        raise TokenizerMismatch(f"tokenizer {where} has other weights (sha256 {digest[:12]}...) than the one the "
                                f"model was trained on ({config.tokenizer_sha256[:12]}..., {config.tokenizer}); "
                                "pass the matching tokenizer with --tokenizer")
    if tok.num_stages != 1 or tok.codebook_size != config.codebook_size:
        raise TokenizerMismatch(f"tokenizer {where}: {tok.codebook_size} codes x {tok.num_stages} stage(s), "
                                f"the model expects {config.codebook_size} codes x 1 stage")
    return tok.eval(), str(where)


@torch.no_grad()
def decode_images(tok: Any, tokens: Tensor, batch_size: int = 64) -> Tensor:
    """int64 ``(B, h, w)`` tokens -> float32 ``(B, 3, H, W)`` images in [-1, 1], on the CPU."""
    device = next(tok.parameters()).device
    out = [tok.decode(tokens[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(tokens), batch_size)]
    return torch.cat(out).clamp_(-1, 1)


def class_name(config: Any, label: int) -> str:
    """The label string of class ``label`` (``config.class_names`` when set, else the number)."""
    return config.class_names[label] if config.class_names else str(label)


def labelled_grid(images: Tensor, labels: Sequence[int], names: Sequence[str], per_row: int = 8,
                  pad: int = 2) -> Tensor:
    """One row per class (up to ``per_row`` images each) with the class name at its left.

    Args:
        images: ``(B, 3, H, W)`` in [-1, 1]; labels: ``B`` class ids; names: the name of each class id.
    Returns:
        ``(3, H', W')`` float in [0, 1] (for TensorBoard's ``add_image`` or a PNG).
    """
    from PIL import Image, ImageDraw

    rows: dict[int, list[Tensor]] = {}
    for img, lab in zip(images, labels):
        if len(rows.setdefault(int(lab), [])) < per_row:
            rows[int(lab)].append(img)
    h, w = images.shape[-2:]
    label_w = max(48, 7 * max(len(names[c]) for c in rows) + 8)
    canvas = np.full((len(rows) * (h + pad) + pad, label_w + per_row * (w + pad) + pad, 3), 255, np.uint8)
    for r, c in enumerate(sorted(rows)):
        top = pad + r * (h + pad)
        for j, img in enumerate(rows[c]):
            left = label_w + pad + j * (w + pad)
            pix = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
            canvas[top:top + h, left:left + w] = pix
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    for r, c in enumerate(sorted(rows)):
        draw.text((4, pad + r * (h + pad) + max(0, h // 2 - 6)), names[c], fill=(0, 0, 0))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255.0
