"""Gaussian mixtures fitted side by side (``models.mixtures.fit_mixtures``)."""

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from reconad.models.mixtures import fit_mixtures
from reconad.scoring.terms import gmm_nll


def _groups(rng, blocks, n, d):
    """Blocks of codes in three groups of different spread, some of them cut at 0 as a
    ReLU code is."""
    centres = np.array([0.0, 4.0, 9.0])
    which = rng.integers(0, 3, size=(blocks, n))
    z = centres[which][..., None] + rng.normal(size=(blocks, n, d)) * (0.3 + 0.4 * which[..., None])
    return np.maximum(z, 0.0)


def test_each_block_gets_the_likelihood_scikit_learn_reaches():
    rng = np.random.default_rng(0)
    z = _groups(rng, 4, 900, 3)
    mix = fit_mixtures(torch.as_tensor(z), 3, max_iter=100)
    for i, block in enumerate(z):
        ridge = 1e-3 * block.var(0).mean() + 1e-9
        gm = GaussianMixture(3, covariance_type="full", reg_covar=ridge, max_iter=100, random_state=i).fit(block)
        assert mix.log_likelihood[i].item() == pytest.approx(gm.score(block), abs=0.02)
        # the kept log-likelihood is that of the returned parameters
        nll = gmm_nll(torch.as_tensor(block), mix.weights[i], mix.means[i], mix.precisions_cholesky[i])
        assert -nll.mean().item() == pytest.approx(mix.log_likelihood[i].item(), rel=1e-9)
        # the three groups are found: their centres are among the means
        found = np.sort(mix.means[i].numpy().mean(1))
        assert np.abs(found - [0.0, 4.0, 9.0]).max() < 0.5


def test_identical_codes_and_fewer_rows_than_components_give_finite_densities():
    z = torch.zeros(2, 50, 4, dtype=torch.float64)
    z[1, :25] = 1.0  # block 1: two distinct codes only
    mix = fit_mixtures(z, 4)
    nll = gmm_nll(z, mix.weights, mix.means, mix.precisions_cholesky)
    assert torch.isfinite(nll).all()
    few = fit_mixtures(torch.randn(3, 2, 5, dtype=torch.float64), 4)  # 2 rows, 4 components
    assert few.weights.shape == (3, 4) and torch.isfinite(few.log_likelihood).all()
    assert torch.allclose(few.weights.sum(1), torch.ones(3, dtype=torch.float64))
    assert (few.weights < 1e-9).sum(1).ge(2).all()  # the components no row can fill weigh about 0


def test_bad_codes_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="NaN"):
        fit_mixtures(torch.tensor([[[0.0, float("nan")], [1.0, 2.0]]]), 2)
    with pytest.raises(ValueError, match="blocks, samples, dims"):
        fit_mixtures(torch.zeros(10, 3), 2)
    with pytest.raises(ValueError, match="components"):
        fit_mixtures(torch.zeros(1, 10, 3), 0)
