"""Causal convs: length contracts, causality, streaming == one pass, and stacked stream blocks."""

import pytest
import torch

from fsqtok.encoders.causal import CausalConv3d, PaddedConv1d, PaddedConvTranspose1d, StreamState, context_1d, streaming


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (7, 1, 9), (8, 4, 1), (10, 5, 1), (3, 1, 1)])
def test_padded_conv1d_maps_t_to_t_over_stride(kernel, stride, dilation, causal):
    conv = PaddedConv1d(2, 3, kernel, stride=stride, dilation=dilation, causal=causal)
    assert conv(torch.randn(1, 2, 40 * stride)).shape == (1, 3, 40)
    total = (kernel - 1) * dilation + 1 - stride
    assert conv.lookback + conv.lookahead == total
    assert conv.lookahead == (0 if causal else total // 2)


@pytest.mark.parametrize("causal", [True, False])
def test_padded_conv_transpose1d_maps_t_to_t_times_stride(causal):
    conv = PaddedConvTranspose1d(3, 2, 10, stride=5, causal=causal)
    assert conv(torch.randn(1, 3, 7)).shape == (1, 2, 35)


def test_causal_conv1d_ignores_the_future():
    torch.manual_seed(0)
    conv = PaddedConv1d(1, 1, 8, stride=4)
    x = torch.randn(1, 1, 64)
    y = conv(x)
    x2 = x.clone()
    x2[..., 33:] += 1.0  # samples of output blocks 8 and later
    y2 = conv(x2)
    assert torch.equal(y[..., :8], y2[..., :8]) and not torch.equal(y, y2)


def test_context_1d_of_a_chain():
    net = torch.nn.Sequential(PaddedConv1d(1, 1, 7), PaddedConv1d(1, 1, 4, stride=2), PaddedConv1d(1, 1, 3))
    lookback, lookahead, hop = context_1d(net)
    assert (lookback, lookahead, hop) == (6 + 2 + 2 * 2, 0, 2)


def test_causal_conv3d_maps_1_plus_2k_frames_to_1_plus_k():
    conv = CausalConv3d(3, 4, 3, stride=(2, 2, 2))
    for k in range(4):
        assert conv(torch.randn(1, 3, 1 + 2 * k, 8, 8)).shape == (1, 4, 1 + k, 4, 4)
    assert CausalConv3d(3, 4, 3)(torch.randn(1, 3, 5, 7, 9)).shape == (1, 4, 5, 7, 9)


def test_causal_conv3d_first_output_sees_only_frame_0():
    torch.manual_seed(0)
    conv = CausalConv3d(2, 2, 3, stride=(2, 1, 1))
    x = torch.randn(1, 2, 5, 6, 6)
    x2 = x.clone()
    x2[:, :, 1:] = torch.randn_like(x2[:, :, 1:])
    assert torch.equal(conv(x)[:, :, 0], conv(x2)[:, :, 0])


def test_streaming_equals_one_pass_1d():
    torch.manual_seed(0)
    net = torch.nn.Sequential(PaddedConv1d(1, 4, 7, dilation=3), PaddedConv1d(4, 4, 8, stride=4), PaddedConv1d(4, 2, 3))
    x = torch.randn(2, 1, 4 * 30)
    with torch.no_grad():
        whole = net(x)
        with streaming(net):
            parts = [net(c) for c in x.split(4 * 7, dim=-1)]
        again = net(x)  # streaming state is cleared on exit
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole, rtol=0, atol=1e-6)
    assert torch.equal(again, whole)


def test_streaming_equals_one_pass_3d():
    torch.manual_seed(0)
    net = torch.nn.Sequential(CausalConv3d(2, 4, 3), CausalConv3d(4, 4, 3, stride=(2, 2, 2)), CausalConv3d(4, 2, 1))
    x = torch.randn(1, 2, 1 + 2 * 6, 8, 8)
    with torch.no_grad():
        whole = net(x)
        with streaming(net):
            parts = [net(x[:, :, :3])] + [net(c) for c in x[:, :, 3:].split(4, dim=2)]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=0, atol=1e-5)


def test_streaming_rejects_non_causal_convs():
    with pytest.raises(ValueError, match="causal"):
        with streaming(PaddedConv1d(1, 1, 7, causal=False)):
            pass


def test_streaming_transposed_conv_equals_one_pass():
    torch.manual_seed(0)
    net = torch.nn.Sequential(PaddedConvTranspose1d(3, 4, 8, stride=4), PaddedConvTranspose1d(4, 2, 5, stride=2))
    z = torch.randn(2, 3, 12)
    with torch.no_grad():
        whole = net(z)
        with streaming(net):
            parts = [net(c) for c in z.split([1, 4, 0, 7], dim=-1)]
    assert whole.shape == (2, 2, 12 * 8)
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole, rtol=0, atol=1e-6)


