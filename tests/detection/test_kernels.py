import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import rbf_kernel as sk_rbf_kernel

from skrobust.detection import kernel_gammas, median_gamma, mmd2_unbiased, rbf_kernel
from skrobust.detection._kernels import (
    fisher_combination,
    kernel_products,
    mmd2_permutation,
    permutation_matrix,
    permutation_p_values,
    witness_scores,
)


def naive_mmd2(X, Y, gamma):
    n, m = len(X), len(Y)
    Kxx, Kyy, Kxy = (sk_rbf_kernel(A, B, gamma=gamma) for A, B in ((X, X), (Y, Y), (X, Y)))
    return ((Kxx.sum() - np.trace(Kxx)) / (n * (n - 1))
            + (Kyy.sum() - np.trace(Kyy)) / (m * (m - 1)) - 2 * Kxy.mean())


@pytest.mark.parametrize("n, m", [(2, 2), (30, 20), (7, 41)])
def test_mmd2_unbiased_matches_definition(n, m):
    rng = np.random.RandomState(n + m)
    X, Y = rng.randn(n, 3), rng.randn(m, 3) + 0.3
    assert mmd2_unbiased(X, Y, gamma=0.2) == pytest.approx(naive_mmd2(X, Y, 0.2), abs=1e-12)


def test_mmd2_unbiased_is_symmetric_and_near_zero_without_shift():
    rng = np.random.RandomState(0)
    X, Y = rng.randn(400, 2), rng.randn(300, 2)
    assert mmd2_unbiased(X, Y) == pytest.approx(mmd2_unbiased(Y, X), abs=1e-12)
    assert abs(mmd2_unbiased(X, Y)) < 0.01
    assert mmd2_unbiased(X, Y + 2.0) > 0.3
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(X[:1], Y)


def test_rbf_kernel_and_mixture():
    rng = np.random.RandomState(0)
    X, Y = rng.randn(6, 4), rng.randn(5, 4)
    np.testing.assert_allclose(rbf_kernel(X, Y, gamma=0.3), sk_rbf_kernel(X, Y, gamma=0.3))
    K = rbf_kernel(X, gamma=0.3, kernel="rbf_mixture")
    expected = np.mean([sk_rbf_kernel(X, gamma=g) for g in kernel_gammas(0.3, "rbf_mixture")],
                       axis=0)
    np.testing.assert_allclose(K, expected)
    np.testing.assert_allclose(np.diag(K), 1.0)
    # bandwidths are the base one times 2^-2..2^2: gamma / 4^k
    assert kernel_gammas(1.0, "rbf_mixture") == (16.0, 4.0, 1.0, 0.25, 0.0625)
    with pytest.raises(ValueError, match="kernel="):
        kernel_gammas(1.0, "linear")


