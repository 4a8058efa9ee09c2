"""The built-in synthetic data set: purchase logs with structure a re-ranker can learn.

Output (the "events" landing format), under `out_dir`:

    items.jsonl            one JSON object per line: item_id, title, categories, brand
    events/part-NNNNN.jsonl  one JSON object per line: user_id, item_id, ts, event="purchase",
                           plus deliberately broken lines (see below); written by Spark executors

Determinism: the catalog comes from `numpy.random.default_rng([seed, 0x5EED, 0xCA7])`, and every user
from `numpy.random.default_rng([seed, user_index])`, so the same config gives byte-identical files on
any number of executors. User `k` lands in partition `k * partitions // users` in user order, and a
user's lines are in time order.

Structure
---------
* Category tree: departments > subcategories > leaves from a built-in vocabulary
  (Beauty > Hair Care > Shampoo, Makeup > Eyes > Mascara, Electronics > Phones > Phone Case, ...).
  The number of leaves grows with the catalog (about one per 200 items, at most one per 4 items):
  small catalogs take the first vocabulary leaves department by department; large ones add variant
  leaves ("Travel Shampoo", then "Shampoo Line 12"). Every leaf holds at least one item.
* Complementary leaves: a fixed transition map leaf -> 1..2 leaves. Hand-written pairs for the
  vocabulary (Shampoo -> Conditioner, Mascara -> Eye Makeup Remover, Camera -> Memory Card, ...) plus
  seeded random pairs inside the same subcategory or department (all of them for variant leaves).
* Brands: each specializes in one department and has a price tier (budget/mid/premium) shown by a
  tier word in its name ("Lumera Luxe", "Vexa Basics"). A brand has a strength (log-normal).
* Items: a leaf and a brand of the leaf's department; popularity = 1 / rank**zipf (a random rank)
  times the brand's strength. Title = brand + department adjective + leaf noun + size, e.g.
  "Lumera Silk Repair Shampoo 250 ml" (unique-ish, not guaranteed unique).
* Users: a persona of 1-2 departments, 1-3 preferred leaves in them and 1-2 favourite brands.
  A sequence has `min_events_per_user + geometric` items (mean `mean_events_per_user`). The first item
  comes from a persona leaf (70 %) or overall popularity; each next one from a mixture:
  `p_complement` (0.45) a complementary leaf of the previous item's leaf, `p_persona` (0.3) a persona
  leaf, `p_same_brand` (0.1) the previous item's brand, the rest overall popularity. Inside a leaf an
  item is drawn by popularity, from a favourite brand's items in that leaf half of the time when the
  user has one there. An item already bought is redrawn (up to 3 times), so repeats are rare.
* Time: a user starts on a random day in the `days`-day window ending at `end_date` 23:59:59 UTC;
  successive purchases are log-uniformly 1 minute to 3 days apart, strictly increasing, all inside.

Bad records
-----------
After each good event, with probability `bad_record_rate`, one extra broken line of a kind drawn
uniformly from `BAD_KINDS`, each with exactly one defect:

    malformed_json   the good line cut short (never valid JSON)
    empty_user_id    the good event with user_id ""
    unparseable_ts   ts "not-a-date"
    absurd_ts        ts in 1971 ("1971-01-01T<time>Z") or in 2199 (the good ts with year 2199)
    duplicate        an exact copy of the good line just before it
    unknown_item     item_id "ghost-<n>", an id absent from items.jsonl

`generate` returns their counts per kind, which the quarantine must reproduce exactly.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from gr2.config import SyntheticConfig

EVENT = "purchase"
BAD_KINDS = ("malformed_json", "empty_user_id", "unparseable_ts", "absurd_ts", "duplicate", "unknown_item")
USERS_PER_PARTITION = 50_000

# ---------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------

TREE: dict[str, dict[str, list[str]]] = {
    "Beauty": {
        "Hair Care": ["Shampoo", "Conditioner", "Hair Mask", "Hair Oil", "Dry Shampoo"],
        "Skin Care": ["Face Cleanser", "Moisturizer", "Serum", "Sunscreen", "Eye Cream"],
        "Bath & Body": ["Body Wash", "Body Lotion", "Hand Cream", "Bath Salts"],
    },
    "Makeup": {
        "Eyes": ["Mascara", "Eyeliner", "Eyeshadow Palette", "Eye Makeup Remover", "Brow Pencil"],
        "Face": ["Foundation", "Concealer", "Setting Powder", "Blush", "Makeup Sponge"],
        "Lips": ["Lipstick", "Lip Liner", "Lip Balm", "Lip Gloss"],
        "Nails": ["Nail Polish", "Base Coat", "Top Coat", "Nail Polish Remover"],
    },
    "Kitchen": {
        "Coffee & Tea": ["Coffee Maker", "Coffee Beans", "Coffee Filters", "Milk Frother", "Tea Kettle", "Loose Leaf Tea"],
        "Cookware": ["Frying Pan", "Saucepan", "Dutch Oven", "Spatula", "Pan Lid"],
        "Baking": ["Baking Sheet", "Mixing Bowl", "Cake Pan", "Parchment Paper", "Stand Mixer"],
    },
    "Electronics": {
        "Phones": ["Smartphone", "Phone Case", "Screen Protector", "Phone Charger", "Power Bank"],
        "Audio": ["Headphones", "Earbuds", "Bluetooth Speaker", "Earbud Tips"],
        "Computer Accessories": ["Laptop", "Laptop Sleeve", "Wireless Mouse", "Mouse Pad", "Keyboard", "USB Hub"],
        "Cameras": ["Camera", "Memory Card", "Camera Bag", "Tripod", "Lens Cleaning Kit"],
    },
    "Sports": {
        "Running": ["Running Shoes", "Running Socks", "Sports Watch", "Hydration Belt", "Insoles"],
        "Fitness": ["Yoga Mat", "Yoga Block", "Dumbbells", "Resistance Bands", "Protein Powder", "Shaker Bottle"],
        "Cycling": ["Bike Helmet", "Bike Light", "Bike Lock", "Cycling Gloves", "Bike Pump"],
        "Camping": ["Tent", "Sleeping Bag", "Sleeping Pad", "Camping Stove", "Fuel Canister", "Headlamp"],
    },
    "Pets": {
        "Dogs": ["Dog Food", "Dog Treats", "Dog Leash", "Dog Collar", "Dog Bed", "Poop Bags"],
        "Cats": ["Cat Food", "Cat Litter", "Litter Box", "Scratching Post", "Cat Toy"],
        "Aquarium": ["Aquarium Tank", "Aquarium Filter", "Fish Food", "Water Conditioner"],
    },
}

# Directed "bought X, then needs Y" pairs between vocabulary leaves.
COMPLEMENTS: list[tuple[str, str]] = [
    ("Shampoo", "Conditioner"), ("Conditioner", "Hair Mask"), ("Hair Mask", "Hair Oil"),
    ("Hair Oil", "Shampoo"), ("Dry Shampoo", "Hair Oil"),
    ("Face Cleanser", "Moisturizer"), ("Moisturizer", "Serum"), ("Serum", "Sunscreen"),
    ("Sunscreen", "Moisturizer"), ("Eye Cream", "Serum"),
    ("Body Wash", "Body Lotion"), ("Body Lotion", "Hand Cream"), ("Hand Cream", "Body Lotion"),
    ("Bath Salts", "Body Lotion"),
    ("Mascara", "Eye Makeup Remover"), ("Eyeliner", "Mascara"), ("Eyeshadow Palette", "Eyeliner"),
    ("Eye Makeup Remover", "Face Cleanser"), ("Brow Pencil", "Mascara"),
    ("Foundation", "Concealer"), ("Concealer", "Setting Powder"), ("Setting Powder", "Makeup Sponge"),
    ("Blush", "Makeup Sponge"), ("Makeup Sponge", "Foundation"),
    ("Lipstick", "Lip Liner"), ("Lip Liner", "Lip Gloss"), ("Lip Balm", "Lipstick"), ("Lip Gloss", "Lip Balm"),
    ("Nail Polish", "Top Coat"), ("Base Coat", "Nail Polish"), ("Top Coat", "Nail Polish Remover"),
    ("Nail Polish Remover", "Base Coat"),
    ("Coffee Maker", "Coffee Beans"), ("Coffee Beans", "Coffee Filters"), ("Coffee Filters", "Coffee Beans"),
    ("Milk Frother", "Coffee Beans"), ("Tea Kettle", "Loose Leaf Tea"), ("Loose Leaf Tea", "Tea Kettle"),
    ("Frying Pan", "Spatula"), ("Saucepan", "Pan Lid"), ("Dutch Oven", "Pan Lid"), ("Spatula", "Frying Pan"),
    ("Pan Lid", "Saucepan"),
    ("Baking Sheet", "Parchment Paper"), ("Mixing Bowl", "Stand Mixer"), ("Cake Pan", "Parchment Paper"),
    ("Parchment Paper", "Baking Sheet"), ("Stand Mixer", "Mixing Bowl"),
    ("Smartphone", "Phone Case"), ("Phone Case", "Screen Protector"), ("Screen Protector", "Phone Charger"),
    ("Phone Charger", "Power Bank"), ("Power Bank", "Phone Charger"),
    ("Headphones", "Bluetooth Speaker"), ("Earbuds", "Earbud Tips"), ("Bluetooth Speaker", "Power Bank"),
    ("Earbud Tips", "Earbuds"),
    ("Laptop", "Laptop Sleeve"), ("Laptop Sleeve", "Wireless Mouse"), ("Wireless Mouse", "Mouse Pad"),
    ("Mouse Pad", "Keyboard"), ("Keyboard", "Wireless Mouse"), ("USB Hub", "Laptop Sleeve"),
    ("Camera", "Memory Card"), ("Memory Card", "Camera Bag"), ("Camera Bag", "Tripod"),
    ("Tripod", "Lens Cleaning Kit"), ("Lens Cleaning Kit", "Memory Card"),
    ("Running Shoes", "Running Socks"), ("Running Socks", "Insoles"), ("Sports Watch", "Hydration Belt"),
    ("Hydration Belt", "Running Socks"), ("Insoles", "Running Shoes"),
    ("Yoga Mat", "Yoga Block"), ("Yoga Block", "Resistance Bands"), ("Dumbbells", "Protein Powder"),
    ("Resistance Bands", "Yoga Mat"), ("Protein Powder", "Shaker Bottle"), ("Shaker Bottle", "Protein Powder"),
    ("Bike Helmet", "Bike Light"), ("Bike Light", "Bike Lock"), ("Bike Lock", "Bike Pump"),
    ("Cycling Gloves", "Bike Helmet"), ("Bike Pump", "Bike Light"),
    ("Tent", "Sleeping Bag"), ("Sleeping Bag", "Sleeping Pad"), ("Sleeping Pad", "Headlamp"),
    ("Camping Stove", "Fuel Canister"), ("Fuel Canister", "Camping Stove"), ("Headlamp", "Tent"),
    ("Dog Food", "Dog Treats"), ("Dog Treats", "Dog Food"), ("Dog Leash", "Poop Bags"),
    ("Dog Collar", "Dog Leash"), ("Dog Bed", "Dog Treats"), ("Poop Bags", "Dog Leash"),
    ("Cat Food", "Cat Toy"), ("Cat Litter", "Litter Box"), ("Litter Box", "Cat Litter"),
    ("Scratching Post", "Cat Toy"), ("Cat Toy", "Cat Food"),
    ("Aquarium Tank", "Aquarium Filter"), ("Aquarium Filter", "Water Conditioner"),
    ("Fish Food", "Water Conditioner"), ("Water Conditioner", "Fish Food"),
]

ADJECTIVES: dict[str, list[str]] = {
    "Beauty": ["Silk Repair", "Hydrating", "Volume Boost", "Gentle", "Argan", "Daily", "Clarifying", "Soothing",
               "Radiance", "Nourishing"],
    "Makeup": ["Longwear", "Matte", "Velvet", "Waterproof", "Luminous", "Sheer", "Volumizing", "Precision"],
    "Kitchen": ["Nonstick", "Cast Iron", "Stainless", "Artisan", "Everyday", "Barista", "Compact", "Classic"],
    "Electronics": ["Wireless", "Ultra", "Slim", "Rugged", "Noise Cancelling", "Fast Charge", "Pro", "4K"],
    "Sports": ["Trail", "Lightweight", "Breathable", "Ultralight", "All-Weather", "Performance", "Cushioned",
               "Reflective"],
    "Pets": ["Grain Free", "Chicken", "Salmon", "Senior", "Puppy", "Indoor", "Natural", "Dental"],
}

SIZES: dict[str, list[str]] = {
    "Beauty": ["50 ml", "100 ml", "250 ml", "400 ml", "1 L"],
    "Makeup": ["Shade 01", "Shade 02", "Shade 03", "Shade 05", "Shade 08", "3 ml", "10 ml"],
    "Kitchen": ["20 cm", "24 cm", "28 cm", "1 L", "1.5 L", "500 g", "1 kg"],
    "Electronics": ["32 GB", "64 GB", "128 GB", "256 GB", "2-pack", "Black", "White"],
    "Sports": ["Size S", "Size M", "Size L", "Size XL", "2-pack", "1 kg"],
    "Pets": ["1 kg", "2 kg", "5 kg", "12 kg", "Small", "Medium", "Large"],
}

LEAF_MODIFIERS = ["Travel", "Refill", "Kids", "Organic", "Mini", "Deluxe", "Eco", "Sport", "Classic", "Limited Edition"]
SYLLABLES = ["lu", "me", "ra", "ve", "xa", "ko", "ri", "na", "so", "ta", "mi", "zen", "or", "el", "fi", "da",
             "no", "va", "ka", "pel", "tri", "mo", "sa", "li", "qu", "bel", "ar", "is", "ot", "ne"]
TIERS = ("budget", "mid", "premium")
TIER_WORDS = {"budget": ["Basics", "Essentials", "Value"], "mid": [""], "premium": ["Luxe", "Pro", "Atelier", "Signature"]}

# Mixture constants that are not configuration.
P_FIRST_PERSONA = 0.7  # the first item of a sequence comes from a persona leaf
P_FAVOURITE_BRAND = 0.5  # inside a leaf, a favourite brand's item (when the user has one there)
REDRAWS = 3  # an already bought item is redrawn this many times at most
MIN_GAP_S, MAX_GAP_S = 60.0, 3 * 86400.0


# ---------------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------------


@dataclass
class Catalog:
    """The item catalog and everything the sequence generator samples from (numpy arrays).

    Items are indexed 0..n-1 (`item_ids[i]` is "i" + zero-padded i). Leaves, subcategories,
    departments and brands are indexed into their name lists.
    """

    item_ids: np.ndarray | None  # str; None in the copy broadcast to executors
    titles: np.ndarray | None  # str; None in the copy broadcast to executors
    leaf: np.ndarray  # int32 [n] leaf of each item
    brand: np.ndarray  # int32 [n] brand of each item
    popularity: np.ndarray  # float64 [n], sums to 1
    departments: list[str]
    subcategories: list[str]
    subcategory_department: np.ndarray  # int32 [n_subcategories]
    leaves: list[str]
    leaf_subcategory: np.ndarray  # int32 [n_leaves]
    leaf_department: np.ndarray  # int32 [n_leaves]
    brands: list[str]
    brand_department: np.ndarray  # int32 [n_brands]
    brand_tier: np.ndarray  # int8 [n_brands], index into TIERS
    trans_ptr: np.ndarray  # int64 [n_leaves + 1]: complements of leaf l are trans_idx[trans_ptr[l]:trans_ptr[l+1]]
    trans_idx: np.ndarray  # int32
    id_width: int
    # Sampling structures: items sorted by (leaf, brand), and by brand; cumulative popularity with a 0.
    order_lb: np.ndarray
    key_lb: np.ndarray  # leaf * n_brands + brand, sorted
    cum_lb: np.ndarray  # [n + 1]
    leaf_ptr: np.ndarray  # [n_leaves + 1] into order_lb
    order_b: np.ndarray
    brand_ptr: np.ndarray  # [n_brands + 1] into order_b
    cum_b: np.ndarray  # [n + 1]
    cum_all: np.ndarray  # [n + 1] over item index order
    leaf_pop: np.ndarray  # [n_leaves]
    brand_pop: np.ndarray  # [n_brands]
    dept_leaf_ptr: np.ndarray  # CSR department -> leaves
    dept_leaf_idx: np.ndarray
    dept_brand_ptr: np.ndarray  # CSR department -> brands
    dept_brand_idx: np.ndarray
    dept_leaf_cum: np.ndarray  # [n_leaves + 1] cumulative leaf popularity in dept_leaf_idx order
    dept_brand_cum: np.ndarray  # [n_brands + 1] cumulative brand popularity in dept_brand_idx order
    dept_pop: np.ndarray  # [n_departments]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_items(self) -> int:
        return len(self.leaf)

    def item_id(self, i: int) -> str:
        return f"i{i:0{self.id_width}d}"

    def complements(self, leaf: int) -> np.ndarray:
        return self.trans_idx[self.trans_ptr[leaf] : self.trans_ptr[leaf + 1]]

    @property
    def transitions(self) -> dict[int, list[int]]:
        """The complementary-leaf map as {leaf: [leaf, ...]}."""
        return {leaf: [int(x) for x in self.complements(leaf)] for leaf in range(len(self.leaves))}

    def categories(self, i: int) -> list[str]:
        leaf = int(self.leaf[i])
        return [
            self.departments[self.leaf_department[leaf]],
            self.subcategories[self.leaf_subcategory[leaf]],
            self.leaves[leaf],
        ]

    def for_executors(self) -> "Catalog":
        """A copy without the per-item strings (the generator formats ids from the index)."""
        return replace(self, item_ids=None, titles=None, _cache={})

    @property
    def complement_lists(self) -> list[list[int]]:
        """The transition map as Python lists (cached; the generator indexes it per event)."""
        got = self._cache.get("complements")
        if got is None:
            got = self._cache["complements"] = [list(map(int, self.complements(leaf))) for leaf in range(len(self.leaves))]
        return got


def id_width(count: int) -> int:
    return len(str(count))


def _csr(groups: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(groups, kind="stable")
    ptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=n_groups), out=ptr[1:])
    return ptr, values[order].astype(np.int32)


def _cum0(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=np.float64)
    np.cumsum(x, out=out[1:])
    return out


def _tree(n_leaves: int):
    """(departments, subcategories, subcat_dept, leaves, leaf_subcat, base_of_leaf) for n_leaves leaves."""
    base = [(d, s, leaf) for d, subs in TREE.items() for s, leaves in subs.items() for leaf in leaves]
    if n_leaves <= len(base):
        chosen = [(d, s, leaf, leaf) for d, s, leaf in base[:n_leaves]]
    else:
        chosen = [(d, s, leaf, leaf) for d, s, leaf in base]
        for k in range(n_leaves - len(base)):
            d, s, leaf = base[k % len(base)]
            r = k // len(base)
            name = f"{LEAF_MODIFIERS[r]} {leaf}" if r < len(LEAF_MODIFIERS) else f"{leaf} Line {r - len(LEAF_MODIFIERS) + 2}"
            chosen.append((d, s, name, leaf))
    departments = list(dict.fromkeys(d for d, _, _, _ in chosen))
    subcategories = list(dict.fromkeys(s for _, s, _, _ in chosen))
    sub_dept = {s: departments.index(d) for d, s, _, _ in chosen}
    subcat_dept = np.array([sub_dept[s] for s in subcategories], dtype=np.int32)
    leaves = [leaf for _, _, leaf, _ in chosen]
    assert len(set(leaves)) == len(leaves), "leaf names must be unique"
    leaf_subcat = np.array([subcategories.index(s) for _, s, _, _ in chosen], dtype=np.int32)
    base_of = [b for _, _, _, b in chosen]
    return departments, subcategories, subcat_dept, leaves, leaf_subcat, base_of


def _brand_names(rng: np.random.Generator, n: int, tiers: np.ndarray) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        k = 2 if rng.random() < 0.6 else 3
        base = "".join(SYLLABLES[j] for j in rng.integers(0, len(SYLLABLES), k)).capitalize()
        if base in seen:
            if len(seen) > 0.5 * len(SYLLABLES) ** 2:
                base = f"{base}{len(names)}"
            else:
                continue
        seen.add(base)
        words = TIER_WORDS[TIERS[tiers[len(names)]]]
        word = words[int(rng.integers(0, len(words)))]
        names.append(f"{base} {word}".strip())
    return names


def _transitions(rng: np.random.Generator, leaves, base_of, leaf_subcat, leaf_dept) -> tuple[np.ndarray, np.ndarray]:
    index = {name: i for i, name in enumerate(leaves)}
    comps: list[list[int]] = [[] for _ in leaves]
    for a, b in COMPLEMENTS:  # hand-written pairs between vocabulary leaves that are in the tree
        if a in index and b in index:
            comps[index[a]].append(index[b])
    n = len(leaves)
    all_leaves = np.arange(n)
    for leaf in range(n):
        # Seeded random pairs: inside the subcategory or the department, any leaf as a last resort.
        want = len(comps[leaf]) + (1 if rng.random() < 0.3 else 0) if comps[leaf] else (2 if rng.random() < 0.5 else 1)
        for _ in range(20):
            if len(comps[leaf]) >= want:
                break
            pool = all_leaves[leaf_subcat == leaf_subcat[leaf]] if rng.random() < 0.5 else all_leaves[leaf_dept == leaf_dept[leaf]]
            pool = [x for x in pool if x != leaf and x not in comps[leaf]]
            if not pool:
                pool = [x for x in all_leaves if x != leaf and x not in comps[leaf]]
            if not pool:
                break
            comps[leaf].append(int(pool[int(rng.integers(0, len(pool)))]))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(c) for c in comps], out=ptr[1:])
    idx = np.array([x for c in comps for x in c], dtype=np.int32)
    return ptr, idx


def catalog(cfg: SyntheticConfig) -> Catalog:
    """The deterministic item catalog of `cfg` (pure; no Spark)."""
    rng = np.random.default_rng([cfg.seed, 0x5EED, 0xCA7])
    n = cfg.items
    n_leaves = min(max(2, n // 4), max(sum(len(v) for s in TREE.values() for v in s.values()), n // 200))
    departments, subcategories, subcat_dept, leaves, leaf_subcat, base_of = _tree(n_leaves)
    leaf_dept = subcat_dept[leaf_subcat]
    n_depts = len(departments)

    # Items -> leaves: one item per leaf, the rest by leaf size weights; then shuffled.
    leaf_weight = rng.lognormal(0.0, 0.5, n_leaves)
    leaf = np.concatenate([np.arange(n_leaves), rng.choice(n_leaves, n - n_leaves, p=leaf_weight / leaf_weight.sum())])
    leaf = rng.permutation(leaf).astype(np.int32)
    item_dept = leaf_dept[leaf]

    # Brands: each in one department (every department has at least one), with a tier and a strength.
    n_brands = max(2 * n_depts, min(n // 12, 2000))
    brand_dept = np.concatenate([np.arange(n_depts), rng.integers(0, n_depts, n_brands - n_depts)]).astype(np.int32)
    brand_tier = rng.choice(3, n_brands, p=[0.3, 0.45, 0.25]).astype(np.int8)
    brand_strength = rng.lognormal(0.0, 0.75, n_brands)
    brands = _brand_names(rng, n_brands, brand_tier)
    dept_brand_ptr, dept_brand_idx = _csr(brand_dept, np.arange(n_brands), n_depts)

    brand = np.empty(n, dtype=np.int32)
    u = rng.random(n)
    for d in range(n_depts):
        members = dept_brand_idx[dept_brand_ptr[d] : dept_brand_ptr[d + 1]]
        w = _cum0(brand_strength[members])
        mask = item_dept == d
        pick = np.searchsorted(w, u[mask] * w[-1], side="right") - 1
        brand[mask] = members[np.clip(pick, 0, len(members) - 1)]

    rank = rng.permutation(n)
    popularity = (rank + 1.0) ** (-cfg.zipf) * brand_strength[brand]
    popularity /= popularity.sum()

    # Titles.
    adj_pick = rng.random(n)
    size_pick = rng.random(n)
    item_ids = np.array([f"i{i:0{id_width(n)}d}" for i in range(n)], dtype=object)
    titles = np.empty(n, dtype=object)
    for i in range(n):
        dept = departments[item_dept[i]]
        adjs, sizes = ADJECTIVES[dept], SIZES[dept]
        titles[i] = (
            f"{brands[brand[i]]} {adjs[int(adj_pick[i] * len(adjs))]} {leaves[leaf[i]]} {sizes[int(size_pick[i] * len(sizes))]}"
        )

    trans_ptr, trans_idx = _transitions(rng, leaves, base_of, leaf_subcat, leaf_dept)

    key = leaf.astype(np.int64) * n_brands + brand
    order_lb = np.argsort(key, kind="stable")
    order_b = np.argsort(brand, kind="stable")
    leaf_ptr = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(np.bincount(leaf, minlength=n_leaves), out=leaf_ptr[1:])
    brand_ptr = np.zeros(n_brands + 1, dtype=np.int64)
    np.cumsum(np.bincount(brand, minlength=n_brands), out=brand_ptr[1:])
    leaf_pop = np.bincount(leaf, weights=popularity, minlength=n_leaves)
    brand_pop = np.bincount(brand, weights=popularity, minlength=n_brands)
    dept_leaf_ptr, dept_leaf_idx = _csr(leaf_dept, np.arange(n_leaves), n_depts)
    dept_pop = np.bincount(leaf_dept, weights=leaf_pop, minlength=n_depts)

    return Catalog(
        item_ids=item_ids,
        titles=titles,
        leaf=leaf,
        brand=brand,
        popularity=popularity,
        departments=departments,
        subcategories=subcategories,
        subcategory_department=subcat_dept,
        leaves=leaves,
        leaf_subcategory=leaf_subcat,
        leaf_department=leaf_dept.astype(np.int32),
        brands=brands,
        brand_department=brand_dept,
        brand_tier=brand_tier,
        trans_ptr=trans_ptr,
        trans_idx=trans_idx,
        id_width=id_width(n),
        order_lb=order_lb.astype(np.int32),
        key_lb=key[order_lb],
        cum_lb=_cum0(popularity[order_lb]),
        leaf_ptr=leaf_ptr,
        order_b=order_b.astype(np.int32),
        brand_ptr=brand_ptr,
        cum_b=_cum0(popularity[order_b]),
        cum_all=_cum0(popularity),
        leaf_pop=leaf_pop,
        brand_pop=brand_pop,
        dept_leaf_ptr=dept_leaf_ptr,
        dept_leaf_idx=dept_leaf_idx,
        dept_brand_ptr=dept_brand_ptr,
        dept_brand_idx=dept_brand_idx,
        dept_leaf_cum=_cum0(leaf_pop[dept_leaf_idx]),
        dept_brand_cum=_cum0(brand_pop[dept_brand_idx]),
        dept_pop=dept_pop,
    )


def item_records(cat: Catalog):
    """items.jsonl rows, in item order."""
    for i in range(cat.n_items):
        yield {"item_id": cat.item_ids[i], "title": cat.titles[i], "categories": cat.categories(i), "brand": cat.brands[cat.brand[i]]}


# ---------------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------------


def _pick(cum0: np.ndarray, lo: int, hi: int, r: float) -> int:
    """A position in [lo, hi) drawn with the weights whose cumulative sums (with a leading 0) are cum0."""
    a = cum0[lo]
    j = int(cum0.searchsorted(a + r * (cum0[hi] - a), "right")) - 1
    return lo if j < lo else (hi - 1 if j >= hi else j)


def _distinct(rng: np.random.Generator, k: int, draw) -> list[int]:
    """Up to k distinct values of draw(uniform), by rejection (a few tries each)."""
    out: list[int] = []
    for _ in range(4 * k):
        if len(out) == k:
            break
        x = draw(rng.random())
        if x not in out:
            out.append(x)
    return out


@dataclass
class Persona:
    departments: list[int]
    leaves: list[int]
    brands: list[int]


def persona(rng: np.random.Generator, cat: Catalog) -> Persona:
    """1-2 departments (by popularity), 1-3 leaves and 1-2 favourite brands in them."""
    dept_cum = _cum0(cat.dept_pop)
    n_depts = len(cat.departments)
    depts = _distinct(rng, 1 + int(rng.random() < 0.4), lambda r: _pick(dept_cum, 0, n_depts, r))

    def leaf_of(r: float) -> int:
        d = depts[int(r * len(depts))]
        r = r * len(depts) % 1.0
        return int(cat.dept_leaf_idx[_pick(cat.dept_leaf_cum, int(cat.dept_leaf_ptr[d]), int(cat.dept_leaf_ptr[d + 1]), r)])

    def brand_of(r: float) -> int:
        d = depts[int(r * len(depts))]
        r = r * len(depts) % 1.0
        return int(cat.dept_brand_idx[_pick(cat.dept_brand_cum, int(cat.dept_brand_ptr[d]), int(cat.dept_brand_ptr[d + 1]), r)])

    leaves = _distinct(rng, int(rng.integers(1, 4)), leaf_of)
    brands = _distinct(rng, 1 + int(rng.random() < 0.4), brand_of)
    return Persona(depts, leaves, brands)


def sequence_length(rng: np.random.Generator, cfg: SyntheticConfig) -> int:
    extra_mean = max(cfg.mean_events_per_user - cfg.min_events_per_user, 0.0)
    extra = int(rng.geometric(1.0 / (extra_mean + 1.0))) - 1 if extra_mean > 0 else 0
    cap = max(cfg.min_events_per_user, int(20 * cfg.mean_events_per_user))
    return min(cfg.min_events_per_user + extra, cap)


def window(cfg: SyntheticConfig) -> tuple[int, int]:
    """(first, last) epoch second of the event window: `days` whole UTC days ending at end_date."""
    end_day = date.fromisoformat(cfg.end_date)
    last = int(datetime(end_day.year, end_day.month, end_day.day, 23, 59, 59, tzinfo=timezone.utc).timestamp())
    return last - cfg.days * 86400 + 1, last


def timestamps(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """n strictly increasing epoch seconds inside the window."""
    first, last = window(cfg)
    width = last - first + 1
    if n > width:
        raise ValueError(f"synthetic: {n} events do not fit into {cfg.days} days at one per second")
    gaps = np.exp(rng.uniform(math.log(MIN_GAP_S), math.log(MAX_GAP_S), n - 1))
    span = gaps.sum()
    if span > 0.9 * width:
        gaps *= 0.9 * width / span
    gaps = np.maximum(1, np.floor(gaps)).astype(np.int64)
    span = int(gaps.sum())
    if span > width - 1:  # only for absurdly long sequences in a tiny window
        gaps[:] = 1
        span = n - 1
    start = first + int(rng.random() * (width - span))
    start = min(start, last - span)
    out = np.empty(n, dtype=np.int64)
    out[0] = start
    np.cumsum(gaps, out=out[1:])
    out[1:] += start
    return out


class _Sampler:
    """Draws items for one user (favourite-brand ranges are looked up once per leaf)."""

    def __init__(self, cat: Catalog, who: Persona):
        self.cat = cat
        self.who = who
        self.nb = len(cat.brands)
        self._fav: dict[int, list[tuple[int, int]]] = {}

    def favourite_ranges(self, leaf: int) -> list[tuple[int, int]]:
        got = self._fav.get(leaf)
        if got is None:
            got = []
            for b in self.who.brands:
                k = leaf * self.nb + b
                lo = int(self.cat.key_lb.searchsorted(k, "left"))
                hi = int(self.cat.key_lb.searchsorted(k, "right"))
                if hi > lo:
                    got.append((lo, hi))
            self._fav[leaf] = got
        return got

    def in_leaf(self, leaf: int, r_fav: float, r_item: float) -> int:
        cat = self.cat
        fav = self.favourite_ranges(leaf)
        if fav and r_fav < P_FAVOURITE_BRAND:
            lo, hi = fav[int(r_fav / P_FAVOURITE_BRAND * len(fav))]
        else:
            lo, hi = int(cat.leaf_ptr[leaf]), int(cat.leaf_ptr[leaf + 1])
        return int(cat.order_lb[_pick(cat.cum_lb, lo, hi, r_item)])

    def of_brand(self, brand: int, r_item: float) -> int:
        cat = self.cat
        lo, hi = int(cat.brand_ptr[brand]), int(cat.brand_ptr[brand + 1])
        return int(cat.order_b[_pick(cat.cum_b, lo, hi, r_item)])

    def popular(self, r_item: float) -> int:
        return _pick(self.cat.cum_all, 0, self.cat.n_items, r_item)


def item_sequence(rng: np.random.Generator, n: int, who: Persona, cat: Catalog, cfg: SyntheticConfig) -> list[int]:
    """The user's n item indices, drawn from the mixture described in the module docstring."""
    s = _Sampler(cat, who)
    complements = cat.complement_lists
    pc = cfg.p_complement
    pp = pc + cfg.p_persona
    pb = pp + cfg.p_same_brand
    uniforms = rng.random((n, REDRAWS + 1, 4)).tolist()
    seen: set[int] = set()
    out: list[int] = []
    prev = -1
    for t in range(n):
        item = -1
        for mode_r, pick_r, fav_r, item_r in uniforms[t]:
            if prev < 0:
                if mode_r < P_FIRST_PERSONA and who.leaves:
                    item = s.in_leaf(who.leaves[int(pick_r * len(who.leaves))], fav_r, item_r)
                else:
                    item = s.popular(item_r)
            elif mode_r < pc:
                comps = complements[cat.leaf[prev]]
                item = s.in_leaf(comps[int(pick_r * len(comps))], fav_r, item_r)
            elif mode_r < pp and who.leaves:
                item = s.in_leaf(who.leaves[int(pick_r * len(who.leaves))], fav_r, item_r)
            elif mode_r < pb:
                item = s.of_brand(int(cat.brand[prev]), item_r)
            else:
                item = s.popular(item_r)
            if item not in seen:
                break
        seen.add(item)
        out.append(item)
        prev = item
    return out


