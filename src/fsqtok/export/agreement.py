"""How exported indices are judged against PyTorch's: equal, or different only where PyTorch's own
pre-round value lies within float rounding of a rounding boundary (the tests' and ``bench_onnx``'s criterion)."""

from __future__ import annotations

import torch
from torch import Tensor

# a mismatch is excused only where some pre-round value is this close (in grid steps) to a .5 boundary
BOUNDARY_TOL = 1e-3


@torch.no_grad()
def boundary_margin(tok, x: Tensor) -> Tensor:
    """Per token position (the layout of ``tok.encode(x)`` without the stage axis): the smallest
    distance, over channels and residual stages, of PyTorch's pre-round value from a .5 boundary."""
    x_net, ctx = tok._prepare(x)
    q = tok.quantizer
    residual_fsq = tok.config.quantizer == "rfsq"
    fsq = q.fsq if residual_fsq else q
    h = q.project_in(tok.encoder(x_net).float())
    b = fsq._bound(h, 1)  # round(b) is stage 0's grid value
    margin = (0.5 - (b - b.round()).abs()).amin(1)
    if residual_fsq:
        indices = tok._quantize(tok.encoder(x_net))
        view = (-1,) + (1,) * (h.ndim - 2)
        target = b * fsq._consts(h.device).inv_half_width.view(view)
        gain_in = q._stages(h.device).gain_in
        for s in range(1, q.num_stages):
            v = (target - q.decode_codes(indices[:, :s])) * gain_in[s].view(view)
            margin = torch.minimum(margin, (0.5 - (v - v.round()).abs()).amin(1))
    return tok._unfold_tokens(margin, ctx)


def agreement(tok, x: Tensor, got: Tensor) -> tuple[float, int]:
    """``(fraction of indices equal to tok.encode(x), mismatched positions not at a rounding boundary)``."""
    expected = tok.encode(x)
    assert got.shape == expected.shape and got.dtype == torch.int64
    equal = got == expected
    if tok.config.quantizer == "rfsq":
        position_equal = equal.all(dim=1 + tok._extra_token_axes)
    else:
        position_equal = equal
    fraction = float(equal.double().mean())
    if bool(position_equal.all()):
        return fraction, 0
    unexplained = (~position_equal) & (boundary_margin(tok, x) >= BOUNDARY_TOL)
    return fraction, int(unexplained.sum())