def test_median_gamma():
    # squared distances 1, 9, 4 -> median 4 -> gamma = 1 / 8
    assert median_gamma(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(0.125)
    rng = np.random.RandomState(0)
    X = rng.randn(300, 5)
    assert median_gamma(X) == pytest.approx(median_gamma(X[::-1]))
    # scaling the data by c scales gamma by 1 / c^2
    assert median_gamma(3 * X) == pytest.approx(median_gamma(X) / 9)
    # subsampled above max_samples, still close
    assert median_gamma(X, max_samples=100) == pytest.approx(median_gamma(X), rel=0.3)
    # mostly duplicated rows: fall back to the non-zero distances, stay finite
    assert np.isfinite(median_gamma(np.repeat(X[:2], 10, axis=0)))
    assert median_gamma(np.zeros((5, 2))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        median_gamma(X[:1])


def test_permutation_matrix():
    U = permutation_matrix(12, 5, 50, torch.Generator().manual_seed(0))
    assert U.shape == (12, 51)
    np.testing.assert_array_equal(U.sum(0).numpy(), 5)
    np.testing.assert_array_equal(U[:, 0].numpy(), [1] * 5 + [0] * 7)
    again = permutation_matrix(12, 5, 50, torch.Generator().manual_seed(0))
    assert torch.equal(U, again)
    assert len({tuple(col) for col in U.T.int().tolist()}) > 40  # distinct splits


def test_vectorised_null_equals_a_loop_over_permutations():
    rng = np.random.RandomState(1)
    Z = rng.randn(25, 3)
    n, gamma = 10, 0.4
    U = permutation_matrix(25, n, 30, torch.Generator().manual_seed(3))
    stats = mmd2_permutation(torch.as_tensor(Z), n, (gamma,), U).numpy()
    for j in range(U.shape[1]):
        mask = U[:, j].numpy().astype(bool)
        assert stats[j] == pytest.approx(naive_mmd2(Z[mask], Z[~mask], gamma), abs=1e-12)


def test_blockwise_and_chunked_products_agree():
    rng = np.random.RandomState(2)
    Z = torch.as_tensor(rng.randn(53, 4))
    U = permutation_matrix(53, 20, 11, torch.Generator().manual_seed(0))
    gammas = kernel_gammas(0.3, "rbf_mixture")
    full = kernel_products(Z, U, gammas, block_size=1000)
    blocks = kernel_products(Z, U, gammas, block_size=7)
    for a, b in zip(full, blocks):
        torch.testing.assert_close(a, b)
    whole = mmd2_permutation(Z, 20, gammas, U)
    chunked = mmd2_permutation(Z, 20, gammas, U, block_size=5, max_elements=53 * 3)
    torch.testing.assert_close(whole, chunked)


def test_permutation_p_values():
    stats = np.array([0.5, 0.1, 0.7, 0.5, 0.2])
    # observed 0.5: itself, 0.7 and the tied 0.5 are >= -> 3 / 5
    assert permutation_p_values(stats)[0] == pytest.approx(3 / 5)
    assert permutation_p_values(np.array([9.0, 1, 2, 3]))[0] == pytest.approx(1 / 4)
    p = permutation_p_values(np.random.RandomState(0).randn(3, 20))
    assert p.shape == (3, 20) and p.min() >= 1 / 20 and p.max() <= 1


def test_fisher_combination_of_one_layer_keeps_its_ranking():
    stats = np.random.RandomState(0).randn(1, 30)
    fisher = fisher_combination(stats)
    np.testing.assert_allclose(permutation_p_values(fisher), permutation_p_values(stats[0]))
    # two identical layers: same ranking as one
    np.testing.assert_allclose(permutation_p_values(fisher_combination(np.vstack([stats, stats]))),
                               permutation_p_values(stats[0]))


def test_stratified_permutations_keep_the_counts_per_stratum():
    strata = np.array([0, 0, 1, 2, 2, 2, 0, 1, 1, 2, 2, 0])  # first 6 rows are "x"
    U = permutation_matrix(12, 6, 200, torch.Generator().manual_seed(0), strata=strata)
    np.testing.assert_array_equal(U[:, 0].numpy(), [1] * 6 + [0] * 6)
    for code in (0, 1, 2):
        in_stratum = torch.as_tensor(strata == code)
        expected = np.sum(strata[:6] == code)
        np.testing.assert_array_equal(U[in_stratum].sum(0).numpy(), expected)
    # every row of a stratum is drawn at some point
    assert (U[:, 1:].sum(1) > 0).all()


def test_kernels_are_finite_for_any_finite_input():
    big = np.finfo(np.float64).max
    X = np.array([[0.0, 0.0], [1.0, 0.0], [1e300, -1e300], [big, big], [-big, big]])
    K = rbf_kernel(X, gamma=0.5)
    assert np.isfinite(K).all() and (K >= 0).all() and (K <= 1).all()
    assert K[0, 1] == pytest.approx(np.exp(-0.5))
    assert K[0, 2] == 0 and K[2, 3] == 0 and K[3, 4] == 0  # overflowing distances: +inf
    X32 = np.array([[0.0, 1.0], [1e30, 1e30]], dtype=np.float32)  # float32 squares overflow
    assert rbf_kernel(X32, gamma=1.0)[0, 1] == 0 and np.isfinite(rbf_kernel(X32)).all()
    assert np.isfinite(mmd2_unbiased(X[:3], X[2:], gamma=0.5))
    assert median_gamma(np.array([[0.0], [1e200], [-1e200]])) == 0.0  # refused by fit


def naive_witness(F, R, gamma, kernel="rbf"):
    K_ref = rbf_kernel(F, R, gamma=gamma, kernel=kernel)
    K = rbf_kernel(F, F, gamma=gamma, kernel=kernel)
    return K_ref.mean(1) - (K.sum(1) - np.diag(K)) / (len(F) - 1)


@pytest.mark.parametrize("kernel", ["rbf", "rbf_mixture"])
def test_witness_scores_match_definition_and_ignore_order_and_blocks(kernel):
    rng = np.random.RandomState(0)
    F, R = rng.randn(23, 3) + 0.5, rng.randn(40, 3)
    gammas = kernel_gammas(0.3, kernel)
    expected = naive_witness(F, R, 0.3, kernel)
    for block_size in (1, 5, 23, 1024):
        scores = witness_scores(torch.from_numpy(F), torch.from_numpy(R), gammas,
                                block_size=block_size)
        assert scores.dtype == torch.float64 and scores.shape == (23,)
        np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12, atol=1e-14)
    order = rng.permutation(23)
    permuted = witness_scores(torch.from_numpy(F[order]), torch.from_numpy(R), gammas)
    np.testing.assert_allclose(permuted.numpy(), expected[order], rtol=1e-12, atol=1e-14)


def test_witness_scores_are_low_where_the_batch_leaves_the_reference():
    rng = np.random.RandomState(1)
    R = rng.randn(300, 2)
    F = np.vstack([rng.randn(45, 2), rng.randn(5, 2) + 6.0])
    scores = witness_scores(torch.from_numpy(F), torch.from_numpy(R), (0.5,)).numpy()
    assert scores[45:].max() < np.median(scores[:45])
    assert scores[45:].mean() < scores[:45].min()
