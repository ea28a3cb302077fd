"""The README's model tables are the catalogue's (regenerate with
``python scripts/model_tables.py``)."""

import re
from pathlib import Path

import pytest

from reconad.models import catalogue

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("kind", catalogue.KINDS)
def test_readme_table_is_the_catalogue(kind):
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(rf"<!-- catalogue:{kind} -->\n(.*?)\n<!-- /catalogue:{kind} -->", text, re.S)
    assert len(blocks) == 1, f"README.md needs one <!-- catalogue:{kind} --> block"
    assert blocks[0] == catalogue.markdown(kind), \
        "README.md's model table differs from the catalogue: run python scripts/model_tables.py"
