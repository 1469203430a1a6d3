"""Paired bootstrap (``autotts_jax.experiments.paired``): properties on synthetic paired data and
agreement with a plain loop bootstrap that uses the same draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotts_jax.experiments import paired as P


def _curve(correct, tokens=None, point=0) -> P.Curve:
    correct = np.asarray(correct, dtype=bool)
    if tokens is None:
        tokens = np.full(correct.shape, 1000, dtype=np.int64)
    return P.Curve(correct, np.asarray(tokens, dtype=np.int64), point)


def _correlated(seed: int, n_seeds=20, n_q=30, gap=0.05):
    """Per-question difficulty shared by both controllers (positively correlated outcomes);
    ``a`` is better by about ``gap``."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, n_q)
    u = rng.random((n_seeds, n_q))
    a = u < np.clip(p + gap, 0, 1)
    b = u < p
    return a[None], b[None]


def test_identical_controllers_give_a_zero_interval() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((3, 10, 30)) < 0.4
    tokens = rng.integers(1000, 50000, (3, 10, 30))
    tokens[0] //= 10
    tokens[1] //= 3
    a = _curve(correct, tokens, point=2)
    b = _curve(correct, tokens, point=2)
    anchor = {"low": 2000.0, "high": 40000.0}
    rows = P.compare_pair({"m/x": a}, {"m/x": b}, anchors={"m/x": anchor}, samples=300,
                          seed=3, metrics=("accuracy", "matched_budget"))
    for r in rows:
        assert (r["difference"], r["ci_low"], r["ci_high"], r["p_above_zero"]) == (0, 0, 0, 0)
        assert r["unpaired_ci_low"] < 0 < r["unpaired_ci_high"]
    one = P.compare_pair({"m/x": _curve(correct[:1], tokens[:1])},
                         {"m/x": _curve(correct[:1], tokens[:1])},
                         metrics=("token_ratio",), samples=100, seed=0)[0]
    assert (one["difference"], one["ci_low"], one["ci_high"]) == (0, 0, 0)


def test_paired_interval_is_narrower_for_correlated_data() -> None:
    a, b = _correlated(1)
    r = P.compare_pair({"m/x": _curve(a)}, {"m/x": _curve(b)}, metrics=("accuracy",),
                       samples=1000, seed=0)[0]
    paired = r["ci_high"] - r["ci_low"]
    unpaired = r["unpaired_ci_high"] - r["unpaired_ci_low"]
    assert paired < 0.5 * unpaired
    assert r["ci_low"] <= r["difference"] <= r["ci_high"]
    # the marginal intervals of each controller are wide: the question sample dominates
    assert r["a_ci_high"] - r["a_ci_low"] > paired


def test_p_above_zero_when_a_dominates() -> None:
    a, b = _correlated(2, gap=0.2)
    assert np.all(a >= b)  # a is right wherever b is
    r = P.compare_pair({"m/x": _curve(a)}, {"m/x": _curve(b)}, metrics=("accuracy",),
                       samples=500, seed=0)[0]
    assert r["p_above_zero"] >= 0.99 and r["ci_low"] > 0
    rev = P.compare_pair({"m/x": _curve(b)}, {"m/x": _curve(a)}, metrics=("accuracy",),
                         samples=500, seed=0)[0]
    assert rev["p_above_zero"] == 0.0 and rev["ci_high"] < 0


def test_reproducible_from_its_seed_and_independent_of_other_stores() -> None:
    a, b = _correlated(3)
    a2, b2 = _correlated(4)
    one = P.compare_pair({"m/x": _curve(a)}, {"m/x": _curve(b)}, samples=200, seed=5,
                         metrics=("accuracy",))
    again = P.compare_pair({"m/x": _curve(a)}, {"m/x": _curve(b)}, samples=200, seed=5,
                           metrics=("accuracy",))
    other = P.compare_pair({"m/x": _curve(a)}, {"m/x": _curve(b)}, samples=200, seed=6,
                           metrics=("accuracy",))
    both = P.compare_pair({"m/y": _curve(a2), "m/x": _curve(a)},
                          {"m/y": _curve(b2), "m/x": _curve(b)}, samples=200, seed=5,
                          metrics=("accuracy",))
    assert one == again
    assert (one[0]["ci_low"], one[0]["ci_high"]) != (other[0]["ci_low"], other[0]["ci_high"]) \
        or one[0]["p_above_zero"] != other[0]["p_above_zero"]
    assert [r for r in both if r["store"] == "m/x"] == one


