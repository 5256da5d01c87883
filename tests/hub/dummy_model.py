"""A second model type for the Hub tests: not a tokenizer, with a tied weight and a buffer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fsqtok.hub import ConfigError, HubMixin


@dataclass(frozen=True)
class DummyConfig:
    vocab: int = 11
    dim: int = 6

    def __post_init__(self) -> None:
        for name in ("vocab", "dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DummyConfig.{name}: expected an int >= 1, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DummyConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"DummyConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


class DummyModel(nn.Module, HubMixin):
    """Token embedding tied to the output head: ``(B, N)`` int64 -> ``(B, N, vocab)`` logits."""

    model_type = "hub_test_dummy"
    config_class = DummyConfig

    def __init__(self, config: DummyConfig | None = None) -> None:
        super().__init__()
        self.config = config or DummyConfig()
        self.embed = nn.Embedding(self.config.vocab, self.config.dim)
        self.mix = nn.Linear(self.config.dim, self.config.dim)
        self.head = nn.Linear(self.config.dim, self.config.vocab, bias=False)
        self.head.weight = self.embed.weight  # tied: stored once in model.safetensors
        self.register_buffer("scale", torch.tensor(1.5))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(torch.tanh(self.mix(self.embed(tokens)))) * self.scale

    def model_card_body(self, repo_id: str) -> str:
        return f"# dummy for tests\n\nload with `fsqtok.load_pretrained(\"{repo_id}\")`\n"
