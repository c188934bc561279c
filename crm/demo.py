"""Synthetic demo business generator (pure numpy / pandas, no Django).

``generate()`` returns three DataFrames -- ``customers``, ``products`` and
``interactions`` -- whose columns are exactly the CRM's CSV import format, so a
caller can simply ``df.to_csv(path, index=False)`` each of them.

The data has real, recoverable structure for the ML parts of the CRM:

* customers belong to one of several latent kinds (``demo_kind`` column):
  ``loyal`` (frequent, gamma-regular inter-purchase times), ``big_occasional``
  (rare but large baskets), ``lapsing`` (active, then drop out after a geometric
  number of orders), ``one_off`` (a single purchase), ``bargain`` (many small,
  cheap, discounted orders) and ``refund_prone`` (refund 20-40% of orders);
* each customer has a Dirichlet taste vector over product categories and a few
  favourite products re-bought on a per-product replenishment rhythm;
* some products have a complement (printer -> toner, coffee -> filters ...)
  that is added to the basket with high probability;
* purchases follow a weekly pattern and a yearly Nov/Dec bump (implemented by
  time-warping each customer's renewal process through a cumulative intensity);
* views precede some purchases, refunds follow purchases (same order_ref / sku,
  amount <= purchase amount), support tickets precede some refunds, and sales
  reps log calls, meetings and notes for the accounts they own.

Everything is vectorised numpy: there is no Python loop per customer or per
interaction (only per category / per product for catalogue text).
Deterministic for a given ``seed`` (and ``end``).
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORY_NAMES",
    "CUSTOMER_COLUMNS",
    "INTERACTION_COLUMNS",
    "INTERACTION_TYPES",
    "KINDS",
    "PRODUCT_COLUMNS",
    "generate",
]

CUSTOMER_COLUMNS = [
    "external_id", "name", "email", "phone", "company", "country", "city",
    "signup_date", "owner", "demo_kind",
]
PRODUCT_COLUMNS = ["sku", "name", "category", "price", "description", "tags", "active"]
INTERACTION_COLUMNS = [
    "customer_external_id", "type", "occurred_at", "product_sku", "quantity", "amount",
    "order_ref", "external_id", "channel", "notes",
]
INTERACTION_TYPES = ["purchase", "refund", "view", "email", "call", "meeting", "support", "note"]
_T = {t: i for i, t in enumerate(INTERACTION_TYPES)}

CHANNELS = ["web", "store", "phone", "email", "app", "chat", "in_person", "video", "internal"]
_CH = {c: i for i, c in enumerate(CHANNELS)}

# --------------------------------------------------------------------------------------
# Latent customer kinds and their behavioural parameters (arrays indexed by kind code).
# --------------------------------------------------------------------------------------
KINDS = ["loyal", "big_occasional", "lapsing", "one_off", "bargain", "refund_prone"]
_KIND_MIX = np.array([0.18, 0.07, 0.22, 0.30, 0.12, 0.11])
_GAP_LO = np.array([14.0, 90.0, 14.0, 30.0, 18.0, 30.0])     # personal mean gap (days), low
_GAP_HI = np.array([35.0, 180.0, 40.0, 30.0, 35.0, 60.0])   # ... high
_GAP_SHAPE = np.array([9.0, 1.5, 1.5, 1.0, 2.5, 2.5])        # gamma shape (higher = more regular)
_FIRST_DELAY = np.array([2.0, 10.0, 3.0, 2.0, 2.0, 3.0])     # mean days signup -> first order
_EXPLORE = np.array([0.3, 3.5, 0.8, 1.2, 0.25, 0.8])        # extra taste-driven lines per order
_FAV_LO = np.array([1, 0, 1, 0, 1, 1])
_FAV_HI = np.array([3, 2, 2, 0, 2, 2])
_QTY = np.array([0.5, 2.5, 0.4, 0.3, 0.15, 0.4])            # quantity = 1 + Poisson(.)
_PRICE_BIAS = np.array([0, 1, 0, 0, -1, 0])                  # -1 cheaper of 2, +1 dearer of 2
_OWNED = np.array([0.85, 0.97, 0.75, 0.45, 0.6, 0.75])       # P(account has a sales rep)
_COMPANY = np.array([0.6, 0.92, 0.5, 0.35, 0.3, 0.45])       # P(B2B customer)
_CALLS = np.array([1.0, 4.0, 1.0, 0.4, 0.5, 1.5])           # call-rate multiplier
_VIEWS = np.array([1.0, 0.6, 0.8, 0.5, 2.0, 1.0])           # browse-rate multiplier
# order channel mix (web, store, phone)
_ORDER_CH = np.array([
    [0.55, 0.35, 0.10],
    [0.35, 0.15, 0.50],
    [0.60, 0.30, 0.10],
    [0.60, 0.35, 0.05],
    [0.80, 0.18, 0.02],
    [0.75, 0.20, 0.05],
])

# --------------------------------------------------------------------------------------
# Product catalogue word lists.
# --------------------------------------------------------------------------------------
_CATS = [
    {"name": "Coffee", "median": 12.0, "sigma": 0.45, "replen": 21, "weight": 1.4,
         "brands": ["Bean Republic", "Roastery No.7", "Highland Roasters", "Kaffa & Co", "Morning Ritual"],
         "adjs": ["Dark Roast", "Medium Roast", "Light Roast", "Organic", "Fair-Trade", "House Blend",
               "Colombian", "Ethiopian", "Brazilian", "Sumatra"],
         "nouns": ["Espresso Beans", "Filter Coffee", "Ground Coffee", "Coffee Capsules", "Cold Brew Coffee",
                "Decaf Beans", "Whole Beans"],
         "sizes": ["250 g", "500 g", "1 kg", "Pack of 10", "Pack of 50"],
         "words": ["rich chocolatey body", "notes of caramel", "bright fruity acidity", "smooth crema",
                "freshly roasted arabica", "intense aroma", "low bitterness", "nutty finish"],
         "tags": ["coffee", "caffeine", "beans", "roast", "espresso", "organic", "fair-trade"]},
    {"name": "Tea", "median": 8.0, "sigma": 0.45, "replen": 30, "weight": 0.9,
         "brands": ["Leaf & Kettle", "Jade Garden", "Darjeeling House", "Steep Society"],
         "adjs": ["Green", "Black", "Earl Grey", "Chamomile", "Peppermint", "Jasmine", "Rooibos", "Oolong",
               "Sencha", "Chai"],
         "nouns": ["Tea Bags", "Loose Leaf Tea", "Herbal Infusion", "Matcha Powder", "Iced Tea Blend"],
         "sizes": ["20 bags", "50 bags", "100 g", "250 g", "Tin"],
         "words": ["delicate floral aroma", "calming herbal blend", "whole leaf quality", "brisk malty flavour",
                "naturally caffeine free", "hand picked leaves", "antioxidant rich"],
         "tags": ["tea", "herbal", "infusion", "loose-leaf", "green-tea", "organic"]},
    {"name": "Snacks", "median": 4.0, "sigma": 0.5, "replen": 14, "weight": 1.2,
         "brands": ["Crunch Lab", "Nutty Friends", "Golden Oven", "Snack Shack"],
         "adjs": ["Salted", "Dark Chocolate", "Honey Roasted", "Oat", "Protein", "Spicy", "Sea Salt",
               "Almond", "Butter"],
         "nouns": ["Biscuits", "Cookies", "Granola Bars", "Mixed Nuts", "Crackers", "Crisps", "Pretzels"],
         "sizes": ["Single", "Pack of 6", "Pack of 12", "Family Pack", "Box of 24"],
         "words": ["crunchy texture", "baked not fried", "perfect with coffee", "high in fibre",
                "office snack favourite", "no artificial colours", "resealable pack"],
         "tags": ["snacks", "biscuits", "nuts", "sweet", "savory", "vegan"]},
    {"name": "Beverages", "median": 3.0, "sigma": 0.5, "replen": 10, "weight": 0.9,
         "brands": ["Clear Spring", "Fizz Factory", "Orchard Press", "Alpine Water"],
         "adjs": ["Sparkling", "Still", "Lemon", "Orange", "Apple", "Ginger", "Sugar-Free", "Tropical"],
         "nouns": ["Mineral Water", "Juice", "Soda", "Lemonade", "Iced Tea", "Energy Drink", "Kombucha"],
         "sizes": ["330 ml", "500 ml", "1 l", "Crate of 12", "Crate of 24"],
         "words": ["refreshing taste", "served chilled", "natural fruit juice", "lightly carbonated",
                "no added sugar", "glass bottle", "recyclable can"],
         "tags": ["drinks", "water", "juice", "soda", "sugar-free", "refreshment"]},
    {"name": "Office supplies", "median": 9.0, "sigma": 0.7, "replen": 60, "weight": 1.2,
         "brands": ["DeskPro", "Paperline", "OfficeMate", "Clipwell"],
         "adjs": ["A4", "Recycled", "Premium", "Heavy-Duty", "Colour", "Ergonomic", "Executive"],
         "nouns": ["Copy Paper", "Notebooks", "Ballpoint Pens", "Stapler", "Sticky Notes", "File Folders",
                "Desk Organizer", "Whiteboard Markers", "Envelopes"],
         "sizes": ["Ream of 500", "Box of 5", "Pack of 10", "Pack of 50", "Single"],
         "words": ["smooth writing", "bright white sheets", "jam free printing", "durable construction",
                "keeps your desk tidy", "made from recycled material", "bulk office value"],
         "tags": ["office", "paper", "stationery", "pens", "desk", "filing"]},
    {"name": "Printers", "median": 220.0, "sigma": 0.5, "replen": 100000, "weight": 0.35,
         "brands": ["Printek", "InkStar", "LaserWave", "Copyrite"],
         "adjs": ["Laser", "Inkjet", "Colour Laser", "Mono Laser", "All-in-One", "Wireless", "Compact"],
         "nouns": ["Printer", "Multifunction Printer", "Photo Printer", "Label Printer", "Scanner Printer"],
         "sizes": ["P100", "P220", "X350", "X500", "Pro 700", "M90"],
         "words": ["fast duplex printing", "wireless network printing", "crisp text output",
                "low cost per page", "compact footprint", "mobile printing support"],
         "tags": ["printer", "printing", "laser", "inkjet", "wireless", "office-hardware"]},
    {"name": "Ink & toner", "median": 45.0, "sigma": 0.4, "replen": 90, "weight": 0.7,
         "brands": ["Printek", "InkStar", "LaserWave", "Copyrite"],
         "adjs": ["Black", "Cyan", "Magenta", "Yellow", "High-Yield", "Tri-Colour", "XL"],
         "nouns": ["Toner Cartridge", "Ink Cartridge", "Drum Unit", "Ink Bottle", "Toner Multipack"],
         "sizes": ["Standard", "XL", "Twin Pack", "Value Pack"],
         "words": ["sharp prints", "reliable page yield", "original quality ink", "easy cartridge swap",
                "smudge resistant", "vivid colours"],
         "tags": ["ink", "toner", "cartridge", "printing", "refill"]},
    {"name": "Cleaning", "median": 7.0, "sigma": 0.5, "replen": 40, "weight": 0.9,
         "brands": ["Sparkle", "PureHome", "EcoClean", "Shine Bright"],
         "adjs": ["Multi-Surface", "Antibacterial", "Lemon", "Eco", "Fragrance-Free", "Concentrated"],
         "nouns": ["Cleaning Spray", "Dish Soap", "Microfiber Cloths", "Floor Cleaner", "Hand Soap",
                "Bin Bags", "Paper Towels", "Sponges"],
         "sizes": ["500 ml", "1 l", "5 l", "Pack of 10", "Roll of 50"],
         "words": ["kills 99.9% of germs", "streak free shine", "plant based formula", "gentle on hands",
                "biodegradable", "fresh scent"],
         "tags": ["cleaning", "hygiene", "eco", "kitchen", "bathroom", "disinfectant"]},
    {"name": "Electronics accessories", "median": 25.0, "sigma": 0.7, "replen": 400, "weight": 0.8,
         "brands": ["Voltix", "CableCo", "Nordic Tech", "Plugged"],
         "adjs": ["USB-C", "Wireless", "Fast-Charging", "Bluetooth", "Ergonomic", "Noise-Cancelling", "HDMI"],
         "nouns": ["Charging Cable", "Power Adapter", "Wireless Mouse", "Keyboard", "Headphones", "Webcam",
                "Laptop Stand", "Docking Station", "Power Bank"],
         "sizes": ["1 m", "2 m", "Black", "White", "Pro", "Mini"],
         "words": ["plug and play", "long battery life", "braided cable", "universal compatibility",
                "crystal clear audio", "compact travel design"],
         "tags": ["electronics", "usb", "wireless", "accessories", "charging", "computer"]},
    {"name": "Kitchen", "median": 18.0, "sigma": 0.6, "replen": 180, "weight": 0.7,
         "brands": ["ChefLine", "Home & Hearth", "BrewMaster", "Kitchenry"],
         "adjs": ["Stainless Steel", "Ceramic", "Glass", "Reusable", "Insulated", "Paper"],
         "nouns": ["Coffee Filters", "Mugs", "French Press", "Travel Mug", "Tea Infuser", "Kettle",
                "Milk Frother", "Water Bottle"],
         "sizes": ["Pack of 100", "Set of 4", "350 ml", "1 l", "Single"],
         "words": ["dishwasher safe", "keeps drinks hot", "barista quality", "BPA free",
                "perfect brewing companion", "elegant design"],
         "tags": ["kitchen", "brewing", "mugs", "coffee-gear", "tea-gear", "reusable"]},
    {"name": "Personal care", "median": 8.0, "sigma": 0.5, "replen": 35, "weight": 0.7,
         "brands": ["Bloom", "Natura", "Fresh Daily", "Calm Skin"],
         "adjs": ["Moisturizing", "Sensitive", "Aloe Vera", "Unscented", "Vitamin E", "Travel"],
         "nouns": ["Hand Cream", "Shampoo", "Shower Gel", "Toothpaste", "Hand Sanitizer", "Lip Balm",
                "Face Wipes"],
         "sizes": ["50 ml", "250 ml", "500 ml", "Pack of 3"],
         "words": ["dermatologically tested", "gentle everyday care", "natural ingredients",
                "long lasting hydration", "vegan formula", "travel friendly size"],
         "tags": ["personal-care", "skin", "hygiene", "vegan", "sensitive"]},
    {"name": "Pet supplies", "median": 15.0, "sigma": 0.6, "replen": 30, "weight": 0.6,
         "brands": ["Happy Paws", "Whisker Co", "Good Boy", "Purrfect"],
         "adjs": ["Grain-Free", "Chicken", "Salmon", "Puppy", "Senior", "Dental", "Organic"],
         "nouns": ["Dog Food", "Cat Food", "Cat Litter", "Dog Treats", "Chew Toy", "Pet Shampoo",
                "Food Bowl"],
         "sizes": ["1 kg", "3 kg", "10 kg", "Pack of 12", "Single"],
         "words": ["complete balanced nutrition", "vet recommended", "high protein recipe",
                "supports healthy teeth", "durable for play", "tasty for fussy eaters"],
         "tags": ["pets", "dog", "cat", "pet-food", "treats"]},
]
CATEGORY_NAMES = [c["name"] for c in _CATS]
# complement map: category -> (partner category, P(product has a partner))
_COMPLEMENT = {
    "Printers": ("Ink & toner", 1.0),
    "Coffee": ("Kitchen", 0.35),
    "Tea": ("Snacks", 0.35),
    "Electronics accessories": ("Electronics accessories", 0.35),
    "Pet supplies": ("Pet supplies", 0.35),
    "Kitchen": ("Cleaning", 0.25),
}
_COMPLEMENT_P = 0.6  # P(partner is put into the basket when the product is)
# kind-specific taste tilts (multiplies the Dirichlet alpha of the category)
_TASTE_TILT = {
    "big_occasional": {"Printers": 4.0, "Electronics accessories": 2.5, "Office supplies": 2.0,
                       "Kitchen": 1.5, "Ink & toner": 2.0},
    "bargain": {"Snacks": 2.5, "Beverages": 2.5, "Cleaning": 1.5, "Printers": 0.1},
    "refund_prone": {"Electronics accessories": 2.0},
}

# --------------------------------------------------------------------------------------
# People / places word lists (ascii only so emails are clean).
# --------------------------------------------------------------------------------------
_FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
          "Karin", "Liam", "Maria", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Samuel", "Tara",
          "Umar", "Vera", "William", "Xenia", "Yusuf", "Zoe", "Aisha", "Bruno", "Chloe", "Diego",
          "Elena", "Farid", "Giulia", "Hannah", "Ivan", "Julia", "Kenji", "Lena", "Mateo", "Nina",
          "Oscar", "Priya", "Rafael", "Sofia", "Tomas", "Ursula", "Viktor", "Wen", "Yara", "Lucas",
          "Mia", "Arjun", "Fatima", "Leo", "Amelie", "Omar", "Ingrid", "Pedro", "Sara", "Jack"]
_LAST = ["Smith", "Muller", "Garcia", "Rossi", "Dubois", "Jansen", "Kowalski", "Novak", "Silva",
         "Nielsen", "Schmidt", "Brown", "Martin", "Lopez", "Bianchi", "Moreau", "De Vries", "Nowak",
         "Santos", "Hansen", "Fischer", "Taylor", "Bernard", "Fernandez", "Romano", "Laurent",
         "Bakker", "Wojcik", "Costa", "Larsen", "Weber", "Wilson", "Petit", "Gonzalez", "Ricci",
         "Lefebvre", "Visser", "Kaminski", "Pereira", "Andersen", "Wagner", "Evans", "Richard",
         "Sanchez", "Greco", "Fontaine", "Smit", "Lewandowski", "Oliveira", "Berg", "Khan", "Patel",
         "Chen", "Tanaka", "Ivanova", "Okafor", "Haddad", "Kim", "Nguyen", "Murphy"]
_CO_PREFIX = ["Northwind", "Blue Harbor", "Acme", "Summit", "Greenleaf", "Silver Birch", "Redwood",
              "Bright Path", "Oak & Ivy", "Polar", "Cedar", "Harbor Light", "Golden Gate", "Nimbus",
              "Riverside", "Stonebridge", "Maple", "Evergreen", "Bluebird", "Ironworks", "Lighthouse",
              "Sunrise", "Copperfield", "Westwind", "Everest", "Atlas", "Meridian", "Orchard",
              "Pinecrest", "Vantage", "Horizon", "Crescent", "Falcon", "Brookside", "Quarry",
              "Kingfisher", "Lakeshore", "Highland", "Juniper", "Beacon"]
_CO_SUFFIX = ["Trading", "Logistics", "Cafe", "Studio", "GmbH", "Ltd", "Partners", "Supplies",
              "Consulting", "Bakery", "Architects", "Dental", "Legal", "Coworking", "Hotel"]
_FREE_DOMAINS = ["example.com", "example.net", "example.org", "mail.example"]
# country, phone code, weight, cities
_COUNTRIES = [
    ("Germany", "49", 0.18, ["Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt"]),
    ("France", "33", 0.12, ["Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux"]),
    ("United Kingdom", "44", 0.14, ["London", "Manchester", "Bristol", "Leeds", "Edinburgh"]),
    ("Netherlands", "31", 0.07, ["Amsterdam", "Rotterdam", "Utrecht", "Eindhoven"]),
    ("Spain", "34", 0.08, ["Madrid", "Barcelona", "Valencia", "Seville"]),
    ("Italy", "39", 0.08, ["Rome", "Milan", "Turin", "Bologna", "Naples"]),
    ("Poland", "48", 0.06, ["Warsaw", "Krakow", "Gdansk", "Wroclaw"]),
    ("Sweden", "46", 0.05, ["Stockholm", "Gothenburg", "Malmo"]),
    ("United States", "1", 0.15, ["New York", "Chicago", "Austin", "Seattle", "Boston", "Denver"]),
    ("Canada", "1", 0.07, ["Toronto", "Vancouver", "Montreal", "Calgary"]),
]

# note templates by interaction type
_NOTES = {
    "email": ["Newsletter: new arrivals", "Monthly offers", "Your order has shipped",
              "We miss you - 10% off your next order", "Seasonal sale starts now",
              "Reorder reminder", "Product tips and recipes", "Gift ideas for your team"],
    "call": ["Discussed reorder schedule", "Left voicemail, will call back", "Follow-up on quote",
             "Asked about bulk pricing", "Checked satisfaction with last delivery",
             "Introduced new product range", "Customer requested callback next week",
             "Negotiated annual contract terms"],
    "meeting": ["Quarterly business review", "Product demo at customer office", "Contract renewal meeting",
                "Onboarding session", "Lunch meeting with decision maker", "Site visit"],
    "support": ["Question about delivery time", "Invoice copy requested", "Changed delivery address",
                "Asked how to use product", "Login problem on web shop", "Missing item in parcel",
                "Asked about warranty"],
    "support_refund": ["Item arrived damaged", "Wrong item delivered", "Product not as described",
                       "Requested return label", "Quality complaint", "Ordered by mistake"],
    "note": ["Prefers delivery on Mondays", "Interested in bulk pricing", "Price sensitive, send coupons",
             "Key decision maker is the office manager", "Budget approved for next quarter",
             "Considering competitor offer", "Very happy with service", "Wants invoice by email only",
             "Potential upsell: coffee machine", "Follow up after holidays"],
}
_NOTE_KEYS = list(_NOTES)
_NOTE_LIST = [s for k in _NOTE_KEYS for s in _NOTES[k]]
_NOTE_OFF = {}
_o = 0
for _k in _NOTE_KEYS:
    _NOTE_OFF[_k] = (_o, len(_NOTES[_k]))
    _o += len(_NOTES[_k])
del _o, _k

_DAY = 86400


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _ids(prefix: str, nums: np.ndarray, width: int) -> np.ndarray:
    """Fast vectorised ``f"{prefix}{n:0{width}d}"`` -> numpy unicode array."""
    nums = np.asarray(nums, dtype=np.int64)
    pows = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    p = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    mat = np.empty((len(nums), len(p) + width), dtype=np.uint8)
    mat[:, : len(p)] = p
    mat[:, len(p):] = (nums[:, None] // pows) % 10 + 48
    return mat.view(f"S{len(p) + width}").ravel().astype(f"U{len(p) + width}")


def _chunked_strings(n: int, make, chunk: int = 200_000) -> np.ndarray:
    """Object array of ``n`` Python strings built from ``make(a, b)`` numpy string chunks."""
    out = np.empty(n, dtype=object)
    for a in range(0, n, chunk):  # a handful of chunks, not a per-row loop
        b = min(n, a + chunk)
        out[a:b] = make(a, b).astype(object)
    return out


def _group_offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off


def _seconds_in_day(rng, n, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    hours = rng.choice(24, size=n, p=w / w.sum())
    return hours * 3600 + rng.integers(0, 3600, size=n)


# hour-of-day profiles
_H_SHOP = [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 4, 5, 5.5, 6, 5.5, 5, 4.5, 4.5, 5, 6, 7, 7, 6, 4, 2]
_H_WORK = [0, 0, 0, 0, 0, 0, 0, 0.5, 3, 6, 6, 5, 3, 5, 6, 6, 5, 3, 0.5, 0, 0, 0, 0, 0]
_H_MAIL = [0, 0, 0, 0, 0, 0, 1, 4, 8, 6, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0, 0]


# --------------------------------------------------------------------------------------
# products
# --------------------------------------------------------------------------------------
def _make_products(rng, n_products: int, days: int):
    C = len(_CATS)
    w = np.array([c["weight"] for c in _CATS])
    # at least 2 products per category, rest proportional to weight
    base = np.full(C, 2)
    extra = rng.multinomial(max(0, n_products - 2 * C), w / w.sum()) if n_products > 2 * C else 0
    counts = base + extra
    if n_products < 2 * C:  # tiny catalogue: just round-robin
        counts = np.bincount(np.arange(n_products) % C, minlength=C)
    cat = np.repeat(np.arange(C), counts)
    n = len(cat)
    cat_start = _group_offsets(counts)

    name = np.empty(n, dtype=object)
    desc = np.empty(n, dtype=object)
    tags = np.empty(n, dtype=object)
    price = np.empty(n)
    replen = np.empty(n)
    brand_of = np.empty(n, dtype=object)
    model_of = np.empty(n, dtype=object)
    for ci, c in enumerate(_CATS):  # loop over ~12 categories only
        sl = slice(cat_start[ci], cat_start[ci + 1])
        m = counts[ci]
        if m == 0:
            continue
        b = np.array(c["brands"], dtype=object)[rng.integers(0, len(c["brands"]), m)]
        a = np.array(c["adjs"], dtype=object)[rng.integers(0, len(c["adjs"]), m)]
        nn = np.array(c["nouns"], dtype=object)[rng.integers(0, len(c["nouns"]), m)]
        s = np.array(c["sizes"], dtype=object)[rng.integers(0, len(c["sizes"]), m)]
        name[sl] = b + " " + a + " " + nn + " " + s
        brand_of[sl] = b
        model_of[sl] = s
        words = c["words"]
        wi = np.argsort(rng.random((m, len(words))), axis=1)[:, :3]
        wa = np.array(words, dtype=object)
        desc[sl] = (a + " " + np.char.lower(nn.astype(str)).astype(object) + " from " + b + " with "
                    + wa[wi[:, 0]] + " and " + wa[wi[:, 1]] + ". " + np.char.capitalize(
                        wa[wi[:, 2]].astype(str)).astype(object) + ".")
        slug = c["name"].lower().replace(" & ", "-").replace(" ", "-")
        tg = [x for x in c["tags"] if x != slug]
        k = rng.integers(2, 5, m)
        ti = np.argsort(rng.random((m, len(tg))), axis=1)
        tga = np.array(tg, dtype=object)
        first = np.full(m, slug, dtype=object)
        joined = first.copy()
        for j in range(4):
            joined = np.where(k > j, joined + ";" + tga[ti[:, j]], joined)
        tags[sl] = joined
        p = np.exp(np.log(c["median"]) + c["sigma"] * rng.standard_normal(m))
        p = np.where(p >= 2, np.floor(p) + 0.99, np.round(p, 2))
        price[sl] = np.maximum(p, 0.1)
        replen[sl] = c["replen"] * np.exp(0.25 * rng.standard_normal(m))

    # popularity: Zipf over a random rank within category, times log-normal noise
    rank = np.empty(n)
    for ci in range(C):
        sl = slice(cat_start[ci], cat_start[ci + 1])
        rank[sl] = rng.permutation(counts[ci]) + 1
    pop = rank ** -0.9 * np.exp(0.3 * rng.standard_normal(n))

    active = rng.random(n) >= 0.04
    disc_day = np.where(active, days + 10, rng.integers(int(days * 0.3), max(int(days * 0.9), int(days * 0.3) + 1), n))
    pop = np.where(active, pop, pop * 0.6)

    # complements
    partner = np.full(n, -1, dtype=np.int64)
    for src, (dst, p_has) in _COMPLEMENT.items():
        si, di = CATEGORY_NAMES.index(src), CATEGORY_NAMES.index(dst)
        s_idx = np.arange(cat_start[si], cat_start[si + 1])
        d_lo, d_hi = cat_start[di], cat_start[di + 1]
        if len(s_idx) == 0 or d_hi <= d_lo:
            continue
        has = rng.random(len(s_idx)) < p_has
        tgt = rng.integers(d_lo, d_hi, len(s_idx))
        if si == di:  # avoid self-pairing
            tgt = np.where(tgt == s_idx, d_lo + (tgt - d_lo + 1) % (d_hi - d_lo), tgt)
        ok = has & (tgt != s_idx)
        partner[s_idx[ok]] = tgt[ok]
    # printers: rename their toner partner after the printer model so the pair is obvious
    pi = CATEGORY_NAMES.index("Printers")
    pr = np.arange(cat_start[pi], cat_start[pi + 1])
    pr = pr[partner[pr] >= 0]
    if len(pr):
        t = partner[pr]
        # a toner may be shared by several printers: the last writer wins, which is fine
        name[t] = brand_of[pr] + " " + model_of[pr] + " Toner Cartridge"
        desc[t] = ("Original " + brand_of[pr] + " toner cartridge for the " + name[pr]
                   + ". Sharp prints, reliable page yield and easy cartridge swap.")

    sku_prefix = np.array([c["name"][:3].upper().replace(" ", "X") for c in _CATS], dtype=object)
    sku = sku_prefix[cat] + "-" + pd.Series(_ids("", np.arange(1, n + 1), max(5, len(str(n))))).to_numpy(object)

    products = pd.DataFrame({
        "sku": sku.astype(str),
        "name": name.astype(str),
        "category": np.array(CATEGORY_NAMES, dtype=object)[cat].astype(str),
        "price": np.round(price, 2),
        "description": desc.astype(str),
        "tags": tags.astype(str),
        "active": np.where(active, "true", "false"),
    })
    src = np.nonzero(partner >= 0)[0]
    # not part of the CSV: handy for tests / demos ("which pairs are complements?")
    products.attrs["complements"] = list(zip(products["sku"].to_numpy()[src].tolist(),
                                             products["sku"].to_numpy()[partner[src]].tolist()))
    meta = {"cat": cat, "counts": counts, "cat_start": cat_start, "pop": pop, "price": np.round(price, 2),
                "replen": replen, "active": active, "disc_day": disc_day, "partner": partner}
    return products, meta


# --------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------
def generate(n_customers: int = 2000, seed: int = 0, end: _dt.date | None = None,
             n_products: int | None = None, sales_reps: tuple[str, ...] = ("alice", "bob", "carol"),
             days: int = 730) -> dict[str, pd.DataFrame]:
    """Generate a synthetic demo business.

    Returns ``{"customers": df, "products": df, "interactions": df}`` with exactly the
    import-format columns (see ``CUSTOMER_COLUMNS`` etc.). Interactions span ``days``
    days ending on ``end`` (inclusive; default: yesterday, the last whole day: the rest of today
    has not happened yet, and the import refuses future-dated rows, crm.clock). Deterministic
    for ``(seed, end)``.
    Numbers are floats rounded to cents / ints; repeated string columns of the
    interactions frame are pandas Categoricals to keep memory low (``to_csv`` writes
    their values; a missing ``product_sku`` / ``order_ref`` / ``notes`` is written empty).
    """
    n = int(n_customers)
    if n < 1:
        raise ValueError("n_customers must be >= 1")
    days = int(days)
    if days < 7:
        raise ValueError("days must be >= 7")
    if end is None:
        end = _dt.date.today() - _dt.timedelta(days=1)
    if isinstance(end, _dt.datetime):
        end = end.date()
    if n_products is None:
        n_products = max(50, min(5000, n // 20))
    n_products = max(1, int(n_products))
    reps = tuple(sales_reps or ())
    rng = np.random.default_rng(seed)

    start = end - _dt.timedelta(days=days - 1)
    start64 = np.datetime64(start.isoformat(), "D")
    day_dates = start64 + np.arange(days)
    end_ts = days * _DAY  # exclusive bound on timestamps (seconds since start midnight)

    # ---------------- calendar intensity (weekly x yearly) -> time warp ----------------
    dow = (day_dates.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
    month = day_dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (day_dates - day_dates.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    weekly = np.array([1.0, 0.95, 1.0, 1.05, 1.15, 1.3, 0.75])[dow]
    yearly = np.ones(days)
    yearly[month == 11] = 1.3
    yearly[(month == 11) & (dom >= 22)] = 2.0          # Black Friday / Cyber week
    yearly[(month == 12) & (dom <= 22)] = 1.6          # Christmas shopping
    yearly[(month == 12) & (dom > 24)] = 0.7
    yearly[month == 1] = 0.85
    yearly[(month == 7) | (month == 8)] = 0.9
    intensity = weekly * yearly
    intensity /= intensity.mean()
    promo_day = (month == 11) & (dom >= 22) | (month == 12) & (dom <= 2)
    Lam = np.concatenate([[0.0], np.cumsum(intensity)])
    day_grid = np.arange(days + 1, dtype=float)

    # ---------------- products ----------------
    products, pm = _make_products(rng, n_products, days)
    sim = _simulate(rng, n, days, products, pm, reps, dow, promo_day, Lam, day_grid, end_ts)
    cols, O, kind, signup_day, has_company, owned, rep_idx = sim
    del sim

    i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note = cols
    del cols
    N = len(i_cust)
    cid_width = max(6, len(str(n)))
    cust_ids = _ids("C", np.arange(1, n + 1), cid_width)
    base_s = np.datetime64(start.isoformat(), "s")
    # unique strings are built chunk-wise straight into object arrays (keeps peak memory low)
    occurred = _chunked_strings(
        N, lambda a, b, ts=i_ts: np.datetime_as_string(base_s + ts[a:b].astype("timedelta64[s]"), unit="s")
    )
    del i_ts
    id_width = max(8, len(str(N)))
    ext_ids = _chunked_strings(N, lambda a, b: _ids("I", np.arange(a + 1, b + 1), id_width))
    skus = products["sku"].to_numpy()
    order_refs = _ids("O", np.arange(1, O + 1), max(7, len(str(O))))
    interactions = pd.DataFrame(
        {
            "customer_external_id": pd.Categorical.from_codes(
                i_cust, categories=pd.Index(cust_ids, dtype=object)
            ),
            "type": pd.Categorical.from_codes(i_type.astype(np.int64), categories=INTERACTION_TYPES),
            "occurred_at": occurred,
            "product_sku": pd.Categorical.from_codes(i_prod, categories=pd.Index(skus, dtype=object)),
            "quantity": i_qty,
            "amount": i_amt,
            "order_ref": pd.Categorical.from_codes(
                i_order, categories=pd.Index(order_refs, dtype=object)
            ),
            "external_id": ext_ids,
            "channel": pd.Categorical.from_codes(i_ch.astype(np.int64), categories=CHANNELS),
            "notes": pd.Categorical.from_codes(i_note.astype(np.int64), categories=_NOTE_LIST),
        }
    )
    del occurred, ext_ids, i_cust, i_type, i_prod, i_qty, i_amt, i_order, i_ch, i_note

    # ---------------- customers frame ----------------
    first_i = rng.integers(0, len(_FIRST), n)
    last_i = rng.integers(0, len(_LAST), n)
    fa, la = np.array(_FIRST, dtype=object), np.array(_LAST, dtype=object)
    name = fa[first_i] + " " + la[last_i]
    co_i = rng.integers(0, len(_CO_PREFIX), n)
    cs_i = rng.integers(0, len(_CO_SUFFIX), n)
    company = np.where(has_company, np.array(_CO_PREFIX, dtype=object)[co_i] + " "
                       + np.array(_CO_SUFFIX, dtype=object)[cs_i], "")
    slug = pd.Series(company).str.lower().str.replace("&", "and", regex=False) \
        .str.replace(r"[^a-z0-9]+", "-", regex=True).str.strip("-")
    domain = np.where(has_company, (slug + ".example").to_numpy(object),
                      np.array(_FREE_DOMAINS, dtype=object)[rng.integers(0, len(_FREE_DOMAINS), n)])
    local = pd.Series(fa[first_i] + "." + la[last_i]).str.lower().str.replace(" ", "", regex=False)
    base = local + "@" + pd.Series(domain)
    dup = base.groupby(base).cumcount().to_numpy()
    suffix = np.where(dup > 0, pd.Series(dup + 1).astype(str).to_numpy(object), "")
    email = (local + pd.Series(suffix) + "@" + pd.Series(domain)).to_numpy(object)
    cw = np.array([c[2] for c in _COUNTRIES])
    ci = rng.choice(len(_COUNTRIES), size=n, p=cw / cw.sum())
    ncity = np.array([len(c[3]) for c in _COUNTRIES])
    city_flat = np.array([city for c in _COUNTRIES for city in c[3]], dtype=object)
    city_off = _group_offsets(ncity)[:-1]
    city = city_flat[city_off[ci] + (rng.random(n) * ncity[ci]).astype(np.int64)]
    cc_code = np.array(["+" + c[1] + " " for c in _COUNTRIES], dtype=object)[ci]
    num = rng.integers(200_000_000, 999_999_999, n)
    numstr = _ids("", num, 9).astype(object)
    phone = cc_code + pd.Series(numstr).str.slice(0, 3).to_numpy(object) + " " + \
        pd.Series(numstr).str.slice(3, 6).to_numpy(object) + " " + pd.Series(numstr).str.slice(6).to_numpy(object)
    no_phone = rng.random(n) < 0.1
    phone = np.where(no_phone, "", phone)
    owner = np.where(owned, np.array(reps or ("",), dtype=object)[rep_idx], "")
    signup = np.datetime_as_string(start64 + signup_day, unit="D")
    customers = pd.DataFrame({
        "external_id": cust_ids.astype(object),
        "name": name,
        "email": email,
        "phone": phone,
        "company": company,
        "country": np.array([c[0] for c in _COUNTRIES], dtype=object)[ci],
        "city": city,
        "signup_date": signup.astype(object),
        "owner": owner,
        "demo_kind": np.array(KINDS, dtype=object)[kind],
    })
    for col in CUSTOMER_COLUMNS:
        customers[col] = customers[col].astype(str)
    return {"customers": customers, "products": products, "interactions": interactions}


def _simulate(rng, n, days, products, pm, reps, dow, promo_day, Lam, day_grid, end_ts):
    """Simulate all interactions; returns integer/float column arrays (sorted) and customer arrays."""
    P = len(products)
    C = len(_CATS)
    price = pm["price"]
    pop_cum = np.cumsum(pm["pop"])
    cat_start = pm["cat_start"]
    cat_lo = np.concatenate([[0.0], pop_cum])[cat_start[:-1]]
    cat_hi = pop_cum[np.maximum(cat_start[1:] - 1, 0)]
    cat_hi = np.where(pm["counts"] > 0, cat_hi, cat_lo)

    # ---------------- customers ----------------
    kind = rng.choice(len(KINDS), size=n, p=_KIND_MIX / _KIND_MIX.sum())
    # signups: growing business (density rising over the window), last week excluded mostly
    signup_day = np.minimum((days * rng.random(n) ** 0.7).astype(np.int64), days - 1)
    # taste: Dirichlet over categories, tilted per kind
    alpha = np.tile(0.35 * np.array([c["weight"] for c in _CATS]), (len(KINDS), 1))
    for kn, tilt in _TASTE_TILT.items():
        for cn, f in tilt.items():
            alpha[KINDS.index(kn), CATEGORY_NAMES.index(cn)] *= f
    alpha = np.where(pm["counts"][None, :] > 0, alpha, 1e-9)
    taste = rng.gamma(alpha[kind])
    taste += 1e-12
    taste /= taste.sum(axis=1, keepdims=True)
    taste_cum = np.cumsum(taste, axis=1).astype(np.float32)
    taste_cum[:, -1] = 1.0

    def sample_products(cust_idx, bias=None):
        m = len(cust_idx)
        u = rng.random(m, dtype=np.float32)
        cat = np.minimum((taste_cum[cust_idx] < u[:, None]).sum(axis=1), C - 1)
        lo, hi = cat_lo[cat], cat_hi[cat]

        def draw():
            tgt = lo + rng.random(m) * (hi - lo)
            p = np.searchsorted(pop_cum, tgt, side="right")
            p = np.clip(p, cat_start[cat], np.maximum(cat_start[cat + 1] - 1, cat_start[cat]))
            return np.minimum(p, P - 1)

        p = draw()
        if bias is not None and np.any(bias != 0):
            p2 = draw()
            cheaper = np.where(price[p2] < price[p], p2, p)
            dearer = np.where(price[p2] > price[p], p2, p)
            p = np.where(bias < 0, cheaper, np.where(bias > 0, dearer, p))
        return p

    mean_gap = rng.uniform(_GAP_LO[kind], _GAP_HI[kind])
    shape = _GAP_SHAPE[kind]
    refund_p = np.where(kind == KINDS.index("refund_prone"), rng.uniform(0.2, 0.4, n), 0.02)

    # favourites (up to 4 slots) with a per-product replenishment rhythm in "orders"
    F = 4
    fav_n = rng.integers(_FAV_LO[kind], _FAV_HI[kind] + 1)
    fav_prod = sample_products(np.repeat(np.arange(n), F), np.repeat(_PRICE_BIAS[kind], F)).reshape(n, F)
    fav_every = np.maximum(1, np.rint(pm["replen"][fav_prod] * np.exp(0.2 * rng.standard_normal((n, F)))
                                      / mean_gap[:, None])).astype(np.int64)
    fav_every = np.minimum(fav_every, 10_000)
    fav_phase = (rng.random((n, F)) * fav_every).astype(np.int64)

    # ---------------- orders: time-warped renewal process per customer ----------------
    op_start = Lam[signup_day]
    op_end = Lam[days]
    remaining = op_end - op_start
    exp_cnt = remaining / mean_gap
    K = np.ceil(exp_cnt * 1.3 + 3 * np.sqrt(exp_cnt) + 3).astype(np.int64)
    cap = np.full(n, 10**9, dtype=np.int64)
    lapsing = kind == KINDS.index("lapsing")
    cap[lapsing] = 2 + rng.geometric(rng.uniform(0.12, 0.35, lapsing.sum()))
    cap[kind == KINDS.index("one_off")] = 1
    K = np.clip(np.minimum(K, cap), 1, 2000)
    off = _group_offsets(K)
    tot = int(off[-1])
    ocust = np.repeat(np.arange(n), K)
    oj = np.arange(tot) - off[:-1][ocust]
    gaps = rng.gamma(shape[ocust], 1.0) * (mean_gap / shape)[ocust]
    first = oj == 0
    gaps[first] = rng.exponential(_FIRST_DELAY[kind])  # one per customer, in customer order
    cs = np.cumsum(gaps)
    t = op_start[ocust] + cs - (cs[off[:-1]] - gaps[off[:-1]])[ocust]
    keep = t < op_end
    ocust, oj, t = ocust[keep], oj[keep], t[keep]
    del gaps, cs, keep, first
    oday = np.minimum(np.interp(t, Lam, day_grid).astype(np.int64), days - 1)
    oday = np.maximum(oday, signup_day[ocust])
    ots = oday * _DAY + _seconds_in_day(rng, len(oday), _H_SHOP)
    okind = kind[ocust]
    n_orders0 = len(ocust)

    # ---------------- order lines ----------------
    fav_hit = (np.arange(F)[None, :] < fav_n[ocust][:, None]) & \
              ((oj[:, None] + fav_phase[ocust]) % fav_every[ocust] == 0)
    fo, fs = np.nonzero(fav_hit)
    fav_line_prod = fav_prod[ocust[fo], fs]
    n_fav_in_order = np.bincount(fo, minlength=n_orders0)
    del fav_hit
    n_exp = rng.poisson(_EXPLORE[okind])
    n_exp = np.where(n_fav_in_order == 0, np.maximum(n_exp, 1), n_exp)
    eo = np.repeat(np.arange(n_orders0), n_exp)
    exp_prod = sample_products(ocust[eo], _PRICE_BIAS[okind[eo]])
    l_order = np.concatenate([fo, eo])
    l_prod = np.concatenate([fav_line_prod, exp_prod])
    # complements
    part = pm["partner"][l_prod]
    add = (part >= 0) & (rng.random(len(l_prod)) < _COMPLEMENT_P)
    l_order = np.concatenate([l_order, l_order[add]])
    l_prod = np.concatenate([l_prod, part[add]])
    # dedupe (order, product), drop discontinued products
    key = l_order * P + l_prod
    key.sort()  # sorted by order, then product; drop duplicates
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    l_order, l_prod = key // P, key % P
    ok = oday[l_order] < pm["disc_day"][l_prod]
    l_order, l_prod = l_order[ok], l_prod[ok]
    del key, ok, part, add, fo, fs, eo, exp_prod, fav_line_prod

    # orders that still have lines, re-indexed chronologically
    has = np.bincount(l_order, minlength=n_orders0) > 0
    order_ids = np.nonzero(has)[0]
    chron = order_ids[np.lexsort((order_ids, ots[order_ids]))]
    new_idx = np.full(n_orders0, -1, dtype=np.int64)
    new_idx[chron] = np.arange(len(chron))
    ocust, oj, ots, oday, okind = ocust[chron], oj[chron], ots[chron], oday[chron], okind[chron]
    O = len(chron)
    l_order = new_idx[l_order]
    srt = np.argsort(l_order, kind="stable")
    l_order, l_prod = l_order[srt], l_prod[srt]
    L = len(l_order)
    l_cnt = np.bincount(l_order, minlength=O)
    l_off = _group_offsets(l_cnt)

    # per-order channel and discount
    och = (rng.random(O)[:, None] > np.cumsum(_ORDER_CH, axis=1)[okind]).sum(axis=1)
    och = np.minimum(och, 2)  # 0 web, 1 store, 2 phone -> CHANNELS indices 0, 1, 2
    bargain = okind == KINDS.index("bargain")
    disc_p = np.where(bargain, 0.85, np.where(promo_day[oday], 0.4, 0.07))
    has_disc = rng.random(O) < disc_p
    disc_val = np.where(bargain, rng.choice([0.1, 0.15, 0.2, 0.25, 0.3, 0.4], O),
                        rng.choice([0.05, 0.1, 0.15, 0.2], O))
    disc = np.where(has_disc, disc_val, 0.0)

    l_cust = ocust[l_order]
    l_qty = 1 + rng.poisson(_QTY[okind[l_order]])
    l_amount = np.round(price[l_prod] * l_qty * (1.0 - disc[l_order]), 2)
    l_ts = ots[l_order]

    # ---------------- refunds ----------------
    refunded = rng.random(O) < refund_p[ocust]
    forced = l_off[:-1] + (rng.random(O) * l_cnt).astype(np.int64)
    r_line = (rng.random(L) < 0.4) & refunded[l_order]
    r_line[forced[refunded]] = True
    r_idx = np.nonzero(r_line)[0]
    r_delay = ((0.5 + rng.exponential(4.0, O)) * _DAY).astype(np.int64)  # per order
    r_ts = l_ts[r_idx] + r_delay[l_order[r_idx]] + rng.integers(0, 600, len(r_idx))
    okr = r_ts < end_ts
    r_idx, r_ts = r_idx[okr], r_ts[okr]
    q = l_qty[r_idx]
    partial = (rng.random(len(r_idx)) < 0.3) & (q > 1)
    r_qty = np.where(partial, 1 + (rng.random(len(r_idx)) * (q - 1)).astype(np.int64), q)
    r_amount = np.where(partial, np.floor(l_amount[r_idx] * r_qty / q * 100 + 1e-6) / 100, l_amount[r_idx])
    r_amount = np.minimum(r_amount, l_amount[r_idx])

    # support tickets preceding refunds (about the forced line of the order)
    so = np.nonzero(refunded & (ots + r_delay < end_ts) & (rng.random(O) < 0.5))[0]
    s1_ts = ots[so] + (r_delay[so] * rng.uniform(0.1, 0.9, len(so))).astype(np.int64)
    s1_prod = l_prod[forced[so]]
    s1_cust = ocust[so]
    s1_note = _NOTE_OFF["support_refund"][0] + rng.integers(0, _NOTE_OFF["support_refund"][1], len(so))

    # ---------------- per-customer aggregates for other interactions ----------------
    n_orders_c = np.bincount(ocust, minlength=n)
    last_ots = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_ots, ocust, ots) if O else None
    signup_ts = signup_day * _DAY
    rem_days = (days - signup_day).astype(float)
    # active window for browsing: lapsing stop browsing ~a month after their last order
    browse_end = np.where(lapsing & (last_ots >= 0), np.minimum(end_ts, last_ots + 30 * _DAY), end_ts)
    browse_end = np.maximum(browse_end, signup_ts + _DAY)

    parts = []  # tuples of (cust, type, ts, prod, qty, amount, order, channel, note)

    def add_part(cust, typ, ts, prod=None, qty=None, amount=None, order=None, channel=None, note=None):
        m = len(cust)
        parts.append((
            np.asarray(cust, np.int64),
            np.full(m, _T[typ], np.int8),
            np.asarray(ts, np.int64),
            np.full(m, -1, np.int64) if prod is None else np.asarray(prod, np.int64),
            np.zeros(m, np.int64) if qty is None else np.asarray(qty, np.int64),
            np.zeros(m) if amount is None else np.asarray(amount, float),
            np.full(m, -1, np.int64) if order is None else np.asarray(order, np.int64),
            np.full(m, _CH[channel], np.int8) if isinstance(channel, str) else np.asarray(channel, np.int8),
            np.full(m, -1, np.int16) if note is None else np.asarray(note, np.int16),
        ))

    add_part(l_cust, "purchase", l_ts, l_prod, l_qty, l_amount, l_order, och[l_order])
    add_part(l_cust[r_idx], "refund", r_ts, l_prod[r_idx], r_qty, r_amount, l_order[r_idx],
             och[l_order[r_idx]], None)
    add_part(s1_cust, "support", s1_ts, s1_prod, channel=rng.choice([3, 2, 5], len(so)), note=s1_note)

    # views preceding purchases (web/app orders mostly)
    pv = np.nonzero((rng.random(L) < 0.3) & (och[l_order] == 0))[0]
    v1_ts = l_ts[pv] - 60 - (rng.exponential(0.8, len(pv)) * _DAY).astype(np.int64)
    lo = signup_ts[l_cust[pv]]
    v1_ts = np.where(v1_ts < lo, lo + (rng.random(len(pv)) * (l_ts[pv] - lo)).astype(np.int64), v1_ts)
    add_part(l_cust[pv], "view", v1_ts, l_prod[pv], channel=rng.choice([0, 4], len(pv), p=[0.7, 0.3]))
    # browsing views
    bspan = (browse_end - signup_ts) / _DAY
    nb = rng.poisson(bspan / 120.0 * _VIEWS[kind])
    bc = np.repeat(np.arange(n), nb)
    b_ts = signup_ts[bc] + (rng.random(len(bc)) * (browse_end - signup_ts)[bc]).astype(np.int64)
    b_prod = sample_products(bc)
    okb = (b_ts // _DAY) < pm["disc_day"][b_prod]
    add_part(bc[okb], "view", b_ts[okb], b_prod[okb], channel=rng.choice([0, 4], okb.sum(), p=[0.7, 0.3]))

    def uniform_days(cust, weekdays_only=False, hours=_H_WORK):
        d = signup_day[cust] + (rng.random(len(cust)) * (days - signup_day[cust])).astype(np.int64)
        if weekdays_only:
            dd = (d + (dow[0])) % 7
            d = d + np.where(dd == 5, 2, np.where(dd == 6, 1, 0))
        ts = d * _DAY + _seconds_in_day(rng, len(cust), hours)
        return ts

    # marketing / transactional emails (~ one every 2 months)
    ne = rng.poisson(rem_days / 150.0)
    ec = np.repeat(np.arange(n), ne)
    e_ts = uniform_days(ec, hours=_H_MAIL)
    add_part(ec, "email", e_ts, channel="email",
             note=_NOTE_OFF["email"][0] + rng.integers(0, _NOTE_OFF["email"][1], len(ec)))

    # owner assignment
    owned = (rng.random(n) < _OWNED[kind]) & (len(reps) > 0)
    rep_w = np.linspace(1.5, 1.0, max(len(reps), 1))
    rep_idx = rng.choice(max(len(reps), 1), size=n, p=rep_w / rep_w.sum())

    # calls (owned accounts)
    nc = rng.poisson(rem_days / 250.0 * _CALLS[kind] * owned)
    cc = np.repeat(np.arange(n), nc)
    c_ts = uniform_days(cc, weekdays_only=True)
    add_part(cc, "call", c_ts, channel="phone",
             note=_NOTE_OFF["call"][0] + rng.integers(0, _NOTE_OFF["call"][1], len(cc)))
    # meetings (owned B2B accounts, mostly big occasional)
    has_company = rng.random(n) < _COMPANY[kind]
    mrate = np.where(kind == KINDS.index("big_occasional"), 3.0, 0.4) * owned * has_company
    nm = rng.poisson(rem_days / 365.0 * mrate)
    mc = np.repeat(np.arange(n), nm)
    m_ts = uniform_days(mc, weekdays_only=True)
    add_part(mc, "meeting", m_ts, channel=rng.choice([6, 7], len(mc)),
             note=_NOTE_OFF["meeting"][0] + rng.integers(0, _NOTE_OFF["meeting"][1], len(mc)))
    # notes: follow-ups of calls/meetings plus free notes
    fc = np.concatenate([cc, mc])
    f_ts = np.concatenate([c_ts, m_ts])
    fsel = rng.random(len(fc)) < 0.3
    n2 = rng.poisson(rem_days / 365.0 * 0.5 * owned)
    nc2 = np.repeat(np.arange(n), n2)
    note_c = np.concatenate([fc[fsel], nc2])
    note_ts = np.concatenate([f_ts[fsel] + rng.integers(300, 1800, fsel.sum()), uniform_days(nc2)])
    add_part(note_c, "note", note_ts, channel="internal",
             note=_NOTE_OFF["note"][0] + rng.integers(0, _NOTE_OFF["note"][1], len(note_c)))
    # general support tickets
    ns = rng.poisson(0.04 * n_orders_c + rem_days / 730.0 * 0.2)
    sc = np.repeat(np.arange(n), ns)
    s_ts = uniform_days(sc)
    s_prod = np.where(rng.random(len(sc)) < 0.5, fav_prod[sc, 0], -1)
    s_prod = np.where((s_prod >= 0) & ((s_ts // _DAY) >= pm["disc_day"][np.maximum(s_prod, 0)]), -1, s_prod)
    add_part(sc, "support", s_ts, s_prod, channel=rng.choice([3, 2, 5], len(sc)),
             note=_NOTE_OFF["support"][0] + rng.integers(0, _NOTE_OFF["support"][1], len(sc)))

    # ---------------- assemble interactions ----------------
    cols = [np.concatenate([p[i] for p in parts]) for i in range(9)]
    parts.clear()
    i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note = cols
    del cols
    ok = (i_ts < end_ts) & (i_ts >= signup_ts[i_cust])
    cols = [i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note]
    del i_cust, i_type, i_ts, i_prod, i_qty, i_amt, i_order, i_ch, i_note
    if not ok.all():
        for j in range(len(cols)):
            cols[j] = cols[j][ok]
    order = np.lexsort((cols[1], cols[0], cols[2]))
    for j in range(len(cols)):
        cols[j] = cols[j][order]
    del order, ok
    return cols, O, kind, signup_day, has_company, owned, rep_idx