def test_weights_count_the_nested_draws() -> None:
    q_idx, s_idx = P.draws(4, 6, 50, seed=1, stream=9)
    assert q_idx.shape == (50, 6) and s_idx.shape == (50, 6, 4)
    w = P.weights(q_idx, s_idx, 4, 6)
    assert w.shape == (50, 4, 6)
    assert np.all(w.sum(axis=(1, 2)) == 24)  # N*Q episodes drawn per resample
    # a question never drawn has no weight; a question drawn k times has k*N
    for b in range(50):
        drawn = np.bincount(q_idx[b], minlength=6)
        np.testing.assert_array_equal(w[b].sum(axis=0), 4 * drawn)


def _loop_bootstrap(a_corr, a_tok, a_point, b_corr, b_tok, b_point, store, samples, seed,
                    level, anchor):
    """The same resampling, one resample, question and seed at a time, in plain Python."""
    n_c_a, n, q = a_corr.shape
    n_c_b = b_corr.shape[0]
    q_idx, s_idx = P.draws(n, q, samples, seed, P.store_stream(store))
    grid = np.geomspace(anchor["low"], anchor["high"], 16).tolist()

    def score(pts):
        bests = []
        for t in grid:
            best = 0.0
            for tok, acc in pts:
                if tok <= t and acc > best:
                    best = acc
            bests.append(best)
        return float(np.mean(bests))

    acc_d, mb_d, tr_d = [], [], []
    for r in range(samples):
        hits_a = [0] * n_c_a
        toks_a = [0] * n_c_a
        hits_b = [0] * n_c_b
        toks_b = [0] * n_c_b
        for j in range(q):
            qq = int(q_idx[r, j])
            for k in range(n):
                s = int(s_idx[r, j, k])
                for c in range(n_c_a):
                    hits_a[c] += int(a_corr[c, s, qq])
                    toks_a[c] += int(a_tok[c, s, qq])
                for c in range(n_c_b):
                    hits_b[c] += int(b_corr[c, s, qq])
                    toks_b[c] += int(b_tok[c, s, qq])
        tot = float(n * q)
        acc_a = [100.0 * float(h) / tot for h in hits_a]
        acc_b = [100.0 * float(h) / tot for h in hits_b]
        mt_a = [float(t) / tot for t in toks_a]
        mt_b = [float(t) / tot for t in toks_b]
        acc_d.append(acc_a[a_point] - acc_b[b_point])
        mb_d.append(score(list(zip(mt_a, acc_a, strict=True)))
                    - score(list(zip(mt_b, acc_b, strict=True))))
        reach = [mt_a[c] for c in range(n_c_a) if acc_a[c] >= acc_b[b_point]]
        tr_d.append((min(reach) if reach else math.inf) / mt_b[b_point] - 1.0)
    k = math.ceil(samples * (1 - level) / 2 - 1e-9)
    out = {}
    for name, d in (("accuracy", acc_d), ("matched_budget", mb_d), ("token_ratio", tr_d)):
        srt = sorted(d)
        out[name] = (srt[k - 1], srt[samples - k], sum(x > 0 for x in d) / samples)
    return out


@pytest.mark.parametrize("seed", [0, 11])
def test_matches_a_plain_loop_bootstrap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_c, n, q = 3, 4, 7
    a_corr = rng.random((n_c, n, q)) < 0.5
    b_corr = rng.random((2, n, q)) < 0.45
    a_tok = rng.integers(100, 5000, (n_c, n, q)) * np.array([1, 3, 9])[:, None, None]
    b_tok = rng.integers(100, 5000, (2, n, q)) * np.array([2, 8])[:, None, None]
    anchor = {"low": 500.0, "high": 30000.0}
    samples, level = 40, 0.9
    rows = P.compare_pair({"s/t": P.Curve(a_corr, a_tok, 1)}, {"s/t": P.Curve(b_corr, b_tok, 1)},
                          anchors={"s/t": anchor}, samples=samples, seed=seed, level=level)
    ref = _loop_bootstrap(a_corr, a_tok, 1, b_corr, b_tok, 1, "s/t", samples, seed, level,
                          anchor)
    for r in rows:
        lo, hi, p = ref[r["metric"]]
        assert (r["ci_low"], r["ci_high"], r["p_above_zero"]) == (lo, hi, p), r["metric"]


