"""Score terms of the Gaussian VAE and the GMM against direct computations."""

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from torch.distributions import Normal, kl_divergence

from reconad import ImageDetector, load
from reconad.scoring import terms as scoring
from reconad.models import entry
from reconad.models.gmm import fit_pca_gmm


@pytest.fixture()
def small():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 4, 5, generator=g)
    mu_x = torch.rand(3, 1, 4, 5, generator=g)
    log_var_x = torch.randn(3, 1, 4, 5, generator=g) - 2
    mu_z = torch.randn(3, 6, generator=g)
    log_var_z = torch.randn(3, 6, generator=g) * 0.3
    return x, mu_x, log_var_x, mu_z, log_var_z


def test_each_term_by_hand(small):
    x, mu_x, lv_x, mu_z, lv_z = small
    var_x, var_z = lv_x.exp(), lv_z.exp()
    M = (0.5 * (mu_x - x) ** 2 / var_x).flatten(1).sum(1)
    A = (0.5 * torch.log(2 * math.pi * var_x)).flatten(1).sum(1)
    D = (0.5 * (-torch.log(var_z) - 1 + var_z + mu_z ** 2)).sum(1)
    score = lambda name: scoring.vae_per_sample(x, mu_x, lv_x, mu_z, lv_z, name, beta=0.5)  # noqa: E731
    torch.testing.assert_close(score("unregularized"), M)
    torch.testing.assert_close(score("log_norm"), A)
    torch.testing.assert_close(score("kl"), D)
    torch.testing.assert_close(score("elbo"), D + A + M)
    torch.testing.assert_close(score("recon_kl"), ((x - mu_x) ** 2).flatten(1).sum(1) + 0.5 * D)


def test_d_plus_a_plus_m_is_negative_elbo(small):
    x, mu_x, lv_x, mu_z, lv_z = small
    nll = -Normal(mu_x, (0.5 * lv_x).exp()).log_prob(x).flatten(1).sum(1)
    kl = kl_divergence(Normal(mu_z, (0.5 * lv_z).exp()), Normal(torch.zeros_like(mu_z), 1.0)).sum(1)
    torch.testing.assert_close(scoring.vae_per_sample(x, mu_x, lv_x, mu_z, lv_z, "elbo"), nll + kl)


def test_vae_model_scores_at_z_equal_mu_z():
    torch.manual_seed(0)
    model = entry("image", "conv_vae").build((1, 16, 16), latent_dim=4, width=4, depth=2).eval()
    x = torch.rand(2, 1, 16, 16)
    out = model(x)
    torch.testing.assert_close(model(x).mu_x, out.mu_x)  # deterministic at evaluation
    z_decoded = model.reconstruct(model.from_latent(out.mu_z).reshape(-1, *model.code_shape))
    torch.testing.assert_close(torch.sigmoid(z_decoded[:, :1]), out.mu_x)
    nll = -Normal(out.mu_x, (0.5 * out.log_var_x).exp()).log_prob(x).flatten(1).sum(1)
    kl = kl_divergence(Normal(out.mu_z, (0.5 * out.log_var_z).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(scoring.vae_per_sample(x, *out, "elbo"), nll + kl, rtol=1e-4, atol=1e-3)


def test_gmm_terms_against_sklearn_and_mahalanobis():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (150, 3)), rng.normal(4, 0.5, (150, 3)) @ np.diag([1, 2, 0.5])])
    gm = GaussianMixture(2, covariance_type="full", random_state=0).fit(X)
    Xq = rng.normal(2, 2, (20, 3))
    t = scoring.gmm_terms(torch.tensor(Xq), torch.tensor(gm.weights_), torch.tensor(gm.means_),
                          torch.tensor(gm.precisions_cholesky_))
    k = gm.predict(Xq)
    np.testing.assert_array_equal(t["k"].numpy(), k)
    diff = Xq - gm.means_[k]
    maha = np.einsum("nd,nde,ne->n", diff, np.linalg.inv(gm.covariances_[k]), diff)
    np.testing.assert_allclose(t["M"].numpy(), 0.5 * maha, rtol=1e-8)
    np.testing.assert_allclose(t["D"].numpy(), -np.log(gm.weights_[k]))
    _, logdet = np.linalg.slogdet(gm.covariances_[k])
    np.testing.assert_allclose(t["A"].numpy(), 0.5 * (3 * np.log(2 * np.pi) + logdet), rtol=1e-8)
    np.testing.assert_allclose(t["nll"].numpy(), -gm.score_samples(Xq), rtol=1e-8)


def test_gmm_module_projects_with_pca():
    rng = np.random.default_rng(1)
    X = rng.random((200, 1, 4, 4)).astype(np.float32)
    model = fit_pca_gmm(entry("image", "gmm").build((1, 4, 4), n_components=2, pca_components=5), X, random_state=0)
    out = model(torch.from_numpy(X[:7]))
    assert out["M"].shape == (7,) and torch.all(out["M"] >= 0)
    assert torch.all(out["nll"] <= out["D"] + out["A"] + out["M"] + 1e-4)  # -log sum <= -log of one term


def test_vae_detector_reports_every_score_and_round_trips(tmp_path, mnist01):
    det = ImageDetector(model="conv_vae", latent_dim=4, width=4, depth=2, epochs=1, verbose=0,
                        beta=2.0).fit(mnist01["train_ones"][:100])
    x = mnist01["test_zeros"][:5]
    scores = {s: det.decision_function(x, score=s) for s in scoring.GAUSSIAN_SCORES}
    np.testing.assert_allclose(scores["elbo"], scores["kl"] + scores["log_norm"] + scores["unregularized"], rtol=1e-4)
    for s in scoring.GAUSSIAN_SCORES:  # per-pixel maps add up to the image score
        np.testing.assert_allclose(det.anomaly_map(x, score=s).sum((1, 2)), scores[s], rtol=1e-3, atol=1e-3)
    assert det.encode(x).shape == (5, 4)
    det.save(tmp_path / "m")
    np.testing.assert_allclose(load(tmp_path / "m").decision_function(x, score="elbo"), scores["elbo"], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown score"):
        det.decision_function(x, score="mse")


def test_bernoulli_decoder_and_paper_preset(mnist01):
    det = ImageDetector(model="dense_vae", model_kwargs={"decoder": "bernoulli"}, latent_dim=4, width=32,
                        epochs=1, verbose=0).fit(mnist01["train_ones"][:60])
    x = mnist01["test_zeros"][:3]
    assert np.all(det.decision_function(x, score="log_norm") == 0)
    paper = entry("image", "paper_vae").build((1, 96, 96), latent_dim=10, width=16)
    convs = [m for m in paper.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert paper.to_latent.out_features == 20
    assert paper.eval()(torch.rand(2, 1, 96, 96)).log_var_x.shape == (2, 1, 96, 96)
