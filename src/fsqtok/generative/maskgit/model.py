"""MaskGIT (Chang et al., 2022) on the tokens of an fsqtok tokenizer: a class-conditional,
bidirectional transformer trained to predict masked tokens, sampled by iterative parallel decoding.

Token ids are ``0 .. codebook_size - 1``; the mask id is ``codebook_size``. The class token is
prepended to the sequence; class ``num_classes`` is the null class (class dropout in training,
the unconditional branch of classifier-free guidance in sampling). The output head predicts
the ``codebook_size`` real ids only, so sampling can never emit the mask id.

    model = MaskGIT(MaskGITConfig(codebook_size=1000, grid=(7, 7), num_classes=10))
    loss = model.loss(tokens, labels)            # tokens int64 (B, 7, 7), labels int64 (B,)
    samples = model.generate(labels, steps=12)   # int64 (B, 7, 7)

The config names the tokenizer that made the tokens (``tokenizer`` and ``tokenizer_sha256``);
:func:`fsqtok.generative.maskgit.sampling.load_matching_tokenizer` loads it for decoding and refuses a
tokenizer with other weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...hub import HubMixin
from ...configs import ModelConfig
from ..transformer import Transformer, packed_weights, transformer_flops


@dataclass(frozen=True)
class MaskGITConfig(ModelConfig):
    """Frozen; build variants with ``dataclasses.replace``. config.json holds exactly these fields."""

    codebook_size: int = 1000  # token ids 0 .. codebook_size-1 (the tokenizer's codes per position)
    grid: tuple[int, int] = (7, 7)  # token grid (h, w)
    num_classes: int = 10  # class labels 0 .. num_classes-1; num_classes is the null class
    width: int = 256  # transformer width
    depth: int = 6  # transformer blocks
    heads: int = 8  # attention heads (width must divide by heads)
    mlp_ratio: float = 4.0  # MLP hidden width / width
    dropout: float = 0.1  # embedding and residual-branch dropout in training
    label_smoothing: float = 0.1  # of the cross-entropy on masked positions
    class_dropout: float = 0.1  # probability of replacing a label by the null class in training
    class_names: tuple[str, ...] = ()  # optional names of the classes (the shards' label strings)
    tokenizer: str | None = None  # folder or Hub repo id of the tokenizer that made the tokens
    tokenizer_sha256: str | None = None  # that tokenizer's weights_hash() (as the shards' manifest records it)

    def __post_init__(self) -> None:
        self._check_int("codebook_size", minimum=2)
        grid = self._check_ints("grid", minimum=1)
        if len(grid) != 2:
            self._fail("grid", f"expected [h, w], got {list(grid)}")
        self._check_int("num_classes", minimum=1)
        for name in ("width", "depth", "heads"):
            self._check_int(name, minimum=1)
        if self.width % self.heads:
            self._fail("heads", f"width {self.width} must be divisible by heads {self.heads}")
        self._check_float("mlp_ratio", lo=0.0, lo_open=True)
        for name in ("dropout", "label_smoothing", "class_dropout"):
            self._check_float(name, lo=0.0, hi=1.0)
        names = self._check_strs("class_names")
        if names and len(names) != self.num_classes:
            self._fail("class_names", f"has {len(names)} names for num_classes={self.num_classes}")
        for name in ("tokenizer", "tokenizer_sha256"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                self._fail(name, f"expected a string or null, got {getattr(self, name)!r}")

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


def gamma(r: Tensor | float) -> Tensor:
    """The cosine mask schedule ``cos(pi r / 2)``: the masked fraction at progress ``r`` in [0, 1]."""
    return torch.cos(math.pi / 2 * torch.as_tensor(r, dtype=torch.float64))


def mask_count(r: Tensor, n: int) -> Tensor:
    """Training: positions to mask at schedule draw ``r``: ``ceil(gamma(r) * n)``, at least 1. int64 like ``r``."""
    return torch.ceil(gamma(r) * n).long().clamp_(1, n)


def random_mask(r: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """bool ``(B, n)``: row ``i`` masks ``mask_count(r[i], n)`` positions chosen uniformly at random."""
    counts = mask_count(r, n).to(r.device)
    scores = torch.rand(r.shape[0], n, generator=generator, device=_rng_device(generator, r.device)).to(r.device)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation per row
    return ranks < counts[:, None]


def gumbel(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
           keep: Tensor | None = None) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)``, ``U`` of ``shape`` drawn from ``generator`` (float32).

    With ``keep`` int64 ``(B, m)``, the rows ``keep`` of dim 1 only, ``(B, m, *shape[2:])``, out of the same full
    draw (so the generator advances as it does without ``keep``).
    """
    u = torch.rand(shape, generator=generator, device=_rng_device(generator, device)).to(device)
    if keep is not None:
        u = u.gather(1, keep.view(*keep.shape, *[1] * (u.ndim - 2)).expand(*keep.shape, *u.shape[2:]))
    return u.clamp_(1e-20, 1.0 - 1e-7).log_().neg_().log_().neg_()


