"""The model catalog: GGUF headers, cached digests, broken files, recommendations."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app import cli_models
from app.devtools.testmodels import TINY, write_model
from app.engine import catalog
from app.engine.catalog import (
    HASH_CACHE_NAME,
    RECOMMENDED,
    ModelCatalog,
    find_recommended,
    hf_url,
    read_model_info,
)
from app.engine.errors import ModelNotFoundError, NotGGUFError, TruncatedModelError
from app.engine.gguf_file import check_gguf


def tiny_parameter_count() -> int:
    """What write_model writes for TINY, counted from its shapes by hand."""
    e, ff, kv = TINY.n_embd, TINY.n_ff, TINY.n_embd // TINY.n_head * TINY.n_head_kv
    per_layer = 2 * e + 2 * e * e + 2 * kv * e + 3 * ff * e
    return 2 * 259 * e + e + TINY.n_layer * per_layer


def test_header_of_the_generated_model(tiny_model: Path) -> None:
    info = read_model_info(tiny_model)
    assert info.architecture == "llama"
    assert info.name == "soloist-test"
    assert info.context_length == TINY.n_ctx_train
    assert info.parameters == tiny_parameter_count()
    assert info.quantisation == "F32"  # write_model's file type 0
    assert info.has_chat_template is True
    assert info.file_size == tiny_model.stat().st_size
    assert info.sha256 is None  # no full read unless asked
    assert info.path == str(tiny_model)


def test_header_agrees_with_gguf_reader(tiny_model: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(tiny_model))
    info = read_model_info(tiny_model)
    assert info.parameters == sum(int(t.n_elements) for t in reader.tensors)
    assert info.context_length == check_gguf(tiny_model).context_length


def test_model_without_template_and_f16(tmp_path: Path, tiny_model_no_template: Path) -> None:
    assert read_model_info(tiny_model_no_template).has_chat_template is False
    f16 = write_model(tmp_path / "f16.gguf", f16=True, chat_template=None, name="half")
    info = read_model_info(f16)
    assert (info.quantisation, info.name, info.parameters) == (
        "F16",
        "half",
        tiny_parameter_count(),
    )


def test_quantisation_falls_back_to_the_majority_weight_type(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "nofiletype.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(4096)
    writer.add_tensor("a.weight", np.zeros((64, 32), dtype=np.float16))
    writer.add_tensor("b.weight", np.zeros((64, 32), dtype=np.float16))
    writer.add_tensor("norm.weight", np.zeros(10_000, dtype=np.float32))  # 1-D: not counted
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_model_info(path)
    assert (info.architecture, info.quantisation) == ("qwen2", "F16")
    assert (info.context_length, info.parameters, info.name) == (
        4096,
        2 * 64 * 32 + 10_000,
        "nofiletype",
    )


def test_hash_reads_the_whole_file(tiny_model: Path) -> None:
    expected = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert read_model_info(tiny_model, hash=True).sha256 == expected


def _broken_files(folder: Path, good: Path) -> dict[str, type[Exception]]:
    data = good.read_bytes()
    (folder / "notes.gguf").write_text("not a model at all")
    (folder / "half.gguf").write_bytes(data[: len(data) // 2])  # tensors cut off
    (folder / "header.gguf").write_bytes(data[:200])  # header cut off
    (folder / "empty.gguf").write_bytes(b"")
    return {
        "notes.gguf": NotGGUFError,
        "half.gguf": TruncatedModelError,
        "header.gguf": TruncatedModelError,
        "empty.gguf": NotGGUFError,
    }


def test_broken_files_raise_the_same_typed_errors_as_check_gguf(
    tmp_path: Path, tiny_model: Path
) -> None:
    for name, error in _broken_files(tmp_path, tiny_model).items():
        with pytest.raises(error):
            read_model_info(tmp_path / name)
        with pytest.raises(error):
            check_gguf(tmp_path / name)
    with pytest.raises(ModelNotFoundError, match="No model file"):
        read_model_info(tmp_path / "missing.gguf")


def test_scan_lists_models_and_reports_broken_files(tmp_path: Path, tiny_model: Path) -> None:
    shutil.copy(tiny_model, tmp_path / "tiny.gguf")
    (tmp_path / "tiny.gguf.part").write_bytes(b"partial download")  # not listed
    (tmp_path / "readme.txt").write_text("not listed")
    expected = _broken_files(tmp_path, tiny_model)
    scan = ModelCatalog(tmp_path).scan()
    assert [Path(m.path).name for m in scan.models] == ["tiny.gguf"]
    assert {Path(b.path).name: b.error for b in scan.broken} == {
        name: error.__name__ for name, error in expected.items()
    }
    half = next(b for b in scan.broken if b.path.endswith("half.gguf"))
    assert "cut short" in half.reason and "\n" not in half.reason


def test_sha256_is_cached_and_recomputed_only_when_the_file_changes(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "tiny.gguf"
    shutil.copy(tiny_model, model)
    first = ModelCatalog(tmp_path).scan(hash=True).models[0].sha256
    assert first == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (
        json.loads((tmp_path / HASH_CACHE_NAME).read_text())["files"]["tiny.gguf"]["sha256"]
        == first
    )

    calls: list[Path] = []
    real = catalog.sha256_file

    def counting(path: str | Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(catalog, "sha256_file", counting)
    again = ModelCatalog(tmp_path)
    assert again.scan(hash=True).models[0].sha256 == first
    assert again.scan().models[0].sha256 == first  # cached digests shown without hash=True
    assert again.sha256(model) == first
    assert calls == []

    with model.open("ab") as fh:
        fh.write(b"\0" * 32)  # same header, different file
    os.utime(model, ns=(1, 1))
    assert again.scan().models[0].sha256 is None  # stale: not shown
    assert again.sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    assert calls == [model]


def test_cache_survives_garbage_and_forgets_removed_files(tmp_path: Path, tiny_model: Path) -> None:
    shutil.copy(tiny_model, tmp_path / "a.gguf")
    shutil.copy(tiny_model, tmp_path / "b.gguf")
    (tmp_path / HASH_CACHE_NAME).write_text("{not json")
    models = ModelCatalog(tmp_path)
    assert all(m.sha256 for m in models.scan(hash=True).models)
    (tmp_path / "b.gguf").unlink()
    models.scan()
    files = json.loads((tmp_path / HASH_CACHE_NAME).read_text())["files"]
    assert list(files) == ["a.gguf"]


def test_record_sha256_is_trusted_until_the_file_changes(tmp_path: Path, tiny_model: Path) -> None:
    model = tmp_path / "tiny.gguf"
    shutil.copy(tiny_model, model)
    models = ModelCatalog(tmp_path)
    models.record_sha256(model, "AB" * 32)
    assert models.scan().models[0].sha256 == "ab" * 32


def test_missing_folder_is_an_empty_catalog(tmp_path: Path) -> None:
    scan = ModelCatalog(tmp_path / "nowhere").scan(hash=True)
    assert scan.models == () and scan.broken == ()


# --- recommended models ------------------------------------------------------


def test_recommended_entries_are_well_formed() -> None:
    keys = [m.key for m in RECOMMENDED]
    assert len(keys) == len(set(keys)) >= 5
    for m in RECOMMENDED:
        assert m.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", m.sha256), m.name
        assert m.size_bytes is None or 100_000_000 < m.size_bytes < 4_000_000_000, m.name
        assert m.repo.count("/") == 1 and m.filename.endswith(".gguf")
        assert m.quantisation.lower() in m.filename.lower()
        assert m.url == f"https://huggingface.co/{m.repo}/resolve/main/{m.filename}"
        assert m.verified == (m.sha256 is not None)
        assert m.licence and m.notes and m.context_length >= 8192


def test_find_recommended_by_key_name_or_file() -> None:
    first = RECOMMENDED[0]
    assert find_recommended(first.key) is first
    assert find_recommended(first.name.upper()) is first
    assert find_recommended(first.filename) is first
    assert find_recommended("no-such-model") is None


def test_hf_url() -> None:
    assert hf_url("org/repo", "dir/m.gguf", "abc123") == (
        "https://huggingface.co/org/repo/resolve/abc123/dir/m.gguf"
    )


# --- the `soloist models list / recommended` commands --------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_models.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["models", *argv])


def test_cli_list_json(
    soloist_home: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = soloist_home / "models"
    folder.mkdir()
    shutil.copy(tiny_model, folder / "tiny.gguf")
    (folder / "bad.gguf").write_text("nope")
    assert cli_models.run(_args("list", "--json", "--hash")) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc["models_dir"] == str(folder)
    [model] = doc["models"]
    assert (model["architecture"], model["parameters"]) == ("llama", tiny_parameter_count())
    assert model["sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert [b["error"] for b in doc["broken"]] == ["NotGGUFError"]


def test_cli_list_text_and_recommended(
    soloist_home: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_models.run(_args("list")) == 0
    assert "No models in" in capsys.readouterr().out
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(tiny_model, other / "tiny.gguf")
    assert cli_models.run(_args("--dir", str(other), "list")) == 0
    line = capsys.readouterr().out
    assert "tiny.gguf" in line and "llama" in line and "F32" in line and "2,048 context" in line
    assert cli_models.run(_args("recommended")) == 0
    out = capsys.readouterr().out
    assert all(m.key in out for m in RECOMMENDED)
    assert cli_models.run(_args("recommended", "--json")) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(RECOMMENDED)
