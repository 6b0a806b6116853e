"""Sentence-transformers models run by onnxruntime: exported once, checked, cached by the model files' hash.

The same model, a faster way to run it: the sentence-transformers module chain (transformer, pooling,
normalization) is traced to ONNX once with torch, and its tokenizer is saved beside it as the fast
tokenizer that sentence-transformers itself calls. Before the export is used, both run on probe texts
(single and batched, so padding is covered too) and must agree to within float tolerance; an export that
does not agree is recorded as refused and the backend keeps running the model with torch.

Measured on all-MiniLM-L6-v2, one short query on one thread: about a third of the CPU time of
sentence-transformers' ``encode`` (bench/cache_latency.py), and serving needs neither torch nor
sentence-transformers once the export is cached.

Cache layout: ``<home>/onnx/<digest>/{model.onnx, tokenizer.json, meta.json}``, where the digest covers
every model file's path and content and :data:`EXPORT_VERSION`. ``refused.txt`` there says why an export
was not used. Workers starting together take turns through a file lock, so only one exports.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("llmdock.backends")

EXPORT_VERSION = 1  # part of the cache key: change it when the export recipe changes
TOLERANCE = 1e-4  # largest difference allowed between an exported and the original embedding, per dimension
PROBES = [
    "What is the capital of Italy?",
    "  Leading and trailing spaces, UPPER and lower case  ",
    "naïve café — ünïcödé, 日本語のテキスト, emoji 🙂",
    "",
    "a long text past the model's window " * 80,
]


def model_digest(path: Path) -> str:
    """A hash of every file of the model (relative path and content) and of the export recipe."""
    h = hashlib.sha256(f"llmdock-onnx-export-{EXPORT_VERSION}\0".encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        with f.open("rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()[:32]


class OnnxSentenceEncoder:
    """An exported model and its tokenizer: ``encode`` gives what sentence-transformers' ``encode`` gives."""

    def __init__(self, directory: Path, threads: int, model_file: str = "model.onnx") -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((directory / "meta.json").read_text())
        self.max_seq_length = int(meta["max_seq_length"])
        self.dimensions = int(meta["dimensions"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / model_file), opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        # Truncated to the model's window and padded to the longest text of a batch, as
        # sentence-transformers does; a second copy without truncation counts every token of a text.
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.counter = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()

    def encode(self, texts: list[str], batch_size: int) -> tuple[np.ndarray, int]:
        """(embeddings as float32 rows in the order of ``texts``, tokens in all texts)."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        tokens = 0
        # Longest first, as sentence-transformers batches: texts of a batch pad to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            arrays = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            (vectors,) = self.session.run(None, {name: arrays[name] for name in self.input_names})
            out[chunk] = vectors
            for i, e in zip(chunk, encodings, strict=True):
                tokens += self.count_tokens(texts[i]) if e.overflowing else sum(e.attention_mask)
        return out, tokens

    def count_tokens(self, text: str) -> int:
        return len(self.counter.encode(text).ids)


def load_or_export(model_path: Path, cache_root: Path, threads: int) -> OnnxSentenceEncoder | None:
    """The ONNX encoder for ``model_path``, exporting it first if no export is cached.

    None if this model's export was refused (it did not match sentence-transformers, or could not be
    traced); the reason is logged and kept in ``refused.txt`` so the export is not retried at every start.
    """
    directory = cache_root / model_digest(model_path)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be exporting the same model right now
        refused = directory / "refused.txt"
        if refused.exists():
            log.warning("%s: using torch, ONNX export refused earlier: %s", model_path, refused.read_text())
            return None
        if not (directory / "model.onnx").exists():
            t0 = time.monotonic()
            log.info("exporting %s to ONNX once (cached in %s)", model_path, directory)
            try:
                _export(model_path, directory)
            except (OSError, ImportError) as exc:  # the machine, not the model: try again at the next start
                log.warning("%s: ONNX export failed, using torch this time: %s", model_path, exc)
                return None
            except Exception as exc:  # a model that cannot be traced, or not faithfully: it runs with torch
                refused.write_text(f"{type(exc).__name__}: {exc}")
                log.warning("%s: ONNX export refused, using torch: %s", model_path, refused.read_text())
                return None
            log.info("exported %s to ONNX in %.1f s", model_path, time.monotonic() - t0)
        return OnnxSentenceEncoder(directory, threads)


def _export(model_path: Path, directory: Path) -> None:
    """Trace the model to ``directory``; raise if the export does not reproduce sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    model = SentenceTransformer(str(model_path), device="cpu").eval()
    hf_tokenizer: Any = model.tokenizer
    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    max_seq_length = int(model.max_seq_length or hf_tokenizer.model_max_length)
    tokenizer.enable_truncation(max_seq_length)
    tokenizer.enable_padding(
        direction=getattr(hf_tokenizer, "padding_side", "right"),
        pad_id=int(hf_tokenizer.pad_token_id or 0),
        pad_token=str(hf_tokenizer.pad_token or "[PAD]"),
    )
    names = [
        n for n in ("input_ids", "attention_mask", "token_type_ids") if n in hf_tokenizer.model_input_names
    ]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise ValueError(f"unsupported tokenizer inputs {hf_tokenizer.model_input_names}")

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(dict(zip(names, inputs, strict=True)))["sentence_embedding"]
            return out

    example = tokenizer.encode_batch(PROBES[:2])
    columns = {
        "input_ids": [e.ids for e in example],
        "attention_mask": [e.attention_mask for e in example],
        "token_type_ids": [e.type_ids for e in example],
    }
    args = tuple(torch.tensor(columns[n], dtype=torch.int64) for n in names)
    partial = directory / f"model.onnx.{os.getpid()}.partial"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python control flow: checked below
            torch.onnx.export(
                Forward(),
                args,
                str(partial),
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "sequence"} for n in names},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        expected = np.asarray(
            model.encode(PROBES, convert_to_numpy=True, show_progress_bar=False), np.float32
        )
        tokenizer.save(str(directory / "tokenizer.json"))
        meta = {"max_seq_length": max_seq_length, "dimensions": expected.shape[1], "source": str(model_path)}
        (directory / "meta.json").write_text(json.dumps(meta))
        _check(OnnxSentenceEncoder(directory, threads=1, model_file=partial.name), expected)
        os.replace(partial, directory / "model.onnx")  # its existence says the export is complete
    finally:
        partial.unlink(missing_ok=True)


def _check(encoder: OnnxSentenceEncoder, expected: np.ndarray) -> None:
    """Raise unless ``encoder`` gives the ``expected`` embeddings of PROBES, one at a time and batched."""
    batched, _ = encoder.encode(PROBES, batch_size=len(PROBES))
    single = np.concatenate([encoder.encode([t], batch_size=1)[0] for t in PROBES])
    worst = float(max(np.abs(batched - expected).max(), np.abs(single - expected).max()))
    if not worst <= TOLERANCE:
        raise ValueError(f"the export differs from sentence-transformers by up to {worst:.2e}")
