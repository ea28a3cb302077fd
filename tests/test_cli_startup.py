"""The command line's help starts without loading torch or scikit-learn, and the
catalogue's lazily imported builders still build the same networks."""

import subprocess
import sys

from reconad.models import catalogue


def test_help_and_import_do_not_load_torch():
    code = ("import sys\n"
            "import reconad\n"
            "from reconad.cli.app import app\n"
            "from typer.testing import CliRunner\n"
            "out = CliRunner().invoke(app, ['train', '--help'])\n"
            "assert out.exit_code == 0, out.output\n"
            "assert 'ensemble (default)' in out.output, out.output\n"
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_lazy_builders_build_their_networks():
    import torch

    from reconad import ImageDetector, TabularDetector

    net = catalogue.entry("image", "conv_ae").build((1, 28, 28), latent_dim=8, width=8, depth=2)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    series = catalogue.entry("series", "dense_ae").build((10, 3), latent_dim=4, width=8, depth=1)
    assert isinstance(series, torch.nn.Module)
    assert ImageDetector().model == catalogue.DEFAULT_MODELS["image"]
    assert TabularDetector().get_params()["model"] == "ensemble"
