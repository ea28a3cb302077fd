"""Print the README's model tables from the catalogue, one per kind of data, between the
markers the README keeps them in (tests/test_readme_tables.py checks they agree).

    python scripts/model_tables.py            # all kinds
    python scripts/model_tables.py --kind table
"""

import argparse

from reconad.models.catalogue import KINDS, markdown


def block(kind: str) -> str:
    return f"<!-- catalogue:{kind} -->\n{markdown(kind)}\n<!-- /catalogue:{kind} -->"


def main() -> None:
    ap = argparse.ArgumentParser(description="Print the README's model tables from the catalogue.")
    ap.add_argument("--kind", choices=KINDS, help="only this kind of data")
    args = ap.parse_args()
    print("\n\n".join(block(k) for k in ([args.kind] if args.kind else KINDS)))


if __name__ == "__main__":
    main()
