"""The demo business's fixed tables: columns, customer kinds and their behaviour, the
catalogue's categories, complements, names, countries and note templates."""
from __future__ import annotations

import numpy as np

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