def event_line(rec: dict) -> str:
    """The JSON line of an event record (the raw text for broken ones)."""
    raw = rec.get("raw")
    if raw is not None:
        return raw
    return f'{{"user_id":"{rec["user_id"]}","item_id":"{rec["item_id"]}","ts":"{rec["ts"]}","event":"{rec["event"]}"}}'


def user_id(user_index: int, cfg: SyntheticConfig) -> str:
    return f"u{user_index:0{id_width(cfg.users)}d}"


def user_events(user_index: int, catalog: Catalog, cfg: SyntheticConfig) -> list[dict]:
    """One user's records in file order (pure; no Spark).

    Good events are {user_id, item_id, ts, event}. A broken record carries the same keys (as written,
    where they exist) plus `bad` (its kind in BAD_KINDS) and `raw` (the exact line written).
    """
    cat = catalog
    rng = np.random.default_rng([cfg.seed, user_index])
    who = persona(rng, cat)
    n = sequence_length(rng, cfg)
    secs = timestamps(rng, n, cfg)
    items = item_sequence(rng, n, who, cat, cfg)
    bad = (rng.random(n) < cfg.bad_record_rate).tolist()
    kinds = rng.integers(0, len(BAD_KINDS), n).tolist()
    extra = rng.random(n).tolist()

    uid = user_id(user_index, cfg)
    ts = [f"{t}Z" for t in secs.astype("datetime64[s]").astype(str).tolist()]
    w = cat.id_width
    out: list[dict] = []
    for t in range(n):
        good = {"user_id": uid, "item_id": f"i{items[t]:0{w}d}", "ts": ts[t], "event": EVENT}
        out.append(good)
        if not bad[t]:
            continue
        kind = BAD_KINDS[kinds[t]]
        rec = dict(good)
        if kind == "malformed_json":
            line = event_line(good)
            rec["raw"] = line[: 10 + int(extra[t] * (len(line) - 12))]
        elif kind == "empty_user_id":
            rec["user_id"] = ""
        elif kind == "unparseable_ts":
            rec["ts"] = "not-a-date"
        elif kind == "absurd_ts":
            rec["ts"] = f"1971-01-01T{ts[t][11:]}" if extra[t] < 0.5 else f"2199{ts[t][4:]}"
        elif kind == "unknown_item":
            rec["item_id"] = f"ghost-{int(extra[t] * 1_000_000)}"
        # "duplicate" keeps the good fields as they are.
        if "raw" not in rec:
            rec["raw"] = event_line(rec)
        rec["bad"] = kind
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------------
# Spark
# ---------------------------------------------------------------------------------------------------

