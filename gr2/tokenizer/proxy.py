"""Proxy catalogs for measuring the tokenizer at scale without a real catalog or a neural encoder.

* `clustered_embeddings`: vectors from a hierarchy of 64 topics x 32 subtopics plus Gaussian noise.
* `TextCatalog` + `text_embeddings`: generated product titles with a category / brand structure,
  embedded by hashed character n-gram TF-IDF and a fixed Gaussian random projection.

The text proxy. A catalog has departments > subcategories > leaf product nouns (large catalogs add
modified leaves, "Travel Shampoo", "Kids Shampoo", ...), brands that each live in one department with
a heavy-tailed (log-normal) size, 1-6 product lines per brand, and *families*: one brand + line +
adjectives + leaf + optional model code, sold in 1..n variants (mean 3) that differ only in colour or
scent, size and pack count, as parent/child listings do. A title reads like

    Velorina HydraPure Gentle Shampoo Lavender 250 ml
    Kotaxa Pro Wireless Headphones Graphite XR-450 Pack of 2

so near-duplicate titles are common, and a few titles repeat exactly, as in real catalogs.

The encoder is what sklearn's `HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5),
n_features=2**18, alternate_sign=False, norm=None)` + `TfidfTransformer` (smooth idf, document
frequencies from the first 200k titles) + a fixed N(0, 1/dim) projection to `dim` dimensions + L2
normalisation computes, but at 10M items on 2 cores: char_wb n-grams never cross a space, so a
title's n-gram counts are the sum of its phrases' counts, and its projected TF-IDF vector is the
sum of precomputed phrase vectors (one gather-add per title slot). Only ~10^5 distinct phrases are
ever hashed. It is not a neural sentence encoder: it sees spelling, not meaning; what it shares with
one is what matters here: items of one brand, line, leaf or family land close together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TREE: dict[str, dict[str, list[str]]] = {
    "Beauty": {"Hair Care": ["Shampoo", "Conditioner", "Hair Mask", "Hair Oil", "Dry Shampoo", "Hair Spray"],
               "Skin Care": ["Face Cleanser", "Moisturizer", "Serum", "Sunscreen", "Eye Cream", "Toner", "Face Mask"],
               "Bath & Body": ["Body Wash", "Body Lotion", "Hand Cream", "Bath Salts", "Bar Soap", "Deodorant"],
               "Fragrance": ["Eau de Parfum", "Eau de Toilette", "Body Mist", "Cologne"]},
    "Makeup": {"Eyes": ["Mascara", "Eyeliner", "Eyeshadow Palette", "Brow Pencil", "False Lashes"],
               "Face": ["Foundation", "Concealer", "Setting Powder", "Blush", "Bronzer", "Primer"],
               "Lips": ["Lipstick", "Lip Liner", "Lip Balm", "Lip Gloss"],
               "Nails": ["Nail Polish", "Base Coat", "Top Coat", "Nail Polish Remover", "Nail File"]},
    "Kitchen": {"Coffee & Tea": ["Coffee Maker", "Coffee Beans", "Coffee Filters", "Milk Frother", "Tea Kettle"],
                "Cookware": ["Frying Pan", "Saucepan", "Dutch Oven", "Stock Pot", "Wok", "Grill Pan"],
                "Baking": ["Baking Sheet", "Mixing Bowl", "Cake Pan", "Muffin Tin", "Stand Mixer"],
                "Cutlery": ["Chef Knife", "Knife Set", "Cutting Board", "Knife Sharpener"]},
    "Electronics": {"Phones": ["Smartphone", "Phone Case", "Screen Protector", "Phone Charger", "Power Bank"],
                    "Audio": ["Headphones", "Earbuds", "Bluetooth Speaker", "Soundbar", "Microphone"],
                    "Computers": ["Laptop", "Wireless Mouse", "Keyboard", "USB Hub", "Monitor", "Webcam"],
                    "Cameras": ["Camera", "Memory Card", "Camera Bag", "Tripod", "Lens Filter"]},
    "Sports": {"Running": ["Running Shoes", "Running Socks", "Sports Watch", "Hydration Belt", "Insoles"],
               "Fitness": ["Yoga Mat", "Dumbbells", "Resistance Bands", "Protein Powder", "Kettlebell"],
               "Cycling": ["Bike Helmet", "Bike Light", "Bike Lock", "Cycling Gloves", "Bike Pump"],
               "Camping": ["Tent", "Sleeping Bag", "Sleeping Pad", "Camping Stove", "Headlamp", "Backpack"]},
    "Pets": {"Dogs": ["Dog Food", "Dog Treats", "Dog Leash", "Dog Collar", "Dog Bed", "Dog Shampoo"],
             "Cats": ["Cat Food", "Cat Litter", "Litter Box", "Scratching Post", "Cat Toy"],
             "Aquarium": ["Aquarium Tank", "Aquarium Filter", "Fish Food", "Water Conditioner"]},
    "Home": {"Bedding": ["Sheet Set", "Duvet Cover", "Pillow", "Mattress Topper", "Blanket"],
             "Bath": ["Bath Towel", "Shower Curtain", "Bath Mat", "Towel Rack"],
             "Decor": ["Candle", "Picture Frame", "Wall Clock", "Vase", "Throw Pillow"],
             "Cleaning": ["Dish Soap", "Laundry Detergent", "Sponges", "Mop", "Trash Bags"]},
    "Toys": {"Building": ["Building Blocks", "Construction Set", "Magnetic Tiles"],
             "Games": ["Board Game", "Card Game", "Jigsaw Puzzle"],
             "Outdoor": ["Water Gun", "Kite", "Jump Rope", "Scooter"]},
}
ADJECTIVES = {
    "Beauty": ["Gentle", "Hydrating", "Nourishing", "Clarifying", "Soothing", "Argan", "Daily", "Repair", "Vitamin C",
               "Fragrance Free", "Organic", "Sensitive"],
    "Makeup": ["Longwear", "Matte", "Velvet", "Waterproof", "Luminous", "Sheer", "Volumizing", "Precision", "Satin"],
    "Kitchen": ["Nonstick", "Cast Iron", "Stainless Steel", "Ceramic", "Artisan", "Compact", "Programmable", "Classic"],
    "Electronics": ["Wireless", "Ultra Slim", "Rugged", "Noise Cancelling", "Fast Charge", "4K", "Portable", "USB-C"],
    "Sports": ["Trail", "Lightweight", "Breathable", "Ultralight", "All-Weather", "Cushioned", "Reflective", "Adjustable"],
    "Pets": ["Grain Free", "Chicken", "Salmon", "Senior", "Puppy", "Indoor", "Natural", "Dental", "Orthopedic"],
    "Home": ["Cotton", "Linen", "Microfiber", "Scented", "Modern", "Rustic", "Hypoallergenic", "Quick Dry"],
    "Toys": ["Educational", "Classic", "Deluxe", "Kids", "Family", "Creative", "Giant", "Mini"],
}
VARIANTS = ["Black", "White", "Navy", "Graphite", "Silver", "Rose Gold", "Red", "Blue", "Green", "Teal", "Coral", "Ivory",
            "Beige", "Charcoal", "Lavender", "Vanilla", "Coconut", "Citrus", "Mint", "Rose", "Sandalwood", "Ocean Breeze",
            "Unscented", "Original", "Berry", "Honey", "Almond", "Espresso", "Nude", "Ruby", "Plum", "Peach", "Sage",
            "Midnight", "Cherry Blossom", "Eucalyptus", "Jasmine", "Amber", "Oak", "Walnut", "Slate", "Sky Blue"]
UNITS = {"Beauty": ["ml", "fl oz", "oz", "g"], "Makeup": ["ml", "g", "oz", "Shade"], "Kitchen": ["Inch", "Quart", "Piece", "cm"],
         "Electronics": ["GB", "mAh", "W", "ft"], "Sports": ["lb", "kg", "Size", "L"], "Pets": ["lb", "kg", "oz", "Count"],
         "Home": ["Inch", "Count", "oz", "Piece"], "Toys": ["Piece", "Inch", "Count", "Set"]}
LEAF_MODIFIERS = ["Travel", "Refill", "Kids", "Mini", "Deluxe", "Eco", "Sport", "Professional", "Compact", "XL",
                  "Value Pack", "Limited Edition", "Premium", "Everyday"]
LINE_WORDS = ["Hydra", "Pure", "Ultra", "Active", "Max", "Pro", "Zen", "Glow", "Core", "Prime", "Essential", "Fresh",
              "Nova", "Bold", "Soft", "Edge", "Flex", "Aqua", "Terra", "Lux", "Vital", "Swift", "Calm", "Peak", "Bloom",
              "Clear", "Urban", "Wild", "Air", "Fusion", "Spark", "Silk", "Iron", "Cloud", "Sun", "Polar", "Velvet", "Nature"]
SYLLABLES = ["lu", "me", "ra", "ve", "xa", "ko", "ri", "na", "so", "ta", "mi", "zen", "or", "el", "fi", "da", "no", "va",
             "ka", "pel", "tri", "mo", "sa", "li", "qu", "bel", "ar", "is", "ot", "ne", "vio", "dra", "gus", "tor", "lin"]
NO = -1  # an empty slot


def clustered_embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered vectors: a hierarchy of 64 topics x 32 subtopics, with noise, like a category tree."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(64, dim))
    sub = rng.normal(scale=0.5, size=(64, 32, dim))
    t = rng.integers(0, 64, n)
    s = rng.integers(0, 32, n)
    x = topics[t] + sub[t, s] + rng.normal(scale=0.35, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class TextCatalog:
    """Titles as phrase ids: `slots[i]` [n, S] indexes `phrases` (NO = empty slot); title = the phrases joined."""

    phrases: list[str]
    slots: np.ndarray  # int32 [n, S]
    leaf: np.ndarray  # int32 [n]
    brand: np.ndarray  # int32 [n]
    family: np.ndarray  # int32 [n]

    def title(self, i: int) -> str:
        return " ".join(self.phrases[p] for p in self.slots[i] if p != NO)


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names, seen = [], set()
    while len(names) < n:
        k = int(rng.choice([2, 3, 3, 4]))
        name = "".join(SYLLABLES[j] for j in rng.integers(0, len(SYLLABLES), k)).capitalize()
        if name in seen:  # 35^2 + 35^3 + 35^4 names: a retry finds a new one quickly
            continue
        seen.add(name)
        names.append(name)
    return names


def text_catalog(n: int, seed: int = 0) -> TextCatalog:
    """A deterministic catalog of n titles (see the module docstring). Vectorised: ~1 s per million items."""
    rng = np.random.default_rng([seed, 0x7E47])
    depts = list(TREE)
    base = [(d, leaf) for d in depts for subs in TREE[d].values() for leaf in subs]
    n_leaves = min(len(base) * (1 + len(LEAF_MODIFIERS)), max(len(base), n // 300))
    leaves = [leaf for _, leaf in base] + [f"{m} {leaf}" for m in LEAF_MODIFIERS for _, leaf in base]
    leaf_dept = np.array([depts.index(d) for d, _ in base] * (1 + len(LEAF_MODIFIERS)))[:n_leaves]
    leaves = leaves[:n_leaves]
    n_brands = int(np.clip(n // 60, 2 * len(depts), 200_000))
    brands = _brand_names(rng, n_brands)
    brand_dept = rng.integers(0, len(depts), n_brands)
    brand_dept[: len(depts)] = np.arange(len(depts))
    brand_weight = rng.lognormal(0.0, 1.2, n_brands)
    lines_per_brand = rng.integers(1, 7, n_brands)
    # Phrase table: brands, line names, adjectives, leaves, variants, numbers, units, packs, model codes.
    line_names = LINE_WORDS + [a + b.lower() for a in LINE_WORDS for b in LINE_WORDS if a != b]
    adjectives = [a for d in depts for a in ADJECTIVES[d]]
    adj_start = np.cumsum([0] + [len(ADJECTIVES[d]) for d in depts])
    units = [u for d in depts for u in UNITS[d]]
    numbers = sorted({f"{float(f'{v:.2g}'):g}" for v in np.geomspace(1, 2000, 160)} | {str(v) for v in range(1, 65)})
    codes = [f"{chr(65 + a)}{chr(65 + b)}-{c}" for a, b, c in zip(rng.integers(0, 26, 20000), rng.integers(0, 26, 20000), rng.integers(10, 9999, 20000))]
    blocks = [brands, line_names, adjectives, leaves, VARIANTS, numbers, units, [f"Pack of {k}" for k in range(2, 25)], codes]
    offset = np.cumsum([0] + [len(b) for b in blocks])
    phrases = [p for b in blocks for p in b]
    # Families: brand (by weight inside its department), line, 0-2 adjectives, leaf of the department, model code.
    n_fam = max(1, int(n / 3))
    dept_weight = rng.lognormal(0.0, 0.5, len(depts))
    fam_dept = rng.choice(len(depts), n_fam, p=dept_weight / dept_weight.sum())
    fam_brand = np.empty(n_fam, np.int64)
    fam_leaf = np.empty(n_fam, np.int64)
    leaf_weight = rng.lognormal(0.0, 0.7, n_leaves)
    for d in range(len(depts)):
        members, ls = np.flatnonzero(brand_dept == d), np.flatnonzero(leaf_dept == d)
        at = np.flatnonzero(fam_dept == d)
        fam_brand[at] = rng.choice(members, len(at), p=brand_weight[members] / brand_weight[members].sum())
        fam_leaf[at] = rng.choice(ls, len(at), p=leaf_weight[ls] / leaf_weight[ls].sum())
    brand_line0 = rng.integers(0, len(line_names), n_brands)  # a brand's lines are consecutive line names
    fam_line = (brand_line0[fam_brand] + rng.integers(0, lines_per_brand[fam_brand])) % len(line_names)
    n_adj = np.array([adj_start[d + 1] - adj_start[d] for d in range(len(depts))])
    k_adj = rng.choice(3, n_fam, p=[0.3, 0.5, 0.2])
    fam_adj1 = np.where(k_adj >= 1, adj_start[fam_dept] + rng.integers(0, n_adj[fam_dept]), NO)
    fam_adj2 = np.where(k_adj >= 2, adj_start[fam_dept] + rng.integers(0, n_adj[fam_dept]), NO)
    fam_adj2 = np.where(fam_adj2 == fam_adj1, NO, fam_adj2)
    fam_code = np.where(rng.random(n_fam) < 0.3, rng.integers(0, len(codes), n_fam), NO)
    fam_unit = 4 * fam_dept + rng.integers(0, 4, n_fam)
    # Items: a family each (every family has at least one item; sizes ~ 1 + Poisson(2)), then variant slots.
    sizes = 1 + rng.poisson(2.0, n_fam)
    fam = np.repeat(np.arange(n_fam), sizes)[:n]
    if len(fam) < n:
        fam = np.concatenate([fam, rng.integers(0, n_fam, n - len(fam))])
    fam = rng.permutation(fam).astype(np.int32)

    def at(block: int, idx) -> np.ndarray:
        idx = np.asarray(idx)
        return np.where(idx == NO, NO, offset[block] + idx)

    slots = np.stack([
        at(0, fam_brand[fam]), at(1, fam_line[fam]), at(2, fam_adj1[fam]), at(2, fam_adj2[fam]), at(3, fam_leaf[fam]),
        at(4, np.where(rng.random(n) < 0.7, rng.integers(0, len(VARIANTS), n), NO)),
        at(5, rng.integers(0, len(numbers), n)), at(6, fam_unit[fam]),
        at(8, fam_code[fam]), at(7, np.where(rng.random(n) < 0.15, rng.integers(0, 23, n), NO)),
    ], axis=1).astype(np.int32)
    return TextCatalog(phrases=phrases, slots=slots, leaf=fam_leaf[fam].astype(np.int32), brand=fam_brand[fam].astype(np.int32), family=fam)


def _vectorizer(n_features: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=n_features, alternate_sign=False, norm=None)


def _title_counts(cat: TextCatalog, phrase_counts, rows: np.ndarray):
    """Sparse n-gram counts of the titles `rows`: the sum of their phrases' counts."""
    from scipy.sparse import csr_matrix

    s = cat.slots[rows]
    r, c = np.nonzero(s != NO)
    onehot = csr_matrix((np.ones(len(r), np.float32), (r, s[r, c])), shape=(len(rows), len(cat.phrases)))
    return onehot @ phrase_counts


