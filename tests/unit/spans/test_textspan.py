"""TextSpan: known directions recovered in order, agreement with a loop oracle, the FAISS variant, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs_dist.core.errors import UserError
from ccs_dist.text.index import IndexConfig, TextIndex
from ccs_dist.decomposition.moments import HeadMoments
from ccs_dist.spans.textspan import textspan, textspan_heads, textspan_heads_prefiltered
from tests.support.reference_textspan import reference_textspan


def _unit(rng, n, e):
    x = rng.normal(size=(n, e))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _planted(seed=0, n=800, e=48, t=200, k=4):
    """Head data = sum of k pool texts with distinct variances (+ small noise, + an offset)."""
    rng = np.random.default_rng(seed)
    text = _unit(rng, t, e)
    planted = rng.choice(t, size=k, replace=False)
    scales = np.array([8.0, 4.0, 2.0, 1.0, 0.5][:k])
    coef = rng.normal(size=(n, k)) * scales
    data = coef @ text[planted] + 0.01 * rng.normal(size=(n, e)) + 0.5 * rng.normal(size=e)
    return data, text, planted


def test_recovers_planted_texts_in_order_of_variance():
    # Orthogonal planted directions make the answer unambiguous.
    rng = np.random.default_rng(3)
    e, t, k = 48, 200, 4
    q, _ = np.linalg.qr(rng.normal(size=(e, e)))
    text = _unit(rng, t, e)
    planted = [17, 101, 5, 150]
    text[planted] = q[:k]
    coef = rng.normal(size=(1000, k)) * np.array([8.0, 4.0, 2.0, 1.0])
    data = coef @ q[:k] + 0.01 * rng.normal(size=(1000, e)) + 0.3
    texts = [f"text {i}" for i in range(t)]
    res = textspan(data, text, texts, m=k, rank=20)
    assert list(res.indices) == planted
    assert res.texts == tuple(texts[i] for i in planted)
    assert np.all(np.diff(res.variances) < 0) and 0.99 < sum(res.variances) <= 1.0 + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_loop_oracle(seed):
    data, text, _ = _planted(seed, k=4)
    data = data + 0.3 * np.random.default_rng(seed + 100).normal(size=data.shape)
    rank = [5, 20, 48][seed % 3]
    ref_idx, ref_frac = reference_textspan(data, text, m=5, rank=rank)
    res = textspan(data, text, [str(i) for i in range(len(text))], m=5, rank=rank)
    assert list(res.indices) == ref_idx
    np.testing.assert_allclose(res.variances, ref_frac, rtol=1e-6, atol=1e-10)


def _same(a, b):
    assert a.indices == b.indices and a.texts == b.texts
    np.testing.assert_allclose(a.variances, b.variances, rtol=1e-9)


def test_batched_heads_equal_one_head_at_a_time():
    heads = [(_planted(s)[0]) for s in range(3)]
    text = _planted(0)[1]
    texts = [str(i) for i in range(len(text))]
    moments = HeadMoments.from_data(np.stack(heads))
    batched = textspan_heads(moments, text, texts, m=5, rank=16)
    for h, res in zip(heads, batched):
        _same(res, textspan(h, text, texts, m=5, rank=16))
    # Streaming the statistics in pieces gives the same statistics.
    streamed = HeadMoments(3, text.shape[1])
    for lo in range(0, 800, 300):
        streamed.update(np.stack(heads)[:, lo : lo + 300])
    torch.testing.assert_close(streamed.gram_GEE, moments.gram_GEE)
    for a, b in zip(textspan_heads(streamed, text, texts, m=5, rank=16, max_chunk_bytes=1), batched):
        _same(a, b)


def test_faiss_prefiltered_variant_returns_the_exact_answer():
    data, text, planted = _planted(7, t=5000, e=48, k=5)
    texts = [str(i) for i in range(len(text))]
    moments = HeadMoments.from_data(data[None])
    exact = textspan_heads(moments, text, texts, m=5, rank=20)
    assert set(exact[0].indices) == set(planted.tolist())
    for cfg in (IndexConfig(), IndexConfig(ivf_threshold=1000, nprobe=16)):
        index = TextIndex.build(text.astype(np.float32), cfg)
        assert index.kind == ("flat" if cfg.ivf_threshold > 5000 else "ivf")
        _same(textspan_heads_prefiltered(moments, index, text, texts, m=5, rank=20)[0], exact[0])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"rank": 49}, "rank=49 is out of range"), ({"rank": 0}, "rank=0"), ({"m": 201}, "pool of 200 texts"), ({"m": 0}, "m=0")],
)
def test_bad_parameters(kwargs, fragment):
    data, text, _ = _planted(0)
    with pytest.raises(UserError, match=fragment):
        textspan(data, text, [str(i) for i in range(len(text))], **{"m": 5, "rank": 10, **kwargs})


def _low_rank(seed=0, n=300, e=64, k=12):
    """fp32 data on an affine subspace: k random directions plus a constant offset (rank k + 1)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(e, k + 1)))[0].T
    coef = rng.normal(size=(n, k)) * np.linspace(3.0, 0.3, k)
    return (coef @ basis[:k] + 2.0 * basis[k]).astype(np.float32), _unit(rng, 400, e)


