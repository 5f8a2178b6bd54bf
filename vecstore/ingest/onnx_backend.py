"""Run a sentence-transformers model's transformer through ONNX Runtime on the CPU.

The model is exported here, from its own local weights (``torch.onnx.export``), never
downloaded, and cached beside the model (``<model>/onnx/``) or, where that directory is
read-only, under ``$VECSTORE_CACHE`` (default ``~/.cache/vecstore``). ``"onnx-int8"``
quantises the weights of its matrix multiplications to int8, per output channel
(``onnxruntime.quantization.quantize_dynamic``); activations are quantised on the fly.

Only the transformer (the module before Pooling) is replaced: tokenizing, pooling, Dense and
Normalize modules, prompts, token embeddings for late chunking all stay sentence-transformers'
own, so every embedding path of :class:`~vecstore.ingest.embedders.SentenceTransformerEmbedder`
works unchanged. Measured on all-MiniLM-L6-v2 (docs/benchmarks.md, "Sync"): ``onnx`` gives
torch's vectors (cosine 1.00000), ``onnx-int8`` vectors at cosine ~0.995 from torch's and SciFact
nDCG@10 0.33 points below; ``onnx-int8`` embeds 1.37x torch's tokens/s when the two take turns
on the same texts (a sequential run on the loaded 2-core machine had shown 0.72x and 0.94x).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, missing_extra

BACKENDS = ("torch", "onnx", "onnx-int8")
"""``torch``: the model as sentence-transformers loads it. ``onnx``: the same weights in ONNX
Runtime (float32). ``onnx-int8``: int8 weights (see the module docstring)."""

_EXPORT_VERSION = 1  # bump when the export or quantisation settings change: caches are redone


def parse_backend(backend: str) -> str:
    key = str(backend).strip().lower()
    if key not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return key


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _fingerprint(model_dir: Path) -> str:
    """What the export depends on: the weights files (name, size, mtime) and the settings."""
    parts = [f"v{_EXPORT_VERSION}"]
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".json") and "onnx" not in p.parts:
            st = p.stat()
            parts.append(f"{p.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_dir(model_dir: Path) -> Path:
    """Where the exported files of ``model_dir`` live: ``<model_dir>/onnx`` when it can be
    written, else a directory of the vecstore cache named after the model's path."""
    beside = model_dir / "onnx"
    if os.access(beside if beside.exists() else model_dir, os.W_OK):
        return beside
    root = Path(os.environ.get("VECSTORE_CACHE", "~/.cache/vecstore")).expanduser()
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    return root / "onnx" / f"{model_dir.name}-{key}"


def _inputs_of(tokenizer: Any) -> list[str]:
    names = [n for n in getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])
             if n in ("input_ids", "attention_mask", "token_type_ids")]
    return names or ["input_ids", "attention_mask"]


def export(hf_model: Any, tokenizer: Any, model_dir: Path, quantized: bool) -> Path:
    """The ONNX file of ``hf_model`` (float32, or int8 weights), exported once and cached. A
    file is written under a temporary name and renamed into place, so processes exporting at
    the same time never read a half-written one."""
    import torch

    directory = cache_dir(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tag = _fingerprint(model_dir)
    fp32 = directory / f"vecstore-{tag}.onnx"
    int8 = directory / f"vecstore-{tag}-int8.onnx"
    names = _inputs_of(tokenizer)
    if not fp32.exists():

        class _Hidden(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *args: Any) -> Any:
                return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

        sample = tuple(torch.ones(2, 8, dtype=torch.long) if n != "token_type_ids"
                       else torch.zeros(2, 8, dtype=torch.long) for n in names)
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
        tmp = fp32.with_name(f".tmp-{os.getpid()}-{fp32.name}")
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Hidden(hf_model).eval(), sample, str(tmp), input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                              dynamo=False)
        os.replace(tmp, fp32)
    if not quantized:
        return fp32
    if not int8.exists():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_name(f".tmp-{os.getpid()}-{int8.name}")
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # onnxruntime logs advice on the root logger
        try:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
        finally:
            quiet.setLevel(level)
        os.replace(tmp, int8)
    return int8


def _ort_transformer(path: Path, config: Any, names: list[str], threads: int | None) -> Any:
    """A stand-in for a Hugging Face encoder (a torch Module, built here because torch is
    imported lazily): ``forward(input_ids, attention_mask, ...)`` returns
    ``{"last_hidden_state": tensor}`` computed by ONNX Runtime from the file at ``path``."""
    import onnxruntime as ort
    import torch

    class OrtTransformer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self.config = config
            self.path = path

        def forward(self, input_ids: Any = None, attention_mask: Any = None,
                    token_type_ids: Any = None, **_: Any) -> dict[str, Any]:
            given = {"input_ids": input_ids, "attention_mask": attention_mask,
                     "token_type_ids": token_type_ids if token_type_ids is not None
                     else torch.zeros_like(input_ids)}
            feed = {n: given[n].detach().cpu().numpy() for n in names}
            out = self.session.run(["last_hidden_state"], feed)[0]
            return {"last_hidden_state": torch.from_numpy(out).to(input_ids.device)}

    return OrtTransformer()


def use_onnx(st_model: Any, model_dir: Path, quantized: bool) -> Path:
    """Replace the transformer of ``st_model`` (a SentenceTransformer whose first module is a
    Transformer) by ONNX Runtime running its exported weights; returns the ONNX file."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise missing_extra("onnxruntime", "embed") from exc
    module = st_model[0]
    hf_model = getattr(module, "model", None)
    if hf_model is None or not hasattr(hf_model, "config"):
        raise InvalidArgumentError(
            f"the ONNX backend needs a Hugging Face transformer as the model's first module; "
            f"{type(module).__name__} is not one: use backend='torch'")
    names = _inputs_of(st_model.tokenizer)
    path = export(hf_model, st_model.tokenizer, model_dir, quantized)
    import torch

    module.model = _ort_transformer(path, hf_model.config, names, torch.get_num_threads())
    return path


__all__ = ["BACKENDS", "cache_dir", "export", "onnx_available", "parse_backend", "use_onnx"]
