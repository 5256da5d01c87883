"""Causal convolutions and streaming.

The padded 1D, transposed 1D and causal 3D convolutions know how far they look back and ahead,
and can run in streaming mode (:func:`streaming`, :class:`StreamState`): fed consecutive chunks,
each keeps the tail of its input that its next output still needs, so a causal network runs a
long input chunk by chunk with bounded memory and the outputs of one whole pass (bit for bit when
every chunk has the same length; see :mod:`fsqtok.tokenizers.audio_stream`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import eager_inference, onednn_inference


class PaddedConv1d(nn.Conv1d):
    """A 1D conv that pads its own input so that ``T`` (a multiple of ``stride``) becomes ``T / stride``.

    ``causal=True`` puts all the padding on the left, so output ``i`` sees input up to the end of
    its own stride block and nothing later (SEANet/EnCodec streaming convs).

    Attributes:
        lookback: input steps before an output's stride block that it depends on.
        lookahead: input steps after an output's stride block that it depends on (0 if causal).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        total = (kernel_size - 1) * dilation + 1 - stride
        if total < 0:
            raise ValueError(f"PaddedConv1d: kernel_size={kernel_size} is smaller than stride={stride}")
        self.causal = causal
        self.lookahead = 0 if causal else total // 2
        self.lookback = total - self.lookahead
        self._streaming = False
        self._cache: Tensor | None = None
        self._blocks = 1  # consecutive blocks stacked along the batch axis in streaming mode (StreamState)

    def forward(self, x: Tensor) -> Tensor:
        if not self._streaming:
            if not self.lookback and not self.lookahead:
                return super().forward(x)
            if eager_inference() and self.lookahead in (0, self.lookback):
                return self._forward_padded_in_conv(x)
            return super().forward(F.pad(x, (self.lookback, self.lookahead)))
        if self._blocks > 1:
            return self._stream_conv(_block_windows(self, x, self.lookback))
        x = F.pad(x, (self.lookback, 0)) if self._cache is None else torch.cat([self._cache, x], dim=-1)
        span = self.dilation[0] * (self.kernel_size[0] - 1) + 1
        n_out = max(0, (x.shape[-1] - span) // self.stride[0] + 1)
        self._cache = x[..., n_out * self.stride[0] :].clone()
        if n_out == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        return self._stream_conv(x)

    def _stream_conv(self, x: Tensor) -> Tensor:
        """The unpadded conv of a stream. At CPU float32 inference it picks its kernel itself, one whose
        result for a batch element does not depend on the batch size (PyTorch's own choice does, so batch
        1 and stacked blocks would round differently): a matrix product per element for a 1x1 kernel
        (about 10x faster than oneDNN's on these shapes), oneDNN otherwise."""
        if not onednn_inference(x.device, x.dtype):
            return super().forward(x)
        if self.kernel_size[0] == 1 and self.stride[0] == 1 and self.groups == 1:
            return torch.ops.aten._slow_conv2d_forward(x.unsqueeze(2), self.weight.unsqueeze(2), [1, 1], self.bias,
                                                       [1, 1], [0, 0]).squeeze(2)
        return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, [0], list(self.stride),
                                                 list(self.dilation), self.groups)

    def _forward_padded_in_conv(self, x: Tensor) -> Tensor:
        """Inference: let the conv zero-pad ``lookback`` on both sides (no padded copy of ``x``) and keep
        the first ``T / stride`` outputs, which see exactly what :func:`F.pad` on the left would give them."""
        y = F.conv1d(x, self.weight, self.bias, self.stride, self.lookback, self.dilation, self.groups)
        return y[..., : x.shape[-1] // self.stride[0]]


class PaddedConvTranspose1d(nn.ConvTranspose1d):
    """A transposed 1D conv that maps ``T`` steps to exactly ``T * stride``.

    The ``kernel_size - stride`` extra output steps are trimmed on the right when causal (so
    an output never depends on a later input), split evenly otherwise. In streaming mode it
    keeps the last ``(kernel_size - 1) // stride`` input steps, whose kernels overlap the next
    chunk's outputs, and recomputes their share instead of carrying partial sums.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, causal: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        total = kernel_size - stride
        if total < 0:
            raise ValueError(f"PaddedConvTranspose1d: kernel_size={kernel_size} is smaller than stride={stride}")
        self.causal = causal
        self.trim_left = 0 if causal else total // 2
        self.trim_right = total - self.trim_left
        self.lookback = (kernel_size - 1) // stride  # input steps an output's stride block depends on, before its own
        self._streaming = False
        self._cache: Tensor | None = None
        self._blocks = 1  # consecutive blocks stacked along the batch axis in streaming mode (StreamState)

    def forward(self, x: Tensor) -> Tensor:
        if not self._streaming:
            y = super().forward(x)
            return y[..., self.trim_left : y.shape[-1] - self.trim_right]
        n, back = x.shape[-1], self.lookback
        if self._blocks > 1:
            x = _block_windows(self, x, back)
        else:
            x = F.pad(x, (back, 0)) if self._cache is None else torch.cat([self._cache, x], dim=-1)
            self._cache = x[..., x.shape[-1] - back :].clone()
        start = back * self.stride[0]
        return super().forward(x)[..., start : start + n * self.stride[0]]


def _block_windows(conv: PaddedConv1d | PaddedConvTranspose1d, x: Tensor, back: int) -> Tensor:
    """Streaming input of ``conv._blocks`` consecutive blocks stacked block-major, ``(nb * B, C, L)``, ->
    each block behind the ``back`` steps before it, ``(nb * B, C, back + L)``; carries the last ``back`` on.

    Block ``k``'s window holds the values the stream's ``cat([cache, block])`` gives it when the blocks
    run one by one (zeros before the first), so one batched conv call computes every block as that
    loop would, with the same shapes per block. ``L`` must be a multiple of the conv's stride.
    """
    nb, length = conv._blocks, x.shape[-1]
    blocks = x.unflatten(0, (nb, -1))  # (nb, B, C, L)
    past = blocks.new_zeros(*blocks.shape[1:3], back) if conv._cache is None else conv._cache
    if back > length:  # the context spans several blocks: cut the windows from the whole sequence
        seq = torch.cat([past, blocks.permute(1, 2, 0, 3).flatten(2)], dim=-1)  # (B, C, back + nb * L)
        conv._cache = seq[..., seq.shape[-1] - back :].clone()
        return seq.unfold(-1, back + length, length).permute(2, 0, 1, 3).flatten(0, 1).contiguous()
    conv._cache = blocks[-1, ..., length - back :].clone()
    if not back:
        return x
    windows = blocks.new_empty(*blocks.shape[:3], back + length)
    windows[..., back:] = blocks
    windows[1:, ..., :back] = blocks[:-1, ..., length - back :]
    windows[0, ..., :back] = past
    return windows.flatten(0, 1)


def context_1d(module: nn.Module) -> tuple[int, int, int]:
    """``(lookback, lookahead, hop)`` in input samples of a sequential stack of :class:`PaddedConv1d`.

    Walks the convs in registration order (the order data flows through an encoder built as a
    sequence), so it is exact for chains and an upper bound for residual branches.
    """
    lookback = lookahead = 0
    hop = 1
    for m in module.modules():
        if isinstance(m, PaddedConv1d):
            lookback += m.lookback * hop
            lookahead += m.lookahead * hop
            hop *= m.stride[0]
    return lookback, lookahead, hop


class CausalConv3d(nn.Conv3d):
    """A 3D conv, causal in time, on ``(B, C, T, H, W)``.

    Time is padded on the left with ``kernel_t - 1`` copies of the first frame, so a kernel-3,
    stride-2 layer maps ``1 + 2k`` frames to ``1 + k`` and its first output sees frame 0 alone
    (MAGVIT-v2 / Cosmos). Space is zero-padded: ``kernel // 2`` each side at stride 1, ``(0, 1)``
    at stride 2 (VQGAN's downsampling).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        st, sh, sw = (stride,) * 3 if isinstance(stride, int) else stride
        if sh != sw or sh not in (1, 2) or st not in (1, 2) or (st == 2 and kt < 2):
            raise ValueError(f"CausalConv3d: unsupported stride {(st, sh, sw)} for kernel {(kt, kh, kw)}")
        super().__init__(in_channels, out_channels, (kt, kh, kw), stride=(st, sh, sw))
        self.time_lookback = kt - 1
        self.time_stride = st
        if sh == 1:
            self.spatial_pad = (kw // 2, kw // 2, kh // 2, kh // 2)
        else:
            self.spatial_pad = (0, kw - 2, 0, kh - 2)
        self._streaming = False
        self._cache: Tensor | None = None
        self._blocks = 1  # always 1: StreamState stacks blocks for 1D convs only

    def forward(self, x: Tensor) -> Tensor:
        if self._streaming and self._cache is not None:
            x = torch.cat([self._cache, x], dim=2)
        elif self.time_lookback:
            first = x[:, :, :1].expand(-1, -1, self.time_lookback, -1, -1)
            x = torch.cat([first, x], dim=2)
        if self._streaming:
            n_out = max(0, (x.shape[2] - self.kernel_size[0]) // self.time_stride + 1)
            self._cache = x[:, :, n_out * self.time_stride :].clone()
            if n_out == 0:
                return x.new_zeros(x.shape[0], self.out_channels, 0, *self._out_hw(x))
        if onednn_inference(x.device, x.dtype) and not self._factorized:
            return self._forward_mkldnn(x)
        return self._conv(F.pad(x, (*self.spatial_pad, 0, 0)))

    @property
    def _factorized(self) -> bool:
        """Whether the kernel spans one axis group, ``(1, kh, kw)`` or ``(kt, 1, 1)`` (Cosmos's factorized blocks)."""
        kt, kh, kw = self.kernel_size
        return (kt == 1 and self.stride[0] == 1) or (kh == kw == 1 and self.stride[1:] == (1, 1))

    def _conv(self, x: Tensor) -> Tensor:
        """The conv on a spatially padded ``x``. A factorized kernel runs as a 2D conv (on the CPU the 2D
        kernels are faster than the generic 3D one): ``(1, kh, kw)`` frame by frame, ``(kt, 1, 1)`` on
        ``(T, H * W)``."""
        kt, kh, kw = self.kernel_size
        w = self.weight
        if kt == 1 and self.stride[0] == 1:
            b, _, t, h, width = x.shape
            frames = x.transpose(1, 2).reshape(b * t, -1, h, width)
            y = F.conv2d(frames, w[:, :, 0], self.bias, stride=self.stride[1:])
            return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)
        if kh == kw == 1 and self.stride[1:] == (1, 1):
            h, width = x.shape[3:]
            return F.conv2d(x.flatten(3), w[..., 0], self.bias, stride=(self.stride[0], 1)).unflatten(3, (h, width))
        return super().forward(x)

    def _forward_mkldnn(self, x: Tensor) -> Tensor:
        """Inference on CPU through oneDNN, which PyTorch's heuristic skips for a single small clip (it
        then runs its reference 3D conv, about 4x slower); symmetric spatial padding happens inside
        the conv instead of in a padded copy. Same sums, other rounding (float32 ulps)."""
        l, r, t, b = self.spatial_pad
        if l == r and t == b:
            pad = [0, t, l]
        else:
            x, pad = F.pad(x, (l, r, t, b, 0, 0)), [0, 0, 0]
        return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, pad, list(self.stride),
                                                 list(self.dilation), self.groups)

    def _out_hw(self, x: Tensor) -> tuple[int, int]:
        l, r, t, b = self.spatial_pad
        h = (x.shape[3] + t + b - self.kernel_size[1]) // self.stride[1] + 1
        w = (x.shape[4] + l + r - self.kernel_size[2]) // self.stride[2] + 1
        return h, w


def time_context_3d(module: nn.Module) -> tuple[int, int]:
    """``(lookback_frames, temporal_stride)`` of a sequential stack of :class:`CausalConv3d`."""
    lookback = 0
    stride = 1
    for m in module.modules():
        if isinstance(m, CausalConv3d):
            lookback += m.time_lookback * stride
            stride *= m.time_stride
    return lookback, stride


StreamingConv = (PaddedConv1d, PaddedConvTranspose1d, CausalConv3d)


def _streaming_convs(module: nn.Module) -> list[nn.Module]:
    """``module``'s convs that carry state in streaming mode; refuses non-causal ones."""
    convs = [m for m in module.modules() if isinstance(m, StreamingConv)]
    if not all(getattr(m, "causal", True) for m in convs):
        raise ValueError("streaming needs causal convolutions (causal=True)")
    return convs


@contextlib.contextmanager
def streaming(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s causal convs in streaming mode while inside the block.

    Feed consecutive chunks along time to ``module``; the outputs, concatenated, equal one pass
    over the whole input. Chunks should be multiples of the module's total stride (the first
    video chunk ``1 + k * tau`` frames). Needs causal convs (no lookahead).
    """
    convs = _streaming_convs(module)
    for m in convs:
        m._streaming, m._cache = True, None
    try:
        yield
    finally:
        for m in convs:
            m._streaming, m._cache = False, None


class StreamState:
    """One stream through ``module``: calling it runs the next chunk with this stream's carried context.

    Unlike :func:`streaming`, the context lives here, not in the module, so several streams can
    take turns on one module (not from several threads at once).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._convs = _streaming_convs(module)
        self._caches: list[Tensor | None] = [None] * len(self._convs)

    def __call__(self, x: Tensor, blocks: int = 1) -> Tensor:
        """The module's output for the chunk ``x`` that follows the chunks already run.

        ``blocks > 1``: ``x`` is that many consecutive chunks of one length, stacked block-major along the
        batch axis, ``(blocks * B, C, L)``; they run in one call and come out stacked the same way, each
        the output its own call would give (1D convs only).
        """
        if blocks > 1 and any(isinstance(m, CausalConv3d) for m in self._convs):
            raise ValueError("StreamState: stacked blocks need 1D convs; run a 3D stream one chunk at a time")
        for m, cache in zip(self._convs, self._caches):
            m._streaming, m._cache, m._blocks = True, cache, blocks
        try:
            return self.module(x)
        finally:
            self._caches = [m._cache for m in self._convs]
            for m in self._convs:
                m._streaming, m._cache, m._blocks = False, None, 1
