"""``fit_model`` keeps the best epoch's weights, or leaves the last epoch's to a caller that
keeps its own best state (``keep_best=False``, as the table ensemble's ``MemberBest``)."""

import pytest
import torch
from torch import nn

from reconad.training.loop import fit_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(keep_best: bool, seen: list):
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    x = torch.randn(64, 4)

    def record(epoch):                      # the weights at the end of every epoch
        seen.append([p.detach().clone() for p in model.parameters()])

    # a learning rate this high makes the training loss jump about, so that the best epoch
    # is not the last
    result = fit_model(model, lambda out, xb: ((out - xb.flip(1)) ** 2).mean(), x, None, epochs=12,
                       batch_size=8, lr=3.0, device=torch.device("cpu"), seed=0, verbose=0,
                       on_epoch=record, keep_best=keep_best)
    return model, result


def test_best_epoch_is_restored_or_left_to_the_caller():
    seen_kept, seen_left = [], []
    kept, result = _fit(True, seen_kept)
    left, result_left = _fit(False, seen_left)
    assert result.best_epoch == result_left.best_epoch < 11            # the same run, tracked alike
    best = seen_kept[result.best_epoch]
    assert all(torch.equal(p, b) for p, b in zip(kept.parameters(), best))
    assert all(torch.equal(p, b) for p, b in zip(left.parameters(), seen_left[-1]))
    assert not all(torch.equal(p, b) for p, b in zip(left.parameters(), best))


def test_progress_shows_a_validation_loss_only_where_there_is_one(capsys):
    """Without validation rows the progress shows the training loss alone, not the training
    loss again as "val"; a number ``on_epoch`` returns (the ensemble's members' own validation
    loss) is shown as the validation loss."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)

    def fit(on_epoch):
        fit_model(nn.Linear(4, 4), lambda out, xb: ((out - xb) ** 2).mean(), x, None, epochs=2, batch_size=8,
                  lr=1e-2, device=torch.device("cpu"), seed=0, verbose=1, on_epoch=on_epoch)
        return capsys.readouterr().out

    plain = fit(None)
    assert "loss " in plain and "val" not in plain
    assert "val 1.23450" in fit(lambda epoch: 1.2345)