try:  # executors import this module too; keep Spark optional for the pure parts
    from pyspark.accumulators import AccumulatorParam

    class _VectorSum(AccumulatorParam):
        def zero(self, value):
            return [0] * len(value)

        def addInPlace(self, a, b):
            return [x + y for x, y in zip(a, b)]

except ImportError:  # pragma: no cover
    _VectorSum = None  # type: ignore[assignment,misc]


def default_partitions(cfg: SyntheticConfig) -> int:
    return cfg.partitions or max(2, cfg.users // USERS_PER_PARTITION)


def _generate_partition(users, catalog_bc, cfg: SyntheticConfig, counts_acc):
    cat = catalog_bc.value
    counts = [0] * (1 + len(BAD_KINDS))  # good events, then each bad kind
    kind_index = {k: i + 1 for i, k in enumerate(BAD_KINDS)}
    lines: list[str] = []
    for u in users:
        for rec in user_events(u, cat, cfg):
            counts[kind_index[rec["bad"]] if "bad" in rec else 0] += 1
            lines.append(event_line(rec))
        if len(lines) >= 4096:
            # saveAsTextFile ends every element with a newline: one element per block of users
            # writes the same bytes as one per line, with far fewer Python -> JVM round trips.
            yield "\n".join(lines)
            lines = []
    if lines:
        yield "\n".join(lines)
    counts_acc.add(counts)


def generate(spark, cfg: SyntheticConfig, out_dir: str | Path) -> dict:
    """Write items.jsonl (driver) and events/ (executors) under out_dir; return the counts.

    Counts: {"users", "items", "events" (good ones), "bad_records": {kind: n}, "lines" (all event
    lines), "partitions"}. Reruns replace earlier output and give byte-identical files.
    """
    out = Path(out_dir).expanduser().resolve()
    events_dir = out / "events"
    items_file = out / "items.jsonl"
    if events_dir.exists():
        shutil.rmtree(events_dir)
    items_file.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    cat = catalog(cfg)
    tmp = out / ".items.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        for rec in item_records(cat):
            f.write(json.dumps(rec, ensure_ascii=False))
            f.write("\n")
    tmp.replace(items_file)

    sc = spark.sparkContext
    parts = default_partitions(cfg)
    catalog_bc = sc.broadcast(cat.for_executors())
    counts_acc = sc.accumulator([0] * (1 + len(BAD_KINDS)), _VectorSum())
    try:
        # parallelize(range) slices lazily and in order: partition p holds users [p*U/P, (p+1)*U/P).
        # One result stage, so each task's accumulator update is merged exactly once.
        rdd = sc.parallelize(range(cfg.users), parts).mapPartitions(
            lambda it: _generate_partition(it, catalog_bc, cfg, counts_acc)
        )
        rdd.saveAsTextFile(events_dir.as_uri())
    finally:
        catalog_bc.unpersist()
    # Stable names with an extension; drop Hadoop's checksum side files.
    for crc in events_dir.glob(".*.crc"):
        crc.unlink()
    for part in sorted(events_dir.glob("part-*")):
        if not part.name.endswith(".jsonl"):
            part.rename(part.with_name(part.name + ".jsonl"))

    counts = counts_acc.value
    bad = {k: int(counts[i + 1]) for i, k in enumerate(BAD_KINDS)}
    return {
        "users": cfg.users,
        "items": cfg.items,
        "events": int(counts[0]),
        "bad_records": bad,
        "lines": int(counts[0]) + sum(bad.values()),
        "partitions": parts,
    }
