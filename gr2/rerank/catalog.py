"""The catalog every slate is written from: item -> SID, title, categories, brand, for the items with a
SID under a tokenizer version. Read once on the driver (it is small, and every prompt builder needs it
to write items as text); training, eval and serving all read it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CatalogItem:
    item_id: str
    sid: str
    title: str
    categories: tuple[str, ...] = ()
    brand: str = ""

    @property
    def category(self) -> str:
        return self.categories[-1] if self.categories else ""


def tokenizer_version(lake: Path, version: str | None = None) -> str:
    if version:
        return version
    from gr2.platform.run_store import RunStore

    return RunStore(lake, "tokenizer", what="tokenizer").require_latest("run `gr2 tokenizer fit` and `assign` first")


def load_catalog(lake: Path, version: str | None = None) -> tuple[dict[str, CatalogItem], dict]:
    """item_id -> CatalogItem for every item with a SID under the tokenizer version; plus its shape."""
    from gr2.platform.lake import Lake

    version = tokenizer_version(lake, version)
    tables = Lake(lake)  # both tables at the versions of the lake manifest: one consistent snapshot
    codebook = tables.read_pandas(
        "gold.sid_codebook", columns=["item_id", "sid", "codes", "tokenizer_version"], filters=[("tokenizer_version", "=", version)]
    )
    if codebook.empty:
        raise ValueError(f"gold.sid_codebook has no rows for tokenizer {version}; run `gr2 tokenizer assign`")
    items = tables.read_pandas("silver.items", columns=["item_id", "title", "categories", "brand"])
    merged = codebook.merge(items, on="item_id", how="left")
    catalog = {
        r.item_id: CatalogItem(
            r.item_id, r.sid, r.title if isinstance(r.title, str) and r.title else r.item_id,
            tuple(r.categories) if r.categories is not None else (), r.brand if isinstance(r.brand, str) else "",
        )
        for r in merged.itertuples(index=False)
    }
    meta = json_meta(lake, version)
    levels = int(max(len(c) for c in codebook["codes"]))
    return catalog, {"tokenizer_version": version, "levels": levels, "codes": meta["rqvae"]["codes"]}


def json_meta(lake: Path, version: str) -> dict:
    import json

    return json.loads((lake / "models" / "tokenizer" / version / "config.json").read_text())
