"""The Hub layer that every fsqtok model shares: save/load folders and Hub repos, and a registry.

A saved model is a folder (or a Hub repo) holding::

    model.safetensors   the state dict (tied tensors stored once); safetensors metadata {"format": "pt"}
    config.json         {"model_type": ..., "fsqtok_version": ..., "trained_on": {...}, **config.to_dict()}
    README.md           a model card (front matter from the mixin, body from :meth:`HubMixin.model_card_body`)

Loading is strict: an unknown model type, invalid config fields, and missing, unexpected or
mis-shaped weights are errors whose one-line message names the folder; pickled weights are never
read. ``model.safetensors`` is written byte-for-byte as :meth:`HubMixin.weights_hash` hashes it,
so ``sha256sum model.safetensors`` of a folder saved by this version equals the model's hash.
``trained_on`` (optional; :attr:`HubMixin.trained_on`) names by content hash the data and models a
recipe trained the model on; it survives a load and a re-save (``push_to_hub``).

A model class mixes :class:`HubMixin` into an ``nn.Module`` and sets ``model_type`` and
``config_class`` (a frozen dataclass with ``to_dict()`` / ``from_dict()``); its ``__init__`` takes
the config. :data:`MODEL_TYPES` maps each model type to ``"module:Class"``, imported on first use,
so this module imports no model (no import cycle). :func:`load_pretrained` picks the class from
config.json. Tokenizer folders written before model types existed (``"modality"`` and no
``"model_type"``) load as ``<modality>_tokenizer``.

Length: about 345 lines, just over the ~300 guideline: the mixin, its strict loader and the registry
read best in one place, and the file-resolution helpers they share would otherwise be passed around.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .files import atomic_write_bytes

REPO_URL = "https://github.com/fsqtok/fsqtok"
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
CONFIG_NAME = constants.CONFIG_NAME  # "config.json"
RESERVED_KEYS = ("model_type", "fsqtok_version", "trained_on")  # config.json keys that are not config fields

# model_type -> "module:Class" (or a class, for types registered at run time). MaskGIT and UViM add a line each.
MODEL_TYPES: dict[str, str | type] = {
    "image_tokenizer": "fsqtok.tokenizers.image:ImageTokenizer",
    "depth_tokenizer": "fsqtok.tokenizers.depth:DepthTokenizer",
    "audio_tokenizer": "fsqtok.tokenizers.audio:AudioTokenizer",
    "video_tokenizer": "fsqtok.tokenizers.video:VideoTokenizer",
    "cosmos_image_tokenizer": "fsqtok.tokenizers.cosmos:CosmosImageTokenizer",
    "cosmos_video_tokenizer": "fsqtok.tokenizers.cosmos:CosmosVideoTokenizer",
    "nemo_audio_tokenizer": "fsqtok.tokenizers.nemo_audio:NemoAudioTokenizer",
    "maskgit": "fsqtok.generative.maskgit.model:MaskGIT",
    "uvim_stage1": "fsqtok.generative.uvim.stage1:UViMStage1",
    "uvim_lm": "fsqtok.generative.uvim.lm:UViMLM",
}
LEGACY_MODALITIES = ("image", "depth", "audio", "video")  # folders with "modality" and no "model_type"

M = TypeVar("M", bound="HubMixin")


class ConfigError(ValueError):
    """An invalid model config (or config.json); the one-line message names the field or file."""


class CheckpointError(RuntimeError):
    """Saved weights or a config.json that do not fit the model being loaded; the message names the file."""


# --------------------------------------------------------------------------- registry


def register_model_type(model_type: str, target: str | type) -> None:
    """Register ``model_type`` -> ``"module.path:ClassName"`` (imported lazily) or a class.

    Registering the same target again is a no-op; another target for a known type is an error.
    """
    if not isinstance(model_type, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", model_type):
        raise ValueError(f"model_type must be lower_snake_case, got {model_type!r}")
    old = MODEL_TYPES.get(model_type)
    if old is not None and old != target:
        raise ValueError(f"model_type {model_type!r} is already registered to {old!r}")
    MODEL_TYPES[model_type] = target


def model_class(model_type: Any, source: str = "") -> type[HubMixin]:
    """The class registered for ``model_type`` (its module is imported now)."""
    prefix = f"{source}: " if source else ""
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise ConfigError(
            f"{prefix}unknown model_type {model_type!r}; expected one of {', '.join(sorted(MODEL_TYPES))}"
        )
    target = MODEL_TYPES[model_type]
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
    if not (isinstance(target, type) and issubclass(target, HubMixin) and target.model_type == model_type):
        raise TypeError(f"MODEL_TYPES[{model_type!r}] is {target!r}: not a HubMixin class with that model_type")
    return target


def config_model_type(raw: dict[str, Any], source: str) -> str:
    """The model type a config.json names (legacy tokenizer folders: ``"<modality>_tokenizer"``)."""
    if "model_type" in raw:
        return raw["model_type"]
    modality = raw.get("modality")
    if modality is None:
        raise ConfigError(f"{source}: config.json has no 'model_type'; not an fsqtok model")
    if not isinstance(modality, str) or modality not in LEGACY_MODALITIES:
        raise ConfigError(
            f"{source}: config.json: unknown modality {modality!r}; expected one of {', '.join(sorted(LEGACY_MODALITIES))}"
        )
    return f"{modality}_tokenizer"


# --------------------------------------------------------------------------- files


def looks_local(source: str) -> bool:
    """Whether a path that does not exist was meant as a local path rather than a Hub repo id ``org/name``.

    True for absolute, ``./``/``../``/``~`` paths, more than one ``/``, a file name with an
    extension (``some/config.json``), a first component that is an existing local folder
    (``runs/tokenzier``), or anything that is not a valid repo id.
    """
    if source.startswith(("/", ".", "~")) or "\\" in source or source.count("/") > 1:
        return True
    if re.search(r"\.(json|safetensors|bin|pt|pth|ckpt|yaml|yml)$", source, re.IGNORECASE):
        return True
    if "/" in source and os.path.isdir(source.split("/", 1)[0]):
        return True
    return not re.fullmatch(r"[\w.-]{1,96}(/[\w.-]{1,96})?", source) or ".." in source or "--" in source


def resolve_file(source: str, filename: str, **hub: Any) -> str:
    """Path of ``filename`` in a local folder, or in the Hub cache (downloaded if needed and allowed).

    ``hub`` holds :func:`huggingface_hub.hf_hub_download` options (``revision``, ``cache_dir``,
    ``local_files_only``, ``token``, ``force_download``). Raises ``FileNotFoundError`` at once for
    a local-looking path that does not exist, and :class:`CheckpointError` for pickled weights only.
    """
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        if not os.path.isfile(path):
            if filename == WEIGHTS_NAME and os.path.isfile(os.path.join(source, constants.PYTORCH_WEIGHTS_NAME)):
                raise CheckpointError(
                    f"{source}: only pickled weights ({constants.PYTORCH_WEIGHTS_NAME}) found; "
                    "fsqtok loads safetensors only"
                )
            raise FileNotFoundError(f"{source}: no {filename} (expected a folder written by save_pretrained)")
        return path
    if os.path.exists(source):
        raise FileNotFoundError(f"{source}: a file, not a folder; pass the folder that holds {CONFIG_NAME}")
    if looks_local(source):
        raise FileNotFoundError(f"{source}: no such folder (and not a Hub repo id of the form org/name)")
    return _from_hub(source, f"no {filename}", lambda: hf_hub_download(repo_id=source, filename=filename, **hub), hub)


def resolve_repo(source: str, **hub: Any) -> str:
    """Path of a local file or folder, or of Hub repo ``source``'s snapshot folder in the Hub cache.

    ``hub`` as for :func:`resolve_file` (``force_download`` excepted). A local-looking path that
    does not exist, or a repo missing from the cache when offline, is a one-line ``FileNotFoundError``.
    """
    if os.path.exists(source):
        return source
    if looks_local(source):
        raise FileNotFoundError(f"{source}: no such file or folder (and not a Hub repo id of the form org/name)")
    return _from_hub(source, "no snapshot", lambda: snapshot_download(repo_id=source, **hub), hub)


def _from_hub(source: str, missing: str, download: Any, hub: dict[str, Any]) -> str:
    """``download()``; offline (or the Hub unreachable) and not in the cache: one line, not the Hub's text."""
    try:
        return download()
    except LocalEntryNotFoundError:
        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "local_files_only=True"
               if hub.get("local_files_only") else "the Hub could not be reached")
        raise FileNotFoundError(f"{source}: no such local folder, and Hub repo {source} has {missing} in the Hub "
                                f"cache ({why}); pass a local folder, or download the repo once online") from None


