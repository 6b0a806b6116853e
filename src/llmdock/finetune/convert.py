"""HF weights → GGUF with the conversion code of the llama.cpp that llmdock serves with, then quantize.

The pinned ``llama-cpp-python`` (0.3.36) vendors llama.cpp; its source distribution carries
``convert_hf_to_gguf.py``, the ``conversion/`` package it imports and ``gguf-py`` (gguf 0.19.0, the same as the
``gguf`` package on PyPI). The wheel does not, so the sdist of exactly the installed version is fetched once
with pip (``pip download llama-cpp-python==VERSION --no-binary :all:``) and those files are extracted to
``<venv>/share/llmdock/llama.cpp-VERSION/`` (``<home>/tools/`` when the venv is read-only), staged and renamed:
the converter always matches the llama.cpp that will load its output. ``make install`` does it
(``llmdock finetune converter``). The conversion runs in a subprocess with that ``gguf-py`` first on the path.

Quantizing goes through llama.cpp's own quantizer (``llama_model_quantize``), as ``llama-quantize`` does.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path

from llmdock.errors import LlmdockError
from llmdock.finetune.progress import status

SCRIPT = "convert_hf_to_gguf.py"
LORA_SCRIPT = "convert_lora_to_gguf.py"  # a peft adapter → a GGUF LoRA llama.cpp applies on the base
SDIST_ONLY = ("--no-binary", ":all:", "--no-deps", "-d")
WANTED = (SCRIPT, LORA_SCRIPT, "conversion/", "gguf-py/", "LICENSE")


class ExportFailed(LlmdockError):
    status = 500
    code = "export_failed"
    type = "server_error"


def llama_cpp_version() -> str:
    return installed_version("llama-cpp-python")


def converter_candidates(home: Path) -> list[Path]:
    name = f"llama.cpp-{llama_cpp_version()}"
    return [Path(sys.prefix) / "share" / "llmdock" / name, Path(home).expanduser() / "tools" / name]


def find_converter(home: Path) -> Path | None:
    scripts = (SCRIPT, LORA_SCRIPT)
    return next((c for c in converter_candidates(home) if all((c / n).exists() for n in scripts)), None)


def ensure_converter(home: Path) -> Path:
    """The directory holding the converter for the installed llama-cpp-python, fetched once when missing."""
    found = find_converter(home)
    if found is not None:
        return found
    for target in converter_candidates(home):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.access(target.parent, os.W_OK):
                return _fetch(target)
        except OSError:
            continue
    raise ExportFailed(
        f"no writable place for the converter: {', '.join(map(str, converter_candidates(home)))}"
    )


def _fetch(target: Path) -> Path:
    version = llama_cpp_version()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".incoming-") as tmp:
        with status(f"fetching llama-cpp-python {version}'s source for its GGUF converter (once)"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    f"llama-cpp-python=={version}",
                    *SDIST_ONLY,
                    tmp,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise ExportFailed(
                f"pip could not fetch llama-cpp-python=={version}'s sdist: {_tail(done.stderr)}"
            )
        staged = Path(tmp) / "tools"
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdists[0]) as tar:
            members = [
                m.replace(name=m.name.removeprefix(prefix))
                for m in tar.getmembers()
                if m.name.startswith(prefix) and m.name.removeprefix(prefix).startswith(WANTED)
            ]
            tar.extractall(staged, members=members, filter="data")
        if not (staged / SCRIPT).exists():
            raise ExportFailed(f"{sdists[0].name} holds no vendor/llama.cpp/{SCRIPT}")
        with sdists[0].open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        source = {
            "package": "llama-cpp-python",
            "version": version,
            "sdist": sdists[0].name,
            "sha256": digest,
        }
        (staged / "SOURCE.json").write_text(json.dumps(source, indent=2))
        if target.exists() and not (target / LORA_SCRIPT).exists():  # extracted before the LoRA script was
            shutil.rmtree(target)
        try:
            os.replace(staged, target)
        except OSError:  # fetched by another process meanwhile
            if not (target / SCRIPT).exists():
                raise
    return target


def converter_source(tools: Path) -> dict[str, str]:
    """Which sdist the converter came from (recorded in the lineage of what it converts)."""
    try:
        data = json.loads((tools / "SOURCE.json").read_text())
    except (OSError, ValueError):
        return {"version": llama_cpp_version()}
    return {str(k): str(v) for k, v in data.items()}


def convert_to_gguf(hf_dir: Path, out: Path, tools: Path) -> None:
    """``convert_hf_to_gguf.py hf_dir --outtype f16`` with the sdist's own gguf-py."""
    _run_script(tools, SCRIPT, [str(hf_dir)], out, "to GGUF (f16)")


def convert_lora_to_gguf(adapter_dir: Path, base_hf_dir: Path, out: Path, tools: Path) -> None:
    """``convert_lora_to_gguf.py adapter --base base_hf_dir --outtype f16``: a GGUF LoRA for llama.cpp."""
    _run_script(
        tools, LORA_SCRIPT, [str(adapter_dir), "--base", str(base_hf_dir)], out, "the adapter to a GGUF LoRA"
    )


def _run_script(tools: Path, script: str, args: list[str], out: Path, what: str) -> None:
    """One of llama.cpp's conversion scripts, in a subprocess with the sdist's gguf-py first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tools / "gguf-py"), str(tools)]))
    with status(f"converting {what} with llama.cpp {llama_cpp_version()}'s {script}"):
        done = subprocess.run(
            [sys.executable, str(tools / script), *args, "--outfile", str(out), "--outtype", "f16"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if done.returncode != 0 or not out.exists():
        raise ExportFailed(f"{script} failed (exit {done.returncode}): {_tail(done.stderr)}")


FTYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
FTYPES |= {"q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}


def quantize(source: Path, out: Path, kind: str) -> str:
    """llama.cpp's quantizer (``llama_model_quantize``) from an f16 GGUF to ``kind``; returns its last note.

    The quantizer logs every tensor on stderr (file descriptor 2, from C); that is kept in a temporary file
    and only its summary (how many tensors fell back to another type) is returned, or its tail on failure.
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[kind])
    params.nthread = os.cpu_count() or 1
    llama_cpp.llama_backend_init()
    with (
        status(f"quantizing to {kind.upper()} with llama.cpp's quantizer"),
        tempfile.TemporaryFile("w+") as log,
    ):
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(log.fileno(), 2)
        try:
            rc = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read()
    if rc != 0 or not out.exists():
        raise ExportFailed(f"llama_model_quantize to {kind} failed (return code {rc}): {_tail(text)}")
    notes = [
        line.split("WARNING:", 1)[1].strip() for line in text.splitlines() if "fallback quantization" in line
    ]
    return notes[-1] if notes else ""


def _tail(text: str, lines: int = 6) -> str:
    return (
        " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip()) or "no output"
    )