def test_numerical_rank_finds_the_affine_dimension_and_caps_the_requested_rank():
    from ccs_dist.spans.textspan import numerical_rank

    data, text = _low_rank()
    moments = HeadMoments.from_data(data[None])
    assert numerical_rank(moments, "fp32").tolist() == [13]
    assert numerical_rank(HeadMoments.from_data(np.random.default_rng(1).normal(size=(1, 300, 64))), "fp32").tolist() == [64]
    texts = [str(i) for i in range(len(text))]
    capped = textspan(data, text, texts, m=5, rank=40)
    assert capped.rank == 13
    # Capping by zeroed columns is exactly TextSpan at that rank.
    _same(capped, textspan(data, text, texts, m=5, rank=13, rank_policy="reference"))
    # The reference policy keeps the requested rank (rounding-noise directions included).
    assert textspan(data, text, texts, m=5, rank=40, rank_policy="reference").rank == 40
    with pytest.raises(UserError, match="rank_policy"):
        textspan(data, text, texts, rank=10, rank_policy="loose")


@pytest.mark.parametrize("seed", range(3))
def test_reference_policy_matches_the_loop_oracle(seed):
    data, text, _ = _planted(seed, k=4)
    data = data + 0.3 * np.random.default_rng(seed + 100).normal(size=data.shape)
    ref_idx, ref_frac = reference_textspan(data, text, m=5, rank=30)
    res = textspan(data, text, [str(i) for i in range(len(text))], m=5, rank=30, rank_policy="reference")
    assert list(res.indices) == ref_idx and res.rank == 30
    np.testing.assert_allclose(res.variances, ref_frac, rtol=1e-6, atol=1e-10)


def test_streamed_moments_are_those_of_heads_over_the_embedding_norm():
    """TextSpan sees each head term divided by its image's embedding norm, as the reference does."""
    from ccs_dist.spans.textspan import stream_moments

    rng = np.random.default_rng(3)
    n_layers, n_heads, e = 2, 3, 8
    shards = {f"s{i}": {"heads": rng.normal(size=(n, n_layers, n_heads, e)).astype(np.float32),
                        "embedding": (rng.normal(size=(n, e)) * rng.uniform(0.5, 4.0, size=(n, 1))).astype(np.float32)}
              for i, n in enumerate((5, 4))}

    class Artifact:
        manifest = {"layers": list(range(n_layers)), "num_heads": n_heads, "embed_dim": e}
        shard_names = list(shards)

        @staticmethod
        def load_shard(name):
            return shards[name]

    heads_NGE = np.concatenate([s["heads"].reshape(len(s["heads"]), -1, e) for s in shards.values()])
    norms_N = np.concatenate([np.linalg.norm(s["embedding"], axis=-1) for s in shards.values()])
    want = HeadMoments.from_data(torch.from_numpy(heads_NGE / norms_N[:, None, None]).transpose(0, 1))
    got, _ = stream_moments(Artifact())
    assert got.count == want.count == 9
    torch.testing.assert_close(got.sum_GE, want.sum_GE, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.gram_GEE, want.gram_GEE, rtol=1e-5, atol=1e-6)
    raw, _ = stream_moments(Artifact(), normalise=False)
    assert not torch.allclose(raw.gram_GEE, want.gram_GEE)  # the division is not a no-op on this data