def read_config(path_or_repo_id: str | Path, **hub: Any) -> dict[str, Any]:
    """The config.json of a saved fsqtok model (local folder or Hub repo id), as a dict."""
    source = str(path_or_repo_id)
    path = resolve_file(source, CONFIG_NAME, **hub)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: config.json is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: config.json must hold an object, got {type(raw).__name__}")
    return raw


# --------------------------------------------------------------------------- mixin


class HubMixin(ModelHubMixin, library_name="fsqtok", repo_url=REPO_URL, tags=["fsqtok"]):
    """Hub save/load for an fsqtok ``nn.Module``: ``class MyModel(nn.Module, HubMixin)``.

    Set ``model_type`` (registered in :data:`MODEL_TYPES`) and ``config_class``; ``__init__``
    takes the config and stores it as ``self.config``. Gives ``save_pretrained(dir)``,
    ``from_pretrained(path_or_repo_id, map_location="cpu")``, ``push_to_hub(repo_id)`` and
    :meth:`weights_hash`. Override :meth:`model_card_body` for the card's text.
    """

    model_type: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    config: Any
    trained_on: dict[str, str] | None = None  # what a recipe trained it on: {"train_data": sha256, ...}

    # -- hooks
    def hub_config(self) -> dict[str, Any]:
        """The content of config.json: ``model_type``, ``fsqtok_version`` and every config field."""
        from .version import __version__  # read at call time: a test may change it

        trained = {"trained_on": dict(self.trained_on)} if self.trained_on else {}
        return {"model_type": self.model_type, "fsqtok_version": __version__, **trained, **self.config.to_dict()}

    @classmethod
    def config_from_hub(cls, raw: dict[str, Any], source: str) -> Any:
        """config.json content -> a validated ``config_class`` instance (reserved keys dropped)."""
        fields = {k: v for k, v in raw.items() if k not in RESERVED_KEYS}
        try:
            return cls.config_class.from_dict(fields)
        except (ConfigError, TypeError, ValueError) as e:
            raise ConfigError(f"{source}: invalid config.json: {e}") from None

    def card_tags(self) -> tuple[str, ...]:
        """Model card tags besides ``"fsqtok"``."""
        return ()

    def model_card_body(self, repo_id: str) -> str:
        """Markdown body of the model card (``repo_id`` is a placeholder when unknown)."""
        return (
            f"# fsqtok {self.model_type}\n\nA `{type(self).__name__}` from [fsqtok]({REPO_URL}).\n\n"
            "## Usage\n\n```python\nimport fsqtok\n\n"
            f'model = fsqtok.load_pretrained("{repo_id}")\n```\n'
        )

    # -- save
    def _saved_state(self) -> dict[str, torch.Tensor]:
        """The state dict as model.safetensors holds it: tied aliases of an earlier tensor dropped."""
        seen: set[tuple] = set()
        tensors: dict[str, torch.Tensor] = {}
        for name, t in self.state_dict().items():  # type: ignore[attr-defined]
            key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if t.numel() and key in seen:
                continue
            seen.add(key)
            tensors[name] = t.detach()
        return tensors

    def _weights_bytes(self) -> bytes:
        """The bytes of model.safetensors: :meth:`_saved_state` on CPU, metadata ``{"format": "pt"}``."""
        return save({k: t.cpu().contiguous() for k, t in self._saved_state().items()}, metadata={"format": "pt"})

    def weights_hash(self) -> str:
        """sha256 (hex) of the weights as :meth:`save_pretrained` writes them: the identity of the
        model's token semantics. Independent of the fsqtok version, the device and the path."""
        return hashlib.sha256(self._weights_bytes()).hexdigest()

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` (the mixin adds the model card)."""
        save_directory = Path(save_directory)
        atomic_write_bytes(save_directory / WEIGHTS_NAME, self._weights_bytes())
        text = json.dumps(self.hub_config(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(save_directory / CONFIG_NAME, text.encode("utf-8"))

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Front matter (library fsqtok, tags) + :meth:`model_card_body`."""
        data = ModelCardData(library_name="fsqtok", tags=sorted({"fsqtok", *self.card_tags()}))
        body = self.model_card_body(kwargs.get("repo_id") or "PATH_OR_REPO_ID")
        return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")

    # -- load
    @classmethod
    def from_pretrained(
        cls: type[M],
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
        subfolder: str = "",
    ) -> M:
        """Load a model saved by ``save_pretrained`` (folder or Hub repo id), in eval mode on ``map_location``.

        config.json's model type picks the class; it must be ``cls`` or a subclass (so a base
        class such as ``Tokenizer`` loads any tokenizer). ``subfolder``: a model saved inside another
        model's folder or repo (a stage-II UViM LM's ``stage1/``).
        """
        source = str(pretrained_model_name_or_path)
        hub = dict(force_download=force_download, token=token, cache_dir=cache_dir,
                   local_files_only=local_files_only, revision=revision)
        if subfolder:
            if looks_local(source) or os.path.isdir(source):
                source = os.path.join(source, subfolder)
            else:
                hub["subfolder"] = subfolder
        raw = read_config(source, **hub)
        klass = model_class(config_model_type(raw, source), source)
        if not issubclass(klass, cls):
            raise CheckpointError(
                f"{source}: config.json is for a {klass.model_type!r} model ({klass.__name__}), not {cls.__name__}; "
                "use fsqtok.load_pretrained to pick the class"
            )
        model = klass(klass.config_from_hub(raw, source))
        model.load_weights(resolve_file(source, WEIGHTS_NAME, **hub), source)
        trained = raw.get("trained_on")
        model.trained_on = dict(trained) if isinstance(trained, dict) else None
        model.load_parts(source, hub, map_location)
        return model.to(map_location).eval()  # type: ignore[attr-defined]

    def load_parts(self, source: str, hub: dict[str, Any], map_location: str | torch.device) -> None:
        """Load what a model's folder holds besides its own weights (none here; a stage-II UViM LM's
        ``stage1/``). ``hub``: the Hub options :meth:`from_pretrained` got."""

    def load_weights(self, path: str | Path, source: str | None = None) -> None:
        """Load a safetensors file strictly: exactly this model's tensors, with their shapes."""
        source = source or str(path)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None
        expected = self._saved_state()
        tied = len(expected) < len(self.state_dict())  # type: ignore[attr-defined]
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        mismatched = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
        if missing or unexpected or mismatched:
            parts = []
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
                if keys:
                    shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                    parts.append(f"{label}: {shown}")
            raise CheckpointError(f"{source}: weights do not match {type(self).__name__}(config) ({'; '.join(parts)})")
        self.load_state_dict(state, strict=not tied)  # type: ignore[attr-defined]


def load_pretrained(path_or_repo_id: str | Path, **kwargs: Any) -> HubMixin:
    """Load any fsqtok model (tokenizer, MaskGIT, UViM, ...); config.json's model type picks the class.

    ``kwargs`` are those of :meth:`HubMixin.from_pretrained`.
    """
    return HubMixin.from_pretrained(path_or_repo_id, **kwargs)