def _rng_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


class MaskGIT(nn.Module, HubMixin, tags=["maskgit", "image-generation"]):
    """Class-conditional masked-token transformer. See the module docstring for the token layout.

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from :class:`fsqtok.hub.HubMixin`.
    """

    model_type = "maskgit"
    config_class = MaskGITConfig

    def __init__(self, config: MaskGITConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MaskGITConfig()
        self.mask_id, self.null_class = config.codebook_size, config.num_classes
        self.token_emb = nn.Embedding(config.codebook_size + 1, config.width)
        self.class_emb = nn.Embedding(config.num_classes + 1, config.width)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.num_tokens + 1, config.width))
        self.drop = nn.Dropout(config.dropout)
        self.transformer = Transformer(config.width, config.depth, config.heads, config.mlp_ratio, config.dropout)
        self.head = nn.Linear(config.width, config.codebook_size)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.pos_emb, std=0.02)

    def model_card_body(self, repo_id: str) -> str:
        cfg = self.config
        n = sum(p.numel() for p in self.parameters())
        return (f"# fsqtok MaskGIT\n\nA class-conditional MaskGIT ({n:,} parameters, width {cfg.width}, depth "
                f"{cfg.depth}) over {cfg.grid[0]}x{cfg.grid[1]} tokens of {cfg.codebook_size} codes from the tokenizer "
                f"`{cfg.tokenizer}` (weights sha256 `{cfg.tokenizer_sha256}`), {cfg.num_classes} classes.\n\n"
                "## Usage\n\n```bash\n"
                f"python scripts/sample_maskgit.py --model {repo_id} --num-samples 64 --output-dir samples\n```\n")

    # -- checks
    def _fail(self, message: str, kind: type[Exception] = ValueError) -> None:
        raise kind(f"MaskGIT: {message}")

    def _check_tokens(self, tokens: Tensor, allow_mask: bool) -> Tensor:
        """``(B, h, w)`` int tokens -> ``(B, N)`` int64; residual ``(B, S, h, w)`` tokens are refused."""
        if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dtype == torch.bool:
            self._fail(f"tokens must be an integer tensor (B, h, w), got {getattr(tokens, 'dtype', type(tokens))}",
                       TypeError)
        h, w = self.config.grid
        if tokens.ndim == 4:
            self._fail(f"got tokens of shape {tuple(tokens.shape)}: residual (multi-stage) tokens are not supported "
                       "yet; use the tokens of a plain FSQ or VQ tokenizer")
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != (h, w) or tokens.shape[0] == 0:
            self._fail(f"expected tokens (B, {h}, {w}) (config.grid), got shape {tuple(tokens.shape)}")
        hi = self.mask_id + 1 if allow_mask else self.mask_id
        if int(tokens.min()) < 0 or int(tokens.max()) >= hi:
            self._fail(f"token ids must lie in [0, {hi}), got min {int(tokens.min())}, max {int(tokens.max())}")
        return tokens.reshape(tokens.shape[0], -1).long()

    def _check_labels(self, labels: Tensor, batch: int | None, allow_null: bool = False) -> Tensor:
        if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.ndim != 1:
            self._fail("labels must be an int64 tensor (B,)", TypeError)
        if batch is not None and labels.shape[0] != batch:
            self._fail(f"{labels.shape[0]} labels for {batch} token grids")
        hi = self.null_class + 1 if allow_null else self.null_class
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= hi):
            self._fail(f"labels must lie in [0, {hi}), got min {int(labels.min())}, max {int(labels.max())}")
        return labels.long()

    # -- network
    def features(self, tokens: Tensor, labels: Tensor, keep: Tensor | None = None) -> Tensor:
        """``tokens`` int64 ``(B, N)`` (mask id allowed), ``labels`` ``(B,)`` (null allowed) -> ``(B, N, width)``,
        or ``(B, m, width)`` at the positions ``keep`` (int64 ``(B, m)``) only."""
        x = torch.cat([self.class_emb(labels)[:, None], self.token_emb(tokens)], dim=1) + self.pos_emb
        if keep is None:
            return self.transformer(self.drop(x))[:, 1:]
        return self.transformer(self.drop(x), keep=keep + 1)  # + 1: the class token comes first

    def forward(self, tokens: Tensor, labels: Tensor) -> Tensor:
        """Logits over the real ids: ``(B, h, w)`` tokens (mask id allowed), ``(B,)`` labels -> ``(B, N, codebook_size)``."""
        flat = self._check_tokens(tokens, allow_mask=True)
        return self.head(self.features(flat, self._check_labels(labels, flat.shape[0], allow_null=True)))

    # -- training
    def drop_labels(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Replace each label by the null class with probability ``config.class_dropout``."""
        u = torch.rand(labels.shape, generator=generator, device=_rng_device(generator, labels.device))
        return torch.where(u.to(labels.device) < self.config.class_dropout, self.null_class, labels)

    def loss(self, tokens: Tensor, labels: Tensor, *, mask: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """Scalar cross-entropy (label-smoothed) on the masked positions only.

        Args:
            tokens: int64 ``(B, h, w)`` in ``[0, codebook_size)``.
            labels: int64 ``(B,)`` in ``[0, num_classes)``; dropped to the null class with
                probability ``class_dropout`` (in training mode only).
            mask: optional bool ``(B, N)`` of positions to mask; default: per sample, ``r ~ U(0, 1)``
                and ``ceil(cos(pi r / 2) * N)`` positions at random (:func:`random_mask`).
            generator: the random source of ``r``, the positions and the class dropout.
        """
        flat = self._check_tokens(tokens, allow_mask=False)
        labels = self._check_labels(labels, flat.shape[0])
        b, n = flat.shape
        if mask is None:
            r = torch.rand(b, generator=generator, device=_rng_device(generator, flat.device)).to(flat.device)
            mask = random_mask(r, n, generator)
        elif mask.shape != (b, n) or mask.dtype != torch.bool or not bool(mask.any(dim=1).all()):
            self._fail(f"mask must be bool ({b}, {n}) with at least one masked position per row")
        if self.training and self.config.class_dropout > 0:
            labels = self.drop_labels(labels, generator)
        hidden = self.features(torch.where(mask, self.mask_id, flat), labels)
        logits = self.head(hidden[mask])  # only the masked positions are scored
        return F.cross_entropy(logits.float(), flat[mask], label_smoothing=self.config.label_smoothing)

    def train_flops(self, batch: int) -> int:
        """Matmul FLOPs of one :meth:`loss` forward + backward at ``batch`` (head on the expected masked count)."""
        cfg, n = self.config, self.config.num_tokens
        body = transformer_flops(cfg.width, cfg.depth, cfg.mlp_ratio, n + 1)
        masked = n * 2 / math.pi  # E[gamma(r)] over r ~ U(0, 1)
        return int(3 * batch * (body + 2 * masked * cfg.width * cfg.codebook_size))

    # -- sampling
    def generate(self, labels: Tensor, steps: int = 12, temperature: float = 1.0, noise: float = 4.5,
                 guidance: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """MaskGIT iterative decoding -> int64 ``(B, h, w)`` token grids, never holding the mask id.

        Step ``t`` samples every masked position from ``softmax(logits / temperature)`` (argmax
        when ``temperature == 0``), scores it by that log-probability plus Gumbel noise times
        ``noise * (1 - (t + 1) / steps)``, and commits all but the ``floor(N * gamma((t + 1) / steps))``
        lowest-scoring masked positions. Committed positions never change. With ``guidance = w > 0``
        the logits are ``l_c + w * (l_c - l_u)``, ``l_u`` from the null class. Deterministic for
        a given ``generator``; uses the model as it is (call ``.eval()`` first). Every step draws
        ``(B, N, codebook_size)`` then ``(B, N)`` uniforms from ``generator``, whatever is still masked.
        Runs under ``torch.inference_mode``; the returned grid is an ordinary tensor.
        """
        labels = self._check_labels(labels, None)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            self._fail(f"steps must be an int >= 1, got {steps!r}")
        for name, v in (("temperature", temperature), ("noise", noise), ("guidance", guidance)):
            if not (math.isfinite(v) and v >= 0):
                self._fail(f"{name} must be a finite number >= 0, got {v!r}")
        b, n, dev = labels.shape[0], self.config.num_tokens, self.pos_emb.device
        with torch.inference_mode(), packed_weights():
            labels = labels.to(dev)
            tokens = torch.full((b, n), self.mask_id, dtype=torch.long, device=dev)
            keep = torch.arange(n, device=dev).repeat(b, 1)  # the masked positions, ascending: all of them
            cond = labels if guidance == 0 else torch.cat([labels, torch.full_like(labels, self.null_class)])
            for t in range(steps):
                keep = self._decode_step(tokens, keep, cond, (t + 1) / steps, temperature, noise, guidance, generator)
        return tokens.clone().view(b, *self.config.grid)  # cloned outside inference mode: callers may write to it

    def _decode_step(self, tokens: Tensor, keep: Tensor, cond: Tensor, r_next: float, temperature: float,
                     noise: float, guidance: float, generator: torch.Generator | None) -> Tensor:
        """One step of :meth:`generate`, to progress ``r_next = (t + 1) / steps``, on ``tokens`` int64 ``(B, N)`` in
        place.

        ``keep`` int64 ``(B, m)``: the masked positions, ascending (the same count in every row); returns those
        still masked after the step. Only these ``m`` rows reach the last block's queries, the final norm, the
        head and the sampling ops: the others' logits are never used. The noise is drawn for all ``N``.
        """
        (b, n), m = tokens.shape, keep.shape[1]
        if m:
            inputs, rows = (tokens, keep) if guidance == 0 else (tokens.repeat(2, 1), keep.repeat(2, 1))
            logits = self.head(self.features(inputs, cond, keep=rows)).float()  # (B or 2B, m, K)
            if guidance:
                l_c, l_u = logits.chunk(2)
                logits = l_c + guidance * (l_c - l_u)
        g = gumbel((b, n, self.config.codebook_size), generator, tokens.device, keep)
        g_score = gumbel((b, n), generator, tokens.device, keep)
        if m == 0:
            return keep
        if temperature > 0:
            if temperature != 1:  # x / 1 == x exactly: skipped
                logits = logits / temperature
            sampled = g.add_(logits).argmax(-1)  # Gumbel-max: a draw from softmax(logits / temperature)
        else:
            sampled = logits.argmax(-1)
        logp = logits.log_softmax(-1).gather(-1, sampled[..., None])[..., 0]
        score = logp + noise * (1.0 - r_next) * g_score
        tokens.scatter_(1, keep, sampled)
        keep_masked = int(math.floor(n * float(gamma(r_next))))
        lowest = score.topk(keep_masked, dim=1, largest=False).indices  # (B, keep_masked), into keep
        keep = keep.gather(1, lowest.sort(dim=1).values)
        tokens.scatter_(1, keep, self.mask_id)
        return keep


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
