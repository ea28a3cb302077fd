import numpy as np
import pytest
import torch

from reconad import ImageDetector, load
from reconad.models.gan import AnoGAN

TINY = dict(epochs=3, batch_size=32, lr=2e-4, latent_dim=8, width=32, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def gans(mnist01):
    ones = mnist01["train_ones"][:300]
    return {kind: ImageDetector(model=kind, model_kwargs={"search_steps": 20}, **TINY).fit(ones)
            for kind in ("anogan", "fanogan")}


@pytest.mark.parametrize("kind", ["anogan", "fanogan"])
def test_gan_scores(gans, mnist01, kind, tmp_path):
    det = gans[kind]
    x = mnist01["test_zeros"][:6]
    scores = det.decision_function(x)
    assert scores.shape == (6,) and np.isfinite(scores).all() and (scores >= 0).all()
    assert det._score_name() == "gan"
    assert det.predict(x).shape == (6,)
    assert det.anomaly_map(x[:2]).shape == (2, 28, 28)
    assert det.reconstruct(x[:2]).shape == (2, 28, 28)
    np.testing.assert_allclose(det.decision_function(x), scores, rtol=1e-5)  # deterministic
    det.save(tmp_path / kind)
    np.testing.assert_allclose(load(tmp_path / kind).decision_function(x), scores, rtol=1e-4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_anogan_search_is_batched_and_lowers_the_loss():
    torch.manual_seed(0)
    gan = AnoGAN((1, 8, 8), kind="anogan", latent_dim=4, width=16, search_steps=0).eval()
    x = torch.rand(5, 1, 8, 8)
    before = gan.anomaly_score(x)
    gan.search_steps = 50
    with torch.no_grad():
        after = gan.anomaly_score(x)
    assert after.shape == (5,) and (after < before).all()
    # each image's search is independent of the others in its batch and of its place there
    others = torch.cat([torch.rand(2, 1, 8, 8), x[3:4], x[:1]])
    with torch.no_grad():
        mixed = gan.anomaly_score(others)
        alone = gan.anomaly_score(x[3:4])
    assert float(mixed[3]) == pytest.approx(float(after[0]), rel=1e-4)
    assert float(mixed[2]) == pytest.approx(float(after[3]), rel=1e-4)
    assert float(alone[0]) == pytest.approx(float(after[3]), rel=1e-4)
    assert all(p.grad is None for p in gan.parameters())  # weights untouched


def test_score_mixes_residual_and_features():
    torch.manual_seed(0)
    gan = AnoGAN((1, 8, 8), kind="fanogan", latent_dim=4, width=16, lam=0.0).eval()
    x, r = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    residual = (x - r).square().flatten(1).mean(1)
    torch.testing.assert_close(gan.score_terms(x, r), residual)
    gan.lam = 1.0
    _, fx = gan.discriminator(x)
    _, fr = gan.discriminator(r)
    torch.testing.assert_close(gan.score_terms(x, r), (fx - fr).square().mean(1))
