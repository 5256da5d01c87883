"""Run a trained UViM model on an image file and write its prediction.

    python scripts/uvim_predict.py --model runs/uvim/depth_stage2/model photo.jpg -o depth.png
    python scripts/uvim_predict.py --model runs/uvim/panoptic_stage2/model scene.png -o ids.png

``--model`` is a stage-II folder (it names its stage-I model, whose weights hash is checked), or a
stage-I folder trained with ``no_code`` (the base model alone). The image goes through the training
preprocessing of ``fsqtok.data`` (``fit_spatial``: a square of the short side, resized to the model's size, as
training's centre crop; never squashed): a non-square photo is covered by overlapping squares
(``Box.covering``), each predicted and mapped back to its place at the photo's size (overlaps averaged;
panoptic: the later square's segments). ``-o`` may not be the input (nor the panoptic overlay's name);
a missing output folder is created. What is written depends on the task:

* depth: ``.png`` 16-bit millimetres (0 = invalid) or ``.npy`` float32 metres;
* colorization: an RGB image (``.png``, ``.jpg``, ``.webp``); the input's own luma at full resolution
  with the predicted colour;
* panoptic: a 16-bit id-map PNG (``class * 256 + instance``; instance 0 = stuff) and, beside it,
  ``<name>_overlay.png``, the image blended with one colour per segment.

Exit status: 0 done, 1 bad input (unreadable image, bad model folder), 2 bad arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fsqtok.cli_support import OneLineParser, UsageError, check_output, exit_process, run_command
from fsqtok.data import Box, fit_spatial
from fsqtok.generative.uvim.stage1 import UViMStage1
from fsqtok.generative.uvim.lm import UViMPipeline
from fsqtok.generative.uvim.tasks import grey
from fsqtok.hub import read_config
from fsqtok.media import read_image, write_image
from fsqtok.media.depth import write_depth

OUTPUTS = {"depth": (".png", ".npy"), "colorization": (".png", ".jpg", ".jpeg", ".webp"), "panoptic": (".png",)}


def load(model_dir: str):
    """``(stage1, pipeline or None)`` from a stage-II folder or a no-code stage-I folder."""
    kind = read_config(model_dir).get("model_type")
    if kind == "uvim_lm":
        pipe = UViMPipeline.from_pretrained(model_dir)
        return pipe.stage1, pipe
    if kind == "uvim_stage1":
        stage1 = UViMStage1.from_pretrained(model_dir)
        if not stage1.config.no_code:
            raise ValueError(f"--model {model_dir}: a stage-I model needs a guide code; pass the stage-II folder "
                             "trained on it (or a no_code stage-I model)")
        return stage1, None
    raise ValueError(f"--model {model_dir}: not a UViM model (model_type {kind!r})")


@torch.no_grad()
def predict(stage1: UViMStage1, pipe: UViMPipeline | None, image: torch.Tensor, code_tokens: int | None = None) -> torch.Tensor:
    """``(3, H, W)`` in [-1, 1] -> the task's prediction at ``(H, W)`` (``(C, H, W)``; panoptic int64 ``(2, H, W)``).

    Each square of :meth:`Box.covering` is fitted by :func:`fit_spatial` (training's preprocessing), predicted,
    resized back to its side and pasted at its place: overlaps averaged, panoptic ids from the later square."""
    h, w = image.shape[-2:]
    boxes, panoptic = Box.covering(h, w), stage1.config.task == "panoptic"
    x = torch.stack([fit_spatial(image, stage1.config.image_size, "image", b) for b in boxes])
    pred = pipe.predict(x, num_tokens=code_tokens)[0] if pipe is not None else stage1.predict(x)
    out, count = torch.zeros(pred.shape[1], h, w), torch.zeros(1, h, w)
    for b, p in zip(boxes, pred.float()):
        p = F.interpolate(p[None], size=(b.side, b.side), **({"mode": "nearest"} if panoptic else
                                                              {"mode": "bilinear", "align_corners": False}))[0]
        rows, cols = slice(b.top, b.top + b.side), slice(b.left, b.left + b.side)
        if panoptic:
            out[:, rows, cols] = p
        else:
            out[:, rows, cols] += p
            count[:, rows, cols] += 1
    if panoptic:
        return out.long()
    pred = out / count
    if stage1.config.task == "colorization":  # predicted colour on the input's full-resolution luma
        pred = (pred - grey(pred[None])[0] + grey(image[None])[0]).clamp(-1, 1)
    return pred


def overlay_path(out: Path) -> Path:
    """Where the panoptic overlay is written beside ``out``."""
    return out.with_name(out.stem + "_overlay.png")


def write(task: str, pred: torch.Tensor, image: torch.Tensor, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    if task == "depth":
        write_depth(out, pred)
        return [out]
    if task == "colorization":
        write_image(out, pred)
        return [out]
    ids = (pred[0] * 256 + pred[1]).numpy().astype(np.uint16)
    Image.fromarray(ids).save(out, format="PNG")
    overlay = overlay_path(out)
    from fsqtok.generative.uvim.tasks import PanopticTask

    colour = PanopticTask.visualize(pred[None])[0] * 2 - 1  # (3, H, W) in [-1, 1]
    write_image(overlay, (0.5 * image + 0.5 * colour).clamp(-1, 1))
    return [out, overlay]


def main(argv: list[str] | None = None) -> int:
    def body(argv: list[str]) -> int:
        p = OneLineParser(prog="uvim_predict.py", description=__doc__.split("\n\n")[0])
        p.add_argument("--model", required=True, help="stage-II model folder (or a no_code stage-I folder)")
        p.add_argument("input", help="image file")
        p.add_argument("-o", "--output", required=True, help="output file (see the module docstring)")
        p.add_argument("--code-tokens", type=int, default=None,
                       help="decode only the first K code tokens; the base model sees the rest as dropped")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        args = p.parse_args(argv)
        check_output(args.output, [args.input])  # before any work
        if not Path(args.model, "config.json").is_file() and Path(args.model).exists():
            raise UsageError(f"--model {args.model}: no config.json in that folder")
        stage1, pipe = load(args.model)
        if args.code_tokens is not None and (pipe is None or not 1 <= args.code_tokens <= stage1.config.num_tokens):
            raise UsageError(f"--code-tokens needs a stage-II model and 1..{stage1.config.num_tokens}, got {args.code_tokens}")
        task, out = stage1.config.task, Path(args.output)
        if out.suffix.lower() not in OUTPUTS[task]:
            raise UsageError(f"-o {out}: a {task} model writes {' or '.join(OUTPUTS[task])} files")
        if task == "panoptic":
            check_output(overlay_path(out), [args.input])
        image = read_image(args.input, channels=3)
        for path in write(task, predict(stage1, pipe, image, args.code_tokens), image, out):
            print(path)
        return 0

    return run_command(body, argv)


if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))
