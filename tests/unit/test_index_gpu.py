"""Index builds on CUDA devices (``gpu=``, faiss-gpu): which kinds have GPU stages, the errors
when a build insists on a GPU it cannot have (nothing is written then), and, on a device, that
the GPU build finds what the CPU build finds.

The ``gpu``-marked tests run only where torch sees a CUDA device (tests/conftest.py) and faiss-gpu
is installed (``pip install 'vecstore[gpu]'``)."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore
from vecstore.errors import InvalidArgumentError, MissingDependencyError
from vecstore.index import INDEX_KINDS, build_index, index_class
from vecstore.index.base import cuda_devices

GPU_KINDS = ("ivf", "ivf-pq", "ivf-rabitq", "binary-ivf", "ivf-binary")
DIM = 64


def _clustered(rng: np.random.Generator, n: int, centers: int = 40) -> np.ndarray:
    c = rng.standard_normal((centers, DIM)).astype(np.float32)
    return (c[rng.integers(0, centers, n)] + 0.5 * rng.standard_normal((n, DIM))).astype(np.float32)


def test_the_ivf_kinds_have_gpu_stages_and_the_graphs_do_not() -> None:
    assert {k for k in INDEX_KINDS if index_class(k).gpu_build} == set(GPU_KINDS)


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-int8", "faiss-hnsw", "flat"])
def test_insisting_on_a_gpu_for_a_kind_without_gpu_stages_names_those_that_have_them(
        kind: str, rng: np.random.Generator) -> None:
    with pytest.raises(InvalidArgumentError, match="'ivf-binary'"):
        build_index(kind, rng.standard_normal((200, DIM)), "cosine", gpu=True)
    # the default and False build it on the CPU
    assert len(build_index(kind, rng.standard_normal((200, DIM)), "cosine", gpu=False)) == 200


@pytest.mark.parametrize("gpu", ["yes", 1, 0.0])
def test_gpu_is_true_false_or_none(gpu: object, rng: np.random.Generator) -> None:
    with pytest.raises(InvalidArgumentError, match="gpu must be True, False or None"):
        build_index("ivf", rng.standard_normal((500, DIM)), "cosine", gpu=gpu)


def test_the_default_uses_a_gpu_exactly_when_faiss_sees_one() -> None:
    for kind in INDEX_KINDS:
        cls = index_class(kind)
        assert cls.resolve_gpu(None) is (cls.gpu_build and cuda_devices() > 0)
        assert cls.resolve_gpu(False) is False


@pytest.mark.skipif(cuda_devices() > 0, reason="FAISS sees a CUDA device here")
@pytest.mark.parametrize("kind", ["ivf", "ivf-binary"])
def test_insisting_on_a_gpu_without_one_fails_before_anything_is_written(
        kind: str, tmp_path, rng: np.random.Generator) -> None:
    # faiss-cpu: the error names the extra; faiss-gpu on a machine without a device: says so
    expected = MissingDependencyError if cuda_devices() < 0 else InvalidArgumentError
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)
    x = _clustered(rng, 3000)
    tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(x)])
    before = tbl.version
    with pytest.raises(expected, match=r"vecstore\[gpu\]|no CUDA device"):
        tbl.create_index(kind, gpu=True)
    assert tbl.version == before and tbl.list_indexes() == []
    assert not list((tbl.path / "indexes").glob("*"))
    hits = tbl.search(x[7]).limit(1).to_list()
    assert hits[0]["id"] == "7"
    tbl.create_index(kind, gpu=False)  # the same call on the CPU builds
    assert tbl.list_indexes()[0]["kind"] == kind


@pytest.mark.gpu
@pytest.mark.parametrize("kind", GPU_KINDS)
def test_a_gpu_build_finds_what_the_cpu_build_finds(kind: str, rng: np.random.Generator) -> None:
    if cuda_devices() <= 0:
        pytest.skip("faiss-gpu is not installed: pip install 'vecstore[gpu]'")
    both = _clustered(rng, 40_200)
    x, q = both[:40_000], both[40_000:]
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    truth = np.argsort(-(unit(q) @ unit(x).T), axis=1)[:, :10]
    cpu = build_index(kind, x, "cosine", gpu=False)
    gpu = build_index(kind, x, "cosine", gpu=True)
    assert gpu.nlist == cpu.nlist and len(gpu) == len(cpu) == 40_000
    effort = cpu.effort_for(10)
    # binary kinds propose candidates for rescoring: count the true top 10 among 8 x 10 of them
    fetch = 10 if kind in ("ivf", "ivf-pq", "ivf-rabitq") else 80
    found = {}
    for name, index in (("cpu", cpu), ("gpu", gpu)):  # both searched on the CPU, with one effort
        labels = index.search(q, fetch, effort=effort)[1]
        found[name] = float(np.mean([np.isin(t, c).mean() for t, c in zip(truth, labels, strict=True)]))
    assert found["gpu"] >= found["cpu"] - 0.03, (kind, found)
    assert found["gpu"] >= 0.8, (kind, found)


@pytest.mark.gpu
def test_a_gpu_ivf_binary_build_assigns_every_row_to_its_nearest_centroid(rng: np.random.Generator) -> None:
    if cuda_devices() <= 0:
        pytest.skip("faiss-gpu is not installed: pip install 'vecstore[gpu]'")
    x = _clustered(rng, 30_000)
    index = build_index("ivf-binary", x, "cosine", gpu=True, nprobe=8, rerank=4)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    lists = np.repeat(np.arange(index.nlist), np.diff(index.offsets))
    assigned = np.empty(len(index), dtype=np.int64)
    assigned[index.labels] = lists
    closeness = unit @ index.centroids.T
    nearest = np.argmax(closeness, axis=1)
    # float order on the device may flip near-ties only
    differ = assigned != nearest
    gap = closeness[np.arange(len(x)), nearest] - closeness[np.arange(len(x)), assigned]
    assert np.all(gap[differ] < 1e-4)


@pytest.mark.parametrize("kind", GPU_KINDS)
def test_the_gpu_stages_plumbing_with_cpu_copies_standing_in_for_device_copies(
        kind: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no device is, what a GPU build does besides copying to one: FAISS's k-means through a
    separate clustering index, rows assigned through a swapped-in quantizer copy, the IVF's own
    quantizer put back (saved and searched) afterwards. Copies made with ``clone_index`` stand in
    for the device copies; the index must come out as the CPU build's."""
    import faiss

    from vecstore.index import _faiss

    copies: list[object] = []

    def on_cpu(index: object) -> object:
        copies.append(faiss.clone_index(index))
        return copies[-1]

    x = _clustered(rng, 6000)
    plain = build_index(kind, x, "cosine", gpu=False, nprobe=4)
    monkeypatch.setattr(_faiss, "on_gpus", on_cpu)
    monkeypatch.setattr(index_class(kind), "resolve_gpu", classmethod(lambda cls, gpu: True))
    built = build_index(kind, x, "cosine", nprobe=4)
    assert copies, "no GPU stage ran"
    q = x[:50] + 0.01
    np.testing.assert_array_equal(built.search(q, 10, effort=4)[1], plain.search(q, 10, effort=4)[1])
