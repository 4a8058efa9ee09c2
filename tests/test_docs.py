from pathlib import Path

from gr2.config import load_config, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert reference_markdown() in doc, "regenerate the table: python -m gr2.config"


def test_shipped_configs_load():
    for f in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(f)
