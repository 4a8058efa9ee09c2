"""The synthetic catalog's words: the category tree, hand-written complementary leaves, title words,
brand syllables and price tiers. Data only; gr2/etl/synthetic/items.py draws the catalog from it."""

from __future__ import annotations

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