def text_embeddings(cat: TextCatalog, dim: int = 128, n_features: int = 2**18, idf_items: int = 200_000,
                    seed: int = 0, chunk: int = 1_000_000) -> np.ndarray:
    """Hashed char n-gram TF-IDF titles projected to `dim` dims, L2-normalised -> float32 [n, dim]."""
    n = len(cat.slots)
    phrase_counts = _vectorizer(n_features).transform(cat.phrases).astype(np.float32).tocsr()
    df = np.asarray((_title_counts(cat, phrase_counts, np.arange(min(n, idf_items))) > 0).sum(0)).ravel()
    m = min(n, idf_items)
    idf = (np.log((1 + m) / (1 + df)) + 1).astype(np.float32)
    proj = np.random.default_rng([seed, 0x9C0]).standard_normal((n_features, dim), dtype=np.float32) / np.sqrt(dim)
    phrase_vec = np.vstack([np.asarray(phrase_counts.multiply(idf[None, :]).tocsr() @ proj, np.float32), np.zeros((1, dim), np.float32)])
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        s = cat.slots[start : start + chunk]
        acc = np.zeros((len(s), dim), np.float32)
        for j in range(s.shape[1]):
            acc += phrase_vec[s[:, j]]  # NO = -1 picks the zero row
        out[start : start + chunk] = acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)
    return out
