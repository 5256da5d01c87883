"""Streaming audio, bit-exact: :class:`AudioStreamEncoder` and :class:`AudioStreamDecoder`.

A causal :class:`~fsqtok.tokenizers.AudioTokenizer` runs its networks in fixed blocks of
``config.block_tokens`` tokens (``block_tokens * hop_length`` samples) with carried state (each
causal conv keeps the left context its next block needs, :class:`fsqtok.encoders.causal.StreamState`).
:meth:`AudioTokenizer.encode` and :meth:`AudioTokenizer.decode` are themselves one such stream fed
the whole input, so every network and quantizer call has the same shapes and the same inputs
whichever way a stream is cut: the tokens and samples are identical bit for bit, not merely close.
(PyTorch's kernels round differently on inputs of different lengths, vectorized bodies against
scalar tails, so matching shapes is what makes the arithmetic match.)

A push runs all the full blocks it completes in one call per layer, stacked along the batch axis
(:class:`~fsqtok.encoders.causal.StreamState` with ``blocks=n``: each conv cuts every block's window,
its left context included, from the blocks before it, and calls a kernel whose result for one batch
element does not depend on how many are stacked). A whole pass is therefore one push of the input
plus the flush, at near the speed of one plain call, and still the arithmetic of one block at a time.
That holds for CPU float32 with oneDNN; elsewhere (GPU, other dtypes) blocks run one per call.

The stream buffers input until a block is full: the first tokens come out once
``block_tokens * hop_length`` samples are in, the first samples once ``block_tokens`` tokens are
in; :meth:`flush` pads the last partial block with zeros (as :meth:`AudioTokenizer.encode` pads to
a multiple of the hop) and returns what is left. Both networks are causal with no lookahead, so
nothing is held back beyond the block. Waveforms must be at ``config.sample_rate``: resampling
stays outside the stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.blocks import onednn_inference
from ..encoders.causal import StreamState

if TYPE_CHECKING:
    from .audio import AudioTokenizer


class _Stream:
    """What both directions share: the block loop over a buffer along the last axis, and the flush rule.

    ``_push_net`` and ``_flush_net`` work on network-side tensors (``(B', 1, n)`` samples, ``(B', [S,] n)``
    indices, with independent channels folded into ``B'``); the tokenizer's whole passes call them directly.
    """

    _factory = ""  # the AudioTokenizer method that starts a new stream, for messages

    def __init__(self, tok: AudioTokenizer, network: torch.nn.Module, block: int, out_per_step: Fraction) -> None:
        self._tok = tok
        self._state = StreamState(network)
        self._device = next(network.parameters()).device
        self._block = block  # input steps per block: samples (encoder) or tokens (decoder)
        self._out_per_step = out_per_step  # output steps per input step: 1 / hop (encoder) or hop (decoder)
        self._buffer: Tensor | None = None  # input not yet run, shorter than a block
        self._lead: tuple[int, ...] | None = None  # the leading axes of the first push, which later pushes keep
        self._flushed = False

    def _fail(self, message: str) -> None:
        raise ValueError(f"{type(self).__name__}: {message}")

    def _check_open(self, what: str) -> None:
        if self._flushed:
            self._fail(f"{what}() after flush(); start a new stream with tokenizer.{self._factory}()")
        self._flushed = what == "flush"

    def _check_lead(self, lead: tuple[int, ...], what: str) -> None:
        if self._lead is None:
            self._lead = lead
        elif lead != self._lead:
            self._fail(f"{what} of shape {lead} + (n,) do not continue the stream's {self._lead} + (n,)")

    def _push_net(self, x: Tensor) -> Tensor:
        """Append ``x`` and run every full block; the outputs concatenated along the last axis."""
        buf = x if self._buffer is None else torch.cat([self._buffer, x], dim=-1)
        full = buf.shape[-1] // self._block
        self._buffer = buf[..., full * self._block :]
        if not full:
            return self._empty(buf.shape[0])
        blocks = buf[..., : full * self._block].unflatten(-1, (full, self._block)).movedim(-2, 0)  # (full, B', ..., n)
        if onednn_inference(self._device, self._tok._dtype):  # one call for all, block-major along the batch
            out = self._step(blocks.flatten(0, 1), full).unflatten(0, (full, -1))
        else:  # without the CPU kernels that ignore the batch size: one block per call keeps the arithmetic
            out = torch.stack([self._step(block, 1) for block in blocks])
        return out.movedim(0, -2).flatten(-2)

    def _flush_net(self) -> Tensor:
        """Run the zero-padded last block and keep the output of its real steps (``ceil`` of whole ones)."""
        if self._buffer is None or self._buffer.shape[-1] == 0:
            return self._empty(0 if self._buffer is None else self._buffer.shape[0])
        left = self._buffer.shape[-1]
        keep = math.ceil(left * self._out_per_step)  # exact: a Fraction
        return self._step(F.pad(self._buffer, (0, self._block - left)), 1)[..., :keep]

    def _whole(self, chunks: Iterable[Tensor]) -> Tensor:
        """Every chunk pushed, then the flush, concatenated: the tokenizer's whole passes."""
        return torch.cat([*(self._push_net(chunk) for chunk in chunks), self._flush_net()], dim=-1)

    def _step(self, blocks: Tensor, n: int) -> Tensor:
        """``n`` consecutive blocks stacked block-major along the batch axis -> their outputs, stacked alike."""
        raise NotImplementedError

    def _empty(self, batch: int) -> Tensor:
        raise NotImplementedError


class AudioStreamEncoder(_Stream):
    """Samples in, tokens out: ``push((B, C, n))`` -> int64 ``(B, [C,] [S,] m)`` in the layout of ``encode``.

    The concatenated tokens of every push and the final :meth:`flush` equal
    ``tok.encode(all_samples)`` bit for bit, for any cutting. Made by :meth:`AudioTokenizer.stream_encoder`.
    """

    _factory = "stream_encoder"

    def __init__(self, tok: AudioTokenizer) -> None:
        super().__init__(tok, tok.encoder, tok.config.block_tokens * tok.hop_length, Fraction(1, tok.hop_length))
        self.samples_in = 0  # samples per channel pushed so far: crop a decoded stream to this length

    @torch.no_grad()
    def push(self, samples: Tensor) -> Tensor:
        """``(B, C, n)`` samples at ``config.sample_rate`` (``n`` may be 0) -> the tokens now complete."""
        self._check_open("push")
        if not isinstance(samples, Tensor) or samples.ndim != 3:
            got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
            self._fail(f"expected samples (B, C, n) at {self._tok.config.sample_rate} Hz, got {got}")
        self._check_lead(tuple(samples.shape[:2]), "samples")
        if samples.shape[-1]:
            self._tok._check_tensor(samples, None)  # dtype, NaN and inf, as encode checks them
        self.samples_in += samples.shape[-1]
        return self._unfold(self._push_net(self._tok._mix(samples)))

    @torch.no_grad()
    def flush(self) -> Tensor:
        """The tokens of the samples still buffered (zero-padded as ``encode`` pads); closes the stream."""
        self._check_open("flush")
        return self._unfold(self._flush_net())

    def _unfold(self, indices: Tensor) -> Tensor:
        b, c = self._lead or (0, 1)
        return self._tok._unfold_tokens(indices, {"batch": b, "channels": c})

    def _step(self, blocks: Tensor, n: int) -> Tensor:
        return self._tok._quantize(self._state(blocks, n))

    def _empty(self, batch: int) -> Tensor:
        stages = (self._tok.num_stages,) if self._tok.config.quantizer == "rfsq" else ()
        return torch.empty(batch, *stages, 0, dtype=torch.long, device=self._device)


class AudioStreamDecoder(_Stream):
    """Tokens in, samples out: ``push(tokens)`` -> ``(B, C or 1, m)`` at ``config.sample_rate``.

    The concatenated samples of every push and the final :meth:`flush` equal ``tok.decode(all_tokens,
    num_stages=num_stages)`` bit for bit: ``hop_length`` samples per token, not cropped (crop to the
    encoder's ``samples_in``). ``num_stages=None`` decodes every stage the first push carries, and
    later pushes must carry as many; ``num_stages=k`` decodes the first ``k`` of each push.
    """

    _factory = "stream_decoder"

    def __init__(self, tok: AudioTokenizer, num_stages: int | None = None) -> None:
        super().__init__(tok, tok.decoder, tok.config.block_tokens, Fraction(tok.hop_length))
        if num_stages is not None:  # checked against the model now, not at the first push
            tok._check_tokens(torch.zeros(tok.tokens_shape((1, 1, 1)), dtype=torch.long), num_stages)
        self.num_stages = num_stages

    @torch.inference_mode()
    def push(self, tokens: Tensor) -> Tensor:
        """Tokens ``(B, [C,] [S,] n)`` as ``encode`` returns them (``n`` may be 0) -> the samples now complete."""
        self._check_open("push")
        n = tokens.shape[-1] if isinstance(tokens, Tensor) and tokens.ndim else None
        probe = tokens.new_zeros(*tokens.shape[:-1], 1) if n == 0 else tokens  # the checks need a position
        tokens = self._tok._check_tokens(probe, self.num_stages)[..., :n]
        self._check_lead(tuple(tokens.shape[:-1]), "tokens")
        return self._restore(self._push_net(self._tok._fold_tokens(tokens)[0]))

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """The samples of the tokens still buffered; closes the stream."""
        self._check_open("flush")
        return self._restore(self._flush_net())

    def _restore(self, y: Tensor) -> Tensor:
        lead = self._lead or (0, 1)
        return self._tok._restore(y, {"batch": lead[0], "channels": lead[1] if self._tok._independent else 1})

    def _step(self, blocks: Tensor, n: int) -> Tensor:
        return self._state(self._tok.quantizer.decode_indices(blocks).to(self._tok._dtype), n)

    def _empty(self, batch: int) -> Tensor:
        return torch.empty(batch, 1, 0, dtype=self._tok._dtype, device=self._device)