def test_stream_states_take_turns_on_one_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(PaddedConv1d(1, 4, 7, dilation=3), PaddedConvTranspose1d(4, 1, 4, stride=2))
    a, b = torch.randn(2, 1, 1, 30)
    with torch.no_grad():
        alone = [StreamState(net), StreamState(net)]
        want = [torch.cat([s(c) for c in x.split(10, dim=-1)], dim=-1) for s, x in zip(alone, (a, b))]
        sa, sb = StreamState(net), StreamState(net)
        got_a, got_b = [], []
        for ca, cb in zip(a.split(10, dim=-1), b.split(10, dim=-1)):
            got_a.append(sa(ca))
            got_b.append(sb(cb))
        assert torch.equal(torch.cat(got_a, dim=-1), want[0]) and torch.equal(torch.cat(got_b, dim=-1), want[1])
        assert net[0]._cache is None and not net[1]._streaming  # the module holds no stream's state
        torch.testing.assert_close(want[0], net(a), rtol=0, atol=1e-6)  # and each stream is the one pass


def test_streaming_rejects_non_causal_transposed_convs():
    with pytest.raises(ValueError, match="causal"):
        StreamState(PaddedConvTranspose1d(1, 1, 4, stride=2, causal=False))


@pytest.mark.parametrize("kernel,stride,dilation,causal", [(7, 1, 3, True), (1, 1, 1, True), (8, 4, 1, True),
                                                           (7, 1, 1, False), (3, 1, 9, False)])
def test_padded_conv1d_inference_path_is_the_padded_forward(kernel, stride, dilation, causal):
    """Without autograd the padding happens inside the conv (or not at all); the outputs stay F.pad's."""
    torch.manual_seed(0)
    conv = PaddedConv1d(3, 4, kernel, stride=stride, dilation=dilation, causal=causal)
    x = torch.randn(2, 3, 8 * 12)
    with torch.no_grad():
        fast = conv(x)
    reference = torch.nn.Conv1d.forward(conv, torch.nn.functional.pad(x, (conv.lookback, conv.lookahead)))
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_causal_conv3d_inference_path_is_the_training_forward(stride):
    """Single clips go through oneDNN at inference (PyTorch's heuristic would pick its slow 3D conv)."""
    torch.manual_seed(0)
    conv = CausalConv3d(3, 5, 3, stride=(stride, stride, stride))
    x = torch.randn(1, 3, 5, 12, 10)
    reference = conv(x).detach()
    with torch.inference_mode():
        fast = conv(x)
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [4, 12])
def test_stacked_blocks_are_the_block_by_block_stream_bit_for_bit(length):
    """``StreamState(x, blocks=n)`` runs n consecutive blocks in one call per conv: contexts longer than
    a block (18 > 4), shorter (6 < 12) and none (1x1), transposed convs, carried on to the next call."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(PaddedConv1d(2, 8, 7, dilation=3), PaddedConv1d(8, 8, 1), PaddedConv1d(8, 8, 7),
                              PaddedConv1d(8, 6, 4, stride=2), PaddedConvTranspose1d(6, 3, 8, stride=4))
    x = torch.randn(3, 2, 8 * length)
    with torch.no_grad():
        one = StreamState(net)
        want = torch.cat([one(block) for block in x.split(length, dim=-1)], dim=-1)
        stacked = StreamState(net)  # 6 blocks of batch 3: 18 rows, where PyTorch's own kernel choice changes
        blocks = x[..., : 6 * length].unflatten(-1, (6, length)).movedim(-2, 0).flatten(0, 1)  # block-major
        first = stacked(blocks, 6).unflatten(0, (6, -1)).movedim(0, -2).flatten(-2)
        rest = [stacked(block) for block in x[..., 6 * length :].split(length, dim=-1)]  # the carried context
    assert torch.equal(torch.cat([first, *rest], dim=-1), want)


def test_stacked_blocks_need_1d_convs():
    with pytest.raises(ValueError, match="1D convs"):
        StreamState(CausalConv3d(1, 1, 3))(torch.zeros(2, 1, 3, 4, 4), 2)


def test_stacked_blocks_round_as_single_blocks_at_real_widths():
    """At widths where PyTorch's own kernel choice depends on the batch size (18 stacked rows against 1),
    the stream's convs still give each block the bits of its own call."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(PaddedConv1d(4, 64, 7), PaddedConv1d(64, 64, 1), PaddedConv1d(64, 128, 7, dilation=3))
    x = torch.randn(1, 4, 18 * 32)
    with torch.no_grad():
        one = StreamState(net)
        want = torch.cat([one(block) for block in x.split(32, dim=-1)], dim=-1)
        blocks = x.unflatten(-1, (18, 32)).movedim(-2, 0).flatten(0, 1)
        got = StreamState(net)(blocks, 18).unflatten(0, (18, -1)).movedim(0, -2).flatten(-2)
    assert torch.equal(got, want)