def test_pooled_is_the_mean_of_the_stores_per_resample() -> None:
    a1, b1 = _correlated(5)
    a2, b2 = _correlated(6, gap=-0.1)
    a = {"m/x": _curve(a1), "m/y": _curve(a2)}
    b = {"m/x": _curve(b1), "m/y": _curve(b2)}
    rows = P.compare_pair(a, b, metrics=("accuracy",), pools={"pooled": ["m/x", "m/y"]},
                          samples=200, seed=0)
    by = {r["store"]: r for r in rows}
    assert by["pooled"]["n_questions"] == 60 and by["pooled"]["n_stores"] == 2
    assert by["pooled"]["difference"] == pytest.approx(
        (by["m/x"]["difference"] + by["m/y"]["difference"]) / 2)
    sx = P.store_stats(a["m/x"], b["m/x"], "m/x", ["accuracy"], samples=200, seed=0)
    sy = P.store_stats(a["m/y"], b["m/y"], "m/y", ["accuracy"], samples=200, seed=0)
    lo, hi = P.interval((sx["accuracy"].paired + sy["accuracy"].paired) / 2, 0.95)
    assert (by["pooled"]["ci_low"], by["pooled"]["ci_high"]) == (lo, hi)


def test_token_ratio_is_infinite_where_a_cannot_match() -> None:
    a, b = _correlated(7, gap=-0.3)  # a far worse: it rarely reaches b's accuracy
    r = P.compare_pair({"m/x": _curve(a, np.full(a.shape, 10))},
                       {"m/x": _curve(b, np.full(b.shape, 100))},
                       metrics=("token_ratio",), samples=200, seed=0)[0]
    assert r["difference"] == math.inf and r["defined"] < 0.05 and r["ci_high"] == math.inf
    good = P.compare_pair({"m/x": _curve(b, np.full(b.shape, 10))},
                          {"m/x": _curve(b, np.full(b.shape, 100))},
                          metrics=("token_ratio",), samples=200, seed=0)[0]
    assert good["difference"] == pytest.approx(-0.9) and good["defined"] == 1.0
    assert good["ci_low"] == good["ci_high"] == pytest.approx(-0.9)


def test_matched_budget_point_is_the_explorer_score() -> None:
    from autotts_jax.experiments import metrics as M

    rng = np.random.default_rng(3)
    corr = rng.random((5, 6, 20)) < np.linspace(0.2, 0.7, 5)[:, None, None]
    tok = rng.integers(1000, 3000, (5, 6, 20)) * (2 ** np.arange(5))[:, None, None]
    sc = rng.random((1, 6, 20)) < 0.5
    anchor = {"low": 3000.0, "high": 60000.0}
    r = P.compare_pair({"m/x": P.Curve(corr, tok, 0)},
                       {"m/x": P.Curve(sc, np.full(sc.shape, 70000), 0)},
                       metrics=("matched_budget",), anchors={"m/x": anchor}, samples=10)[0]
    pts = [(float(tok[c].mean()), 100 * float(corr[c].mean())) for c in range(5)]
    want = float(np.mean([M.frontier(pts, t) for t in M.budgets(anchor)]))
    assert r["a_value"] == pytest.approx(want, abs=1e-9)
    assert r["b_value"] == 0.0  # SC beyond the largest budget gets no credit


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="different episodes"):
        P.store_stats(_curve(np.zeros((1, 2, 3))), _curve(np.zeros((1, 2, 4))), "a/b",
                      ["accuracy"], samples=5, seed=0)
    with pytest.raises(ValueError, match="point"):
        _curve(np.zeros((1, 2, 3)), point=1)
    with pytest.raises(ValueError, match="unknown metric"):
        P.store_stats(_curve(np.zeros((1, 2, 3))), _curve(np.zeros((1, 2, 3))), "a/b",
                      ["nope"], samples=5, seed=0)
    with pytest.raises(ValueError, match="level"):
        P.interval(np.zeros(3), 1.0)


def test_pooled_token_ratio_uses_the_mean_curve() -> None:
    # store x: a's cheap config reaches b; store y: a never reaches b on its own, but on the
    # mean curve over both stores its expensive config does
    def curve(acc_per_config, tokens, n=4, q=10):
        correct = np.zeros((len(acc_per_config), n, q), bool)
        for c, k in enumerate(acc_per_config):
            correct[c, :, :k] = True
        tok = np.broadcast_to(np.asarray(tokens)[:, None, None], correct.shape)
        return P.Curve(correct, np.array(tok), 0)

    a = {"m/x": curve([8, 10], [10, 40]), "m/y": curve([2, 4], [10, 40])}
    b = {"m/x": curve([5], [100]), "m/y": curve([6], [100])}
    rows = P.compare_pair(a, b, metrics=("token_ratio",), pools={"pooled": ["m/x", "m/y"]},
                          samples=50, seed=0)
    by = {r["store"]: r for r in rows}
    assert by["m/x"]["difference"] == pytest.approx(10 / 100 - 1)
    assert by["m/y"]["difference"] == math.inf
    # mean curve of a: (50 %, 10 tokens), (70 %, 40 tokens); b's mean point: 55 %, 100 tokens
    assert by["pooled"]["difference"] == pytest.approx(40 / 100 - 1)
    assert by["pooled"]["a_value"] == pytest.approx(40)
