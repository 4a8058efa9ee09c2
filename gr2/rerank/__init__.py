"""The re-rank task: one definition that traces, SFT, DAPO, eval and serving all use.

slate.py        what a slate is: ItemText, Slate, the evidence notes beside a candidate
catalog.py      the catalog a slate's items come from (titles, categories, SIDs), read from the lake
prompt.py       the paper-format prompt and answer contract: build and render, format and parse an answer
formats.py      a student's surface form of that contract (RerankFormat): SID spelling, citation, style
permutations.py an answer as input indices (ranking_positions) and whether it is a whole permutation
metrics.py      the one definition of Recall@k and NDCG@k for a slate's target position

It stands on gr2.config and gr2.platform only (tests/test_layering.py), so every stage can import it.
"""
