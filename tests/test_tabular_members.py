"""How the default ensemble trains its members: each on its own random half of the rows,
with its own output bounds, error scales and kept epoch."""

import numpy as np
import pytest
import torch

from reconad import TabularDetector, load
from reconad.detectors.tabular import CODE_WEIGHT, MemberBest
from reconad.models.tabular import OutputBox, TabularEnsemble, member_errors, member_slots, slot_rows

from test_tabular_robust import _bad_parts, _parts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_member_slots_give_each_member_its_own_share_of_the_rows():
    rows = torch.arange(200, dtype=torch.float32).reshape(100, 2)          # row i = (2i, 2i + 1)
    slots = member_slots(rows, 4, torch.Generator().manual_seed(0), share=0.5)
    assert slots.shape == (50, 8)
    own = slot_rows(slots, 4)                                              # (members, 50, 2)
    ids = [set((own[m, :, 0] / 2).long().tolist()) for m in range(4)]
    assert all(len(s) == 50 for s in ids)                                  # 50 different rows each
    assert torch.equal(own[:, :, 1], own[:, :, 0] + 1)                     # whole rows, not mixed
    assert len({frozenset(s) for s in ids}) == 4                           # four different halves
    every = slot_rows(member_slots(rows, 3, torch.Generator().manual_seed(0)), 3)
    assert all(sorted(every[m, :, 0].tolist()) == rows[:, 0].tolist() for m in range(3))  # share 1: all rows
    assert not torch.equal(every[0], every[1])                                            # in its own order


def test_each_member_is_bounded_and_scaled_by_its_own_rows():
    rng = np.random.RandomState(0)
    x = _parts(400, rng)
    det = TabularDetector(verbose=0, epochs=3).fit(x)
    lower, upper = det.model_.box.lower, det.model_.box.upper
    assert lower.shape == upper.shape == (8, 1, x.shape[1])
    scaled = torch.from_numpy(det._matrix(x))
    assert (lower >= scaled.min(0).values - 1e-6).all() and (upper <= scaled.max(0).values + 1e-6).all()
    assert not torch.equal(lower[0], lower[1])        # different halves, different extremes
    assert det.error_scale_.shape == (8, x.shape[1]) and det.member_scale_.shape == (8,)
    # the members' reconstruction scores of the training rows are divided by their medians
    density, det.code_density_ = det.code_density_, None  # without the code term
    np.testing.assert_allclose(np.median(det._member_scores(det._matrix(x)), axis=0), 1.0, rtol=1e-5)
    det.code_density_ = density


def test_member_best_puts_back_each_members_best_epoch():
    torch.manual_seed(0)
    net = TabularEnsemble((3,), latent_dim=2, width=8, members=3)
    val = member_slots(torch.randn(40, 3), 3, torch.Generator().manual_seed(1), share=0.5)
    keeper = MemberBest(net, val, trim=0.0)
    seen = []
    for epoch in range(6):
        with torch.no_grad():                          # a different random state per "epoch"
            for p in net.parameters():
                p.add_(0.3 * torch.randn_like(p))
        keeper(epoch)
        seen.append(keeper.losses())
    keeper.restore()
    best = torch.stack(seen).min(0).values
    torch.testing.assert_close(keeper.losses(), best)
    x = slot_rows(val, 3)
    torch.testing.assert_close(member_errors(x, net._run(x)).mean((1, 2)), best)


def test_bounds_of_files_from_before_they_were_per_member_still_load():
    box = OutputBox(3, bounded=True, members=2)
    box.load_state_dict({"lower": torch.tensor([0.0, -1.0, 2.0]), "upper": torch.tensor([1.0, 1.0, 3.0])})
    assert box.lower.shape == (2, 1, 3) and torch.equal(box.lower[1, 0], torch.tensor([0.0, -1.0, 2.0]))


def test_the_default_saves_and_loads_with_its_member_scales(tmp_path):
    rng = np.random.RandomState(1)
    x, rows = _parts(300, rng), np.r_[_parts(20, rng), _bad_parts(20, rng)]
    det = TabularDetector(verbose=0, epochs=3).fit(x)
    det.save(tmp_path / "m")
    again = load(tmp_path / "m")
    np.testing.assert_allclose(again.member_scale_, det.member_scale_)
    np.testing.assert_allclose(again.decision_function(rows), det.decision_function(rows), rtol=1e-6)


def test_subsample_takes_at_least_two_rows_per_member():
    x = _parts(6, np.random.RandomState(2))
    det = TabularDetector(verbose=0, epochs=2, subsample=0.01, validation_fraction=0.0).fit(x)
    assert np.isfinite(det.decision_function(x)).all()


def test_the_code_term_is_the_negative_log_density_of_the_code_under_the_members_mixture(tmp_path):
    """Each member adds -log p(code) under its Gaussian mixture (as scikit-learn computes it),
    less its lowest value over its own rows, over its typical value, at the code weight
    (half the reconstruction score's); it is saved."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.RandomState(3)
    x, rows = _parts(400, rng), np.r_[_parts(20, rng), _bad_parts(20, rng)]
    det = TabularDetector(verbose=0, epochs=3).fit(x)
    plain = TabularDetector(verbose=0, epochs=3, code_components=0).fit(x)
    assert plain.code_density_ is None and det.code_density_["means"].shape[:2] == (8, 4)
    xb = torch.from_numpy(det._matrix(rows)).float()
    with torch.no_grad():
        member_codes = det.model_.codes(xb.unsqueeze(0).expand(8, -1, -1))
        surprise = det._code_surprise(member_codes).numpy()
    codes = member_codes.double().numpy()
    d = det.code_density_
    gm = GaussianMixture(4, covariance_type="full")  # member 0's mixture, from the stored tensors
    gm.weights_, gm.means_ = d["log_weights"][0].exp().double().numpy(), d["means"][0].double().numpy()
    gm.precisions_cholesky_ = d["prec_chol"][0].double().numpy()
    expected = np.maximum(-gm.score_samples(codes[0]) - float(d["offset"][0]), 0)
    np.testing.assert_allclose(surprise[0], expected, rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        total = det._per_member(xb).numpy()
        errors = det._feature_errors(xb).numpy()
    recon = (errors / det.error_scale_[:, None, :]).mean(2) / det.member_scale_[:, None]
    assert det.code_weight() == CODE_WEIGHT == 0.5
    np.testing.assert_allclose(total, recon + CODE_WEIGHT * surprise / det.code_scale_[:, None], rtol=1e-5)
    det.code_weight_ = None  # a file written before the weight was kept: L code units among F features
    assert det.code_weight() == d["means"].shape[-1] / det.n_features_
    det.code_weight_ = CODE_WEIGHT
    # the planted rows score higher than the normal ones, and the term is saved with the model
    s = det.decision_function(rows)
    assert s[20:].mean() > s[:20].mean()
    det.save(tmp_path / "code")
    np.testing.assert_allclose(load(tmp_path / "code").decision_function(rows), s, rtol=1e-5)
    with pytest.raises(ValueError, match="code_components"):
        TabularDetector(verbose=0, code_components=-1).fit(x)
