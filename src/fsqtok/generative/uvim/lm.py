"""UViM stage II: an encoder-decoder transformer that reads the image and predicts the guide code.

The encoder embeds ``patch_size`` patches of the image context (the same context the stage-I model
sees; ``stem="conv"`` puts two 3x3 convolutions before the patch embedding, a small hybrid stem that
sees edges and texture density, which a linear patch embedding learns slowly at small scale;
``stem="stage1"`` puts there a copy of the stage-I base model's image trunk, initialised from its
weights by :meth:`UViMLM.init_stem_from` and then fine-tuned: the LM starts from features that already
serve the task, as big_vision starts UViM's LM from a pre-trained encoder) and runs
bidirectional self-attention; the decoder predicts the ``num_tokens`` code tokens in
raster order with causal self-attention and cross-attention to the encoder. Training uses teacher
forcing and cross-entropy (:meth:`UViMLM.loss`); :meth:`UViMLM.generate` decodes greedily (or samples
with a temperature). :class:`UViMPipeline` joins an LM to the stage-I model it names (path + weights
hash) and returns ``f(x, z)``.

An LM folder is self-contained wherever it is saved or pushed: an LM holds the stage-I model it was
trained with (:meth:`UViMLM.attach_stage1`, hash checked), ``save_pretrained`` / ``push_to_hub`` write
it to ``stage1/`` and name it there, and ``from_pretrained`` loads it back (a local folder, a Hub repo
or the offline Hub cache: the repo's ``stage1/`` subfolder).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...hub import CheckpointError, HubMixin, looks_local
from .stage1 import ConvTrunk, UViMStage1
from ...configs import ModelConfig


STEMS = ("patch", "conv", "stage1")


@dataclass(frozen=True)
class UViMLMConfig(ModelConfig):
    """Stage-II model config (its config.json). ``stage1``/``stage1_hash`` name the stage-I model."""

    vocab_size: int = 4375  # stage-I codebook size
    num_tokens: int = 16  # code tokens per image (code_grid ** 2)
    image_size: int = 64
    context_channels: int = 3
    patch_size: int = 8
    width: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    stem: str = "patch"  # "patch": a linear patch embedding (ViT); "conv": two 3x3 convs (GELU) before it;
    # "stage1": the stage-I base model's image trunk (ConvTrunk of stem_width/stem_blocks/stem_down) before it
    stem_width: int = 0  # stem="stage1" only: the trunk's width, residual blocks and downsamplings
    stem_blocks: int = 0
    stem_down: int = 0
    stage1: str = ""  # stage-I folder or Hub repo id; a relative path is a sub-folder of this model's folder
    # (save_pretrained writes the attached stage-I model to "stage1")
    stage1_hash: str = ""  # sha256 of the stage-I weights (HubMixin.weights_hash)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "num_tokens", "image_size", "context_channels", "patch_size", "width",
                     "encoder_layers", "decoder_layers", "heads"):
            self._check_int(name, 1)
        self._check_float("mlp_ratio", 0.0)
        self._check_float("dropout", 0.0)
        self._check_choice("stem", STEMS)
        for name in ("stem_width", "stem_blocks", "stem_down"):
            self._check_int(name, 0)
        if self.stem == "stage1" and (self.stem_width < 1 or self.patch_size % 2 ** self.stem_down):
            self._fail("stem", f"stage1 needs stem_width >= 1 and patch_size divisible by 2**stem_down "
                       f"(got {self.stem_width}, {self.patch_size}, {self.stem_down}); build the config with for_stage1")
        if self.image_size % self.patch_size:
            self._fail("patch_size", f"must divide image_size={self.image_size}, got {self.patch_size}")
        if self.width % self.heads:
            self._fail("heads", f"must divide width={self.width}, got {self.heads}")
        for name in ("stage1", "stage1_hash"):
            if not isinstance(getattr(self, name), str):
                self._fail(name, f"expected a string, got {getattr(self, name)!r}")

    @classmethod
    def for_stage1(cls, stage1: UViMStage1, source: str, **fields) -> "UViMLMConfig":
        """A config whose vocabulary, sequence and context fit ``stage1``, named by ``source`` and its hash."""
        c = stage1.config
        if fields.get("stem") == "stage1":
            fields = {**fields, "stem_width": c.width, "stem_blocks": c.blocks, "stem_down": c.feature_down}
        return cls(vocab_size=stage1.codebook_size, num_tokens=c.num_tokens, image_size=c.image_size,
                   context_channels=stage1.task.context_channels, stage1=str(source),
                   stage1_hash=stage1.weights_hash(), **fields)


class UViMLM(nn.Module, HubMixin):
    """Image-conditioned autoregressive model of the guide code: ``(B, C, H, W)`` context -> ``(B, L)`` tokens."""

    model_type = "uvim_lm"
    config_class = UViMLMConfig

    def __init__(self, config: UViMLMConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or UViMLMConfig()
        n_patches = (c.image_size // c.patch_size) ** 2
        patch, stem = c.patch_size, c.width // 2
        if c.stem == "patch":
            self.stem, stem = nn.Identity(), c.context_channels
        elif c.stem == "conv":
            self.stem = nn.Sequential(nn.Conv2d(c.context_channels, stem, 3, padding=1), nn.GELU(),
                                      nn.Conv2d(stem, stem, 3, padding=1), nn.GELU())
        else:
            self.stem, stem = ConvTrunk(c.context_channels, c.stem_width, c.stem_blocks, c.stem_down), c.stem_width
            patch //= 2 ** c.stem_down
        self.patch = nn.Conv2d(stem, c.width, patch, stride=patch)
        self.enc_pos = nn.Parameter(torch.randn(1, n_patches, c.width) * 0.02)
        hidden = int(round(c.mlp_ratio * c.width))
        layer = dict(d_model=c.width, nhead=c.heads, dim_feedforward=hidden, dropout=c.dropout,
                     activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), c.encoder_layers,
                                             norm=nn.LayerNorm(c.width), enable_nested_tensor=False)
        self.embed = nn.Embedding(c.vocab_size + 1, c.width)  # the last row is BOS
        self.dec_pos = nn.Parameter(torch.randn(1, c.num_tokens, c.width) * 0.02)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), c.decoder_layers,
                                             norm=nn.LayerNorm(c.width))
        self.head = nn.Linear(c.width, c.vocab_size)

    @property
    def bos(self) -> int:
        return self.config.vocab_size

    @property
    def stage1_model(self) -> UViMStage1 | None:
        """The stage-I model this LM was trained with (not a sub-module: not in its weights or optimizer)."""
        return self.__dict__.get("_stage1")

    def attach_stage1(self, stage1: UViMStage1) -> "UViMLM":
        """Hold ``stage1`` (saved with this LM); it must be the model the config names by weights hash."""
        got = stage1.weights_hash()
        if self.config.stage1_hash and got != self.config.stage1_hash:
            raise CheckpointError(f"UViMLM: the stage-I weights (sha256 {got[:12]}...) are not those the LM was "
                                  f"trained on ({self.config.stage1_hash[:12]}...); load the stage-I model it names")
        if self.config.vocab_size != stage1.codebook_size or self.config.num_tokens != stage1.config.num_tokens:
            raise CheckpointError("UViMLM: LM vocabulary or code length does not fit the stage-I model")
        self.__dict__["_stage1"] = stage1
        return self

    def hub_config(self) -> dict[str, Any]:
        """config.json; with a stage-I model attached, it names the ``stage1/`` sub-folder written beside it."""
        return {**super().hub_config(), **({"stage1": "stage1"} if self.stage1_model is not None else {})}

    def _save_pretrained(self, save_directory: Path) -> None:
        """The LM's files, and its stage-I model in ``stage1/`` (so the folder is self-contained)."""
        save_directory, stage1 = Path(save_directory), self.stage1_model
        c = self.config
        if stage1 is None and not names_another_place(c.stage1):
            raise CheckpointError(f"UViMLM.save_pretrained({save_directory}): this LM names its stage-I model "
                                  f"{c.stage1!r} inside its own folder but holds none; "
                                  "call attach_stage1(stage1) first")
        super()._save_pretrained(save_directory)
        if stage1 is not None:
            shutil.rmtree(save_directory / "stage1", ignore_errors=True)
            stage1.save_pretrained(save_directory / "stage1")

    def load_parts(self, source: str, hub: dict[str, Any], map_location: str | torch.device) -> None:
        """Load and attach the stage-I model the config names (weights hash checked)."""
        where, sub = stage1_location(source, self.config.stage1)
        hub = {k: v for k, v in hub.items() if k != "subfolder"}
        stage1 = UViMStage1.from_pretrained(where, subfolder=sub, map_location=map_location, **hub)
        try:
            self.attach_stage1(stage1)
        except CheckpointError as e:
            raise CheckpointError(f"{source}: {os.path.join(where, sub)}: {e}") from None

    def init_stem_from(self, stage1: UViMStage1) -> None:
        """Copy ``stage1``'s base-model image trunk into this LM's stem (``stem="stage1"`` only)."""
        if self.config.stem != "stage1":
            raise ValueError(f"UViMLM.init_stem_from: this LM has stem={self.config.stem!r}, not 'stage1'")
        try:
            self.stem.load_state_dict(stage1.base_context.state_dict())
        except RuntimeError as e:
            raise CheckpointError(f"UViMLM.init_stem_from: the stage-I trunk does not fit this LM's stem "
                                  f"(build the LM config with UViMLMConfig.for_stage1): {str(e).splitlines()[0]}") from None

    def encode(self, context: Tensor) -> Tensor:
        """``(B, C, H, W)`` context -> encoder memory ``(B, patches, width)``."""
        c = self.config
        if context.ndim != 4 or context.shape[1:] != (c.context_channels, c.image_size, c.image_size):
            raise ValueError(f"UViMLM: context must be (B, {c.context_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(context.shape)}")
        h = self.patch(self.stem(context)).flatten(2).transpose(1, 2)
        return self.encoder(h + self.enc_pos)

    def _decode(self, memory: Tensor, inputs: Tensor) -> Tensor:
        """Decoder inputs ``(B, n)`` (BOS first) -> logits ``(B, n, vocab)``."""
        n = inputs.shape[1]
        h = self.embed(inputs) + self.dec_pos[:, :n]
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=h.device, dtype=h.dtype)
        return self.head(self.decoder(h, memory, tgt_mask=mask, tgt_is_causal=True))

    def forward(self, context: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: context and int64 tokens ``(B, L)`` -> logits ``(B, L, vocab)``; position ``i``
        predicts ``tokens[:, i]`` from ``tokens[:, :i]``."""
        c = self.config
        tokens = tokens.reshape(tokens.shape[0], -1).long()
        if tokens.shape[1] != c.num_tokens or (tokens.numel() and (int(tokens.min()) < 0 or
                                                                   int(tokens.max()) >= c.vocab_size)):
            raise ValueError(f"UViMLM: tokens must be (B, {c.num_tokens}) in [0, {c.vocab_size}), "
                             f"got {tuple(tokens.shape)}")
        bos = tokens.new_full((tokens.shape[0], 1), self.bos)
        return self._decode(self.encode(context), torch.cat([bos, tokens[:, :-1]], 1))

    def loss(self, context: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over tokens, and the per-token accuracy of the argmax (a detached scalar)."""
        return self.loss_from_logits(self(context, tokens), tokens)

    @staticmethod
    def loss_from_logits(logits: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`loss` of :meth:`forward`'s logits (a recipe calls forward through its DDP wrapper)."""
        target = tokens.reshape(tokens.shape[0], -1).long()
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
        return loss, (logits.argmax(-1) == target).float().mean().detach()

    @torch.no_grad()
    def generate(self, context: Tensor, temperature: float = 0.0, generator: torch.Generator | None = None,
                 num_tokens: int | None = None) -> Tensor:
        """Decode the code token by token: greedy when ``temperature == 0``, else sampled from
        ``softmax(logits / temperature)``. Returns int64 ``(B, num_tokens)``; ``num_tokens`` below the
        code length decodes only that prefix (default: the whole code)."""
        if temperature < 0:
            raise ValueError(f"UViMLM.generate: temperature must be >= 0, got {temperature}")
        length = self.config.num_tokens if num_tokens is None else num_tokens
        if not 1 <= length <= self.config.num_tokens:
            raise ValueError(f"UViMLM.generate: num_tokens must be in 1..{self.config.num_tokens}, got {num_tokens}")
        memory = self.encode(context)
        seq = torch.full((context.shape[0], 1), self.bos, dtype=torch.long, device=context.device)
        for _ in range(length):
            logits = self._decode(memory, seq)[:, -1].float()
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            seq = torch.cat([seq, nxt[:, None]], 1)
        return seq[:, 1:]


def names_another_place(stage1: str) -> bool:
    """Whether an LM's ``stage1`` names a model outside the LM's folder: an absolute path or a Hub repo ``org/name``."""
    return Path(stage1).is_absolute() or ("/" in stage1 and not looks_local(stage1))


def stage1_location(lm_source: str | Path, stage1: str) -> tuple[str, str]:
    """Where the stage-I model named by an LM saved at ``lm_source`` (folder or Hub repo) lives, as
    ``(path_or_repo_id, subfolder)``: an absolute path or another Hub repo ``org/name`` as is; any
    other name is a sub-folder of the LM's folder or repo (``"stage1"``, as ``save_pretrained`` writes)."""
    source = str(lm_source)
    if not stage1:
        raise CheckpointError(f"{source}: config.json names no stage-I model (stage1 is empty)")
    inside = (os.path.isdir(source) or looks_local(source)) and (Path(source) / stage1).exists()
    return (stage1, "") if names_another_place(stage1) and not inside else (source, stage1)


class UViMPipeline:
    """Stage II then stage I: ``predict(image)`` decodes the code from the image and returns ``f(x, z)``."""

    def __init__(self, stage1: UViMStage1, lm: UViMLM) -> None:
        self.stage1, self.lm = stage1, lm.attach_stage1(stage1)  # hash and vocabulary checked

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, map_location: str | torch.device = "cpu",
                        **hub: Any) -> "UViMPipeline":
        """Load an LM folder or Hub repo and the stage-I model it names (hash checked); ``hub``: the
        options of :meth:`HubMixin.from_pretrained` (``local_files_only``, ``revision``, ...)."""
        lm = UViMLM.from_pretrained(path_or_repo_id, map_location=map_location, **hub)
        return cls(lm.stage1_model, lm)

    @torch.no_grad()
    def predict(self, image: Tensor, temperature: float = 0.0, num_tokens: int | None = None) -> tuple[Tensor, Tensor]:
        """Image ``(B, 3, H, W)`` in [-1, 1] -> (task prediction, code ``(B, num_tokens)``); ``num_tokens``
        below the code length decodes only that prefix and the base model sees the rest as dropped."""
        tokens = self.lm.generate(self.stage1.task.context(image), temperature, num_tokens=num_tokens)
        return self.stage1.predict(image, tokens), tokens
