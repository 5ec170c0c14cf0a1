"""The store's vocabulary: category tree, attribute vocabularies, brands, complements and seasons.

Everything here is plain data, so that a reader can see what the synthetic store sells and change it
without touching the generator. Brands are fictional on purpose: a made-up price for a real product
would be misleading, and fictional names cannot collide with a real catalog in a demo.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute of a leaf category. `step` > 0 makes the values an ordered price ladder (bigger
    capacity, more watts): each step up multiplies the price by exp(step)."""

    name: str
    values: tuple[str, ...]
    step: float = 0.0


@dataclass(frozen=True, slots=True)
class Leaf:
    """A leaf category and how its products are named, priced and searched for.

    `template` composes titles from `{brand}`, `{model}` and attribute names; `variant` is the attribute
    that differs between the items of one product line (it must appear in the template, which keeps
    titles distinct). `feature`, `spec`, `color`, `gender` name the attributes shoppers put in queries
    ("waterproof hiking boots", "memory card 64gb", "brown hiking boots", "womens hiking boots").
    """

    path: tuple[str, ...]
    noun: str
    short: str
    median: float
    sigma: float
    template: str
    attrs: tuple[Attr, ...]
    variant: str
    feature: str | None = None
    spec: str | None = None
    blurbs: tuple[str, ...] = ()
    weight: float = 1.0
    consumable: bool = False
    season: tuple[float, float] | None = None  # (peak day of year, log amplitude); None: the top level's

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def color(self) -> str | None:
        return "color" if any(a.name == "color" for a in self.attrs) else None

    @property
    def gender(self) -> str | None:
        return "gender" if any(a.name == "gender" for a in self.attrs) else None


GENDER = Attr("gender", ("women's", "men's", "unisex"))
SHOE_SIZE = Attr("size", ("6", "7", "8", "9", "10", "11", "12", "13"))
APPAREL_SIZE = Attr("size", ("XS", "S", "M", "L", "XL"))
EARTH = Attr("color", ("brown", "black", "grey", "olive", "tan"))
BRIGHT = Attr("color", ("black", "blue", "red", "green", "orange", "grey", "white"))
TECH = Attr("color", ("black", "silver", "white", "graphite"))
HOME = Attr("color", ("white", "black", "stainless steel", "red", "sage green", "cream"))
SKIN = Attr("skin_type", ("dry skin", "oily skin", "sensitive skin", "combination skin", "all skin types"))


def _a(name: str, *values: str, step: float = 0.0) -> Attr:
    return Attr(name, values, step)


LEAVES: tuple[Leaf, ...] = (
    # ---- Outdoors -------------------------------------------------------------------------------
    Leaf(("Outdoors", "Footwear", "Hiking boots"), "hiking boots", "boots", 140, 0.35,
         "{brand} {model} {feature} hiking boots, {gender}, {color}",
         (_a("feature", "waterproof", "insulated", "lightweight", "breathable"),
          _a("material", "leather", "suede", "synthetic", "nubuck"), GENDER, EARTH, SHOE_SIZE),
         variant="color", feature="feature",
         blurbs=("Grippy rubber outsole for wet rock and loose trail.", "Cushioned midsole for long days.",
                 "Padded collar and a gusseted tongue keep debris out.", "Broken in within a couple of walks."),
         weight=1.3),
    Leaf(("Outdoors", "Footwear", "Trail running shoes"), "trail running shoes", "trail shoes", 120, 0.3,
         "{brand} {model} {feature} trail running shoes, {gender}, {color}",
         (_a("feature", "lightweight", "cushioned", "waterproof", "high-grip"), _a("drop", "4 mm", "6 mm", "8 mm"),
          GENDER, BRIGHT, SHOE_SIZE),
         variant="color", feature="feature", spec="drop",
         blurbs=("Aggressive lugs bite into mud and scree.", "A rock plate protects the forefoot.",
                 "Quick-lace system for fast changes.")),
    Leaf(("Outdoors", "Camping", "Tents"), "tent", "tent", 220, 0.5,
         "{brand} {model} {capacity} {seasons} tent, {color}",
         (_a("capacity", "1-person", "2-person", "3-person", "4-person", "6-person", step=0.22),
          _a("seasons", "3-season", "4-season"), _a("color", "green", "orange", "grey", "yellow", "blue")),
         variant="capacity", feature="seasons", spec="capacity",
         blurbs=("Pitches in under five minutes with color-coded poles.", "Two doors and two vestibules.",
                 "Fully taped seams and a bathtub floor.", "Packs down small enough for a backpack."),
         season=(185, 0.75)),
    Leaf(("Outdoors", "Camping", "Sleeping bags"), "sleeping bag", "sleeping bag", 110, 0.45,
         "{brand} {model} {temp_rating} {fill} sleeping bag, {shape}",
         (_a("temp_rating", "50°F", "30°F", "20°F", "0°F", step=0.15), _a("fill", "down", "synthetic"),
          _a("shape", "mummy", "rectangular"), _a("color", "green", "blue", "red", "grey")),
         variant="temp_rating", feature="fill", spec="temp_rating",
         blurbs=("Draft collar and zipper baffle hold in warmth.", "Compression sack included.",
                 "Water-resistant shell fabric.")),
    Leaf(("Outdoors", "Camping", "Headlamps"), "headlamp", "headlamp", 35, 0.45,
         "{brand} {model} {brightness} {power} headlamp, {color}",
         (_a("brightness", "200 lumens", "350 lumens", "500 lumens", "1000 lumens", step=0.25),
          _a("power", "rechargeable", "AAA battery"), BRIGHT),
         variant="color", feature="power", spec="brightness",
         blurbs=("Red night-vision mode.", "Tilting beam and a comfortable strap.", "IPX4 splash resistant.")),
    Leaf(("Outdoors", "Camping", "Camp stoves"), "camp stove", "stove", 60, 0.5,
         "{brand} {model} {fuel} camp stove, {output}",
         (_a("fuel", "canister", "liquid fuel", "wood-burning"),
          _a("output", "7,000 BTU", "10,000 BTU", "12,000 BTU", step=0.15)),
         variant="output", feature="fuel", spec="output",
         blurbs=("Boils a liter of water in about four minutes.", "Piezo igniter, no matches needed.",
                 "Folds into its own pot.")),
    Leaf(("Outdoors", "Backpacks", "Hiking backpacks"), "hiking backpack", "backpack", 130, 0.45,
         "{brand} {model} {volume} {feature} hiking backpack, {gender}, {color}",
         (_a("volume", "20 L", "30 L", "45 L", "65 L", step=0.18), _a("feature", "lightweight", "ventilated",
          "hydration-compatible"), GENDER, EARTH),
         variant="volume", feature="feature", spec="volume",
         blurbs=("Adjustable torso length and padded hip belt.", "Integrated rain cover.",
                 "Side stretch pockets fit a water bottle.")),
    Leaf(("Outdoors", "Water bottles"), "water bottle", "water bottle", 28, 0.4,
         "{brand} {model} {feature} water bottle, {capacity}, {color}",
         (_a("feature", "insulated", "collapsible", "filtered"), _a("capacity", "500 ml", "750 ml", "1 L", step=0.15),
          _a("material", "stainless steel", "BPA-free plastic", "aluminum"), BRIGHT),
         variant="color", feature="feature", spec="capacity",
         blurbs=("Keeps drinks cold for 24 hours.", "Leak-proof lid with a carry loop.", "Dishwasher safe.")),
    # ---- Electronics ----------------------------------------------------------------------------
    Leaf(("Electronics", "Cameras", "Mirrorless cameras"), "mirrorless camera", "camera", 900, 0.5,
         "{brand} {model} {sensor} mirrorless camera, {resolution}, {kit}, {color}",
         (_a("sensor", "APS-C", "full-frame", "Micro Four Thirds"),
          _a("resolution", "20 MP", "24 MP", "33 MP", "45 MP", "61 MP", step=0.25),
          _a("kit", "body only", "with 18-55mm lens", "with 24-70mm lens", step=0.2), _a("color", "black", "silver")),
         variant="kit", feature="sensor", spec="resolution",
         blurbs=("In-body image stabilization.", "Fast hybrid autofocus with eye tracking.",
                 "4K video without a crop.", "Weather-sealed magnesium body.")),
    Leaf(("Electronics", "Cameras", "Action cameras"), "action camera", "action camera", 250, 0.4,
         "{brand} {model} {video} {feature} action camera, {color}",
         (_a("video", "1080p", "4K", "5.3K", step=0.25), _a("feature", "waterproof", "stabilized"),
          _a("color", "black", "white", "blue")),
         variant="video", feature="feature", spec="video",
         blurbs=("Waterproof to 33 feet without a case.", "Horizon leveling keeps footage straight.",
                 "Voice control and a front screen for selfies.")),
    Leaf(("Electronics", "Camera accessories", "Memory cards"), "memory card", "memory card", 25, 0.55,
         "{brand} {model} {card_type} memory card, {capacity}, {speed}",
         (_a("card_type", "SD", "microSD", "CFexpress"), _a("capacity", "32GB", "64GB", "128GB", "256GB", "512GB",
          step=0.45), _a("speed", "V30", "V60", "V90", step=0.2)),
         variant="capacity", feature="card_type", spec="capacity",
         blurbs=("Fast enough for continuous 4K recording.", "Shockproof, temperature-proof and X-ray-proof.",
                 "Comes with an SD adapter."),
         consumable=True),
    Leaf(("Electronics", "Camera accessories", "Camera bags"), "camera bag", "camera bag", 70, 0.45,
         "{brand} {model} {style} camera bag, {material}, {color}",
         (_a("style", "shoulder", "backpack", "sling"), _a("material", "canvas", "nylon", "leather"), EARTH),
         variant="color", feature="style",
         blurbs=("Padded, reconfigurable dividers.", "Fits a body and two lenses.", "Quick side access.")),
    Leaf(("Electronics", "Camera accessories", "Tripods"), "tripod", "tripod", 90, 0.6,
         "{brand} {model} {material} tripod, {max_height}",
         (_a("material", "aluminum", "carbon fiber"), _a("max_height", "50 in", "60 in", "70 in", step=0.15)),
         variant="max_height", feature="material", spec="max_height",
         blurbs=("Ball head with Arca-Swiss plate.", "Flip locks set up in seconds.", "Converts to a monopod.")),
    Leaf(("Electronics", "Phones", "Smartphones"), "smartphone", "phone", 650, 0.5,
         "{brand} {model} smartphone, {storage}, {screen}, {color}",
         (_a("storage", "128GB", "256GB", "512GB", "1TB", step=0.15), _a("screen", "6.1 in", "6.4 in", "6.7 in"),
          _a("color", "black", "white", "blue", "green", "purple", "graphite")),
         variant="color", spec="storage",
         blurbs=("All-day battery with fast charging.", "Triple camera with a 5x telephoto.",
                 "120 Hz OLED display.", "Five years of software updates.")),
    Leaf(("Electronics", "Phone accessories", "Phone cases"), "phone case", "phone case", 22, 0.45,
         "{brand} {model} {style} phone case for {fits}, {color}",
         (_a("style", "clear", "rugged", "wallet", "silicone"), _a("fits", "6.1-inch phones", "6.7-inch phones"),
          BRIGHT),
         variant="color", feature="style",
         blurbs=("Raised edges protect the screen and camera.", "Drop-tested from 10 feet.",
                 "Works with wireless charging.")),
    Leaf(("Electronics", "Phone accessories", "Chargers"), "charger", "charger", 25, 0.45,
         "{brand} {model} {wattage} {connector} charger, {color}",
         (_a("wattage", "20 W", "30 W", "45 W", "65 W", "100 W", step=0.25),
          _a("connector", "USB-C", "wireless", "MagSafe-compatible"), _a("color", "white", "black")),
         variant="wattage", feature="connector", spec="wattage",
         blurbs=("Charges a phone to 50% in 30 minutes.", "Foldable plug for travel.",
                 "Over-heat protection.")),
    Leaf(("Electronics", "Audio", "Headphones"), "headphones", "headphones", 150, 0.7,
         "{brand} {model} {feature} {style} headphones, {color}",
         (_a("feature", "noise-cancelling", "wireless", "wired", "sport"), _a("style", "over-ear", "on-ear", "in-ear"),
          TECH),
         variant="color", feature="feature", spec="style",
         blurbs=("Up to 30 hours of battery life.", "Multipoint Bluetooth pairing.",
                 "Memory-foam ear cushions.")),
    Leaf(("Electronics", "Audio", "Bluetooth speakers"), "Bluetooth speaker", "speaker", 80, 0.6,
         "{brand} {model} {feature} Bluetooth speaker, {battery} battery, {color}",
         (_a("feature", "waterproof", "portable", "smart"), _a("battery", "10 h", "20 h", "30 h", step=0.2), BRIGHT),
         variant="color", feature="feature", spec="battery",
         blurbs=("360-degree sound.", "Pair two for stereo.", "Floats in water.")),
    Leaf(("Electronics", "Computers", "Laptops"), "laptop", "laptop", 1000, 0.45,
         "{brand} {model} {screen} laptop, {ram}, {storage}, {color}",
         (_a("screen", "13.3 in", "14 in", "15.6 in", "16 in"), _a("ram", "8GB RAM", "16GB RAM", "32GB RAM", step=0.2),
          _a("storage", "256GB SSD", "512GB SSD", "1TB SSD", step=0.12), _a("color", "silver", "space grey", "black")),
         variant="storage", spec="ram",
         blurbs=("Backlit keyboard and a large glass trackpad.", "Up to 18 hours of battery life.",
                 "Two Thunderbolt ports and HDMI.")),
    Leaf(("Electronics", "Computer accessories", "Laptop sleeves"), "laptop sleeve", "laptop sleeve", 30, 0.4,
         "{brand} {model} {material} laptop sleeve, {fits}, {color}",
         (_a("material", "neoprene", "felt", "leather"), _a("fits", "13-inch", "14-inch", "15-inch", "16-inch"), EARTH),
         variant="fits", feature="material", spec="fits",
         blurbs=("Soft lining protects against scratches.", "Slim enough to slide into a bag.",
                 "Front pocket for a charger.")),
    Leaf(("Electronics", "Computer accessories", "Mice"), "mouse", "mouse", 35, 0.6,
         "{brand} {model} {feature} mouse, {connection}, {color}",
         (_a("feature", "wireless", "ergonomic", "gaming", "silent"), _a("connection", "Bluetooth", "USB receiver"),
          TECH),
         variant="color", feature="feature",
         blurbs=("Precise sensor works on glass.", "Up to 70 days on a charge.", "Programmable side buttons.")),
    # ---- Home -----------------------------------------------------------------------------------
    Leaf(("Home", "Kitchen", "Coffee makers"), "coffee maker", "coffee maker", 120, 0.7,
         "{brand} {model} {kind} coffee maker, {capacity}, {color}",
         (_a("kind", "drip", "espresso", "pour-over", "single-serve"), _a("capacity", "1 cup", "4 cups", "10 cups",
          "12 cups", step=0.1), HOME),
         variant="color", feature="kind", spec="capacity",
         blurbs=("Programmable timer and keep-warm plate.", "Brews at the ideal 200°F.",
                 "Removable water tank.")),
    Leaf(("Home", "Pantry", "Coffee beans"), "whole bean coffee", "coffee beans", 16, 0.3,
         "{brand} {model} {origin} {roast} whole bean coffee, {weight}",
         (_a("roast", "light roast", "medium roast", "dark roast"),
          _a("origin", "Colombia", "Ethiopia", "Brazil", "Sumatra", "Guatemala"), _a("weight", "12 oz", "2 lb",
          step=0.8)),
         variant="weight", feature="roast", spec="origin",
         blurbs=("Roasted in small batches.", "Notes of chocolate and stone fruit.", "Fair-trade certified."),
         consumable=True),
    Leaf(("Home", "Kitchen", "Blenders"), "blender", "blender", 90, 0.55,
         "{brand} {model} {kind} blender, {wattage}, {color}",
         (_a("kind", "countertop", "personal", "immersion"), _a("wattage", "600 W", "900 W", "1200 W", "1500 W",
          step=0.2), HOME),
         variant="wattage", feature="kind", spec="wattage",
         blurbs=("Crushes ice in seconds.", "BPA-free jar, dishwasher safe.", "Pulse and smoothie presets.")),
    Leaf(("Home", "Kitchen", "Frying pans"), "frying pan", "pan", 45, 0.5,
         "{brand} {model} {material} frying pan, {size}",
         (_a("material", "nonstick", "cast iron", "stainless steel", "carbon steel"), _a("size", "8 in", "10 in",
          "12 in", step=0.15)),
         variant="size", feature="material", spec="size",
         blurbs=("Works on induction.", "Oven safe to 500°F.", "Stay-cool riveted handle.")),
    Leaf(("Home", "Kitchen", "Kitchen knives"), "kitchen knife", "knife", 60, 0.7,
         "{brand} {model} {steel} {kind}, {length}",
         (_a("kind", "chef's knife", "santoku knife", "paring knife", "bread knife"),
          _a("steel", "German steel", "Japanese steel", "Damascus steel"), _a("length", "3.5 in", "6 in", "8 in",
          step=0.1)),
         variant="length", feature="kind", spec="steel",
         blurbs=("Hand-sharpened 15-degree edge.", "Full tang and a balanced handle.", "Comes with a blade guard.")),
    Leaf(("Home", "Bedding", "Pillows"), "pillow", "pillow", 45, 0.45,
         "{brand} {model} {fill} pillow, {firmness}, {size}",
         (_a("fill", "memory foam", "down", "down alternative", "latex"), _a("firmness", "soft", "medium", "firm"),
          _a("size", "standard", "queen", "king", step=0.1)),
         variant="size", feature="fill", spec="firmness",
         blurbs=("Breathable cotton cover, machine washable.", "Holds its shape night after night.",
                 "Hypoallergenic.")),
    Leaf(("Home", "Bedding", "Sheet sets"), "sheet set", "sheets", 70, 0.5,
         "{brand} {model} {material} sheet set, {size}, {color}",
         (_a("material", "cotton", "linen", "bamboo", "microfiber"), _a("size", "twin", "full", "queen", "king",
          step=0.1), HOME),
         variant="size", feature="material", spec="size",
         blurbs=("Deep pockets fit mattresses up to 16 inches.", "Gets softer with every wash.",
                 "Includes two pillowcases.")),
    # ---- Beauty ---------------------------------------------------------------------------------
    Leaf(("Beauty", "Skincare", "Moisturizers"), "moisturizer", "moisturizer", 28, 0.6,
         "{brand} {model} {feature} moisturizer for {skin_type}, {volume}",
         (_a("feature", "fragrance-free", "hydrating", "anti-aging", "oil-free"), SKIN,
          _a("volume", "50 ml", "100 ml", step=0.4)),
         variant="volume", feature="feature", spec="skin_type",
         blurbs=("With hyaluronic acid and ceramides.", "Absorbs quickly without a greasy feel.",
                 "Dermatologist tested."),
         consumable=True),
    Leaf(("Beauty", "Skincare", "Sunscreen"), "sunscreen", "sunscreen", 18, 0.45,
         "{brand} {model} {feature} sunscreen, {spf}, {volume}",
         (_a("feature", "mineral", "water-resistant", "tinted", "sport"), _a("spf", "SPF 30", "SPF 50", "SPF 70"),
          _a("volume", "50 ml", "150 ml", step=0.5)),
         variant="volume", feature="feature", spec="spf",
         blurbs=("Broad-spectrum UVA/UVB protection.", "Reef-friendly formula.", "No white cast."),
         consumable=True, season=(190, 0.9)),
    Leaf(("Beauty", "Skincare", "Cleansers"), "face cleanser", "cleanser", 16, 0.45,
         "{brand} {model} {kind} face cleanser for {skin_type}, {volume}",
         (_a("kind", "foaming", "gel", "cream", "micellar"), SKIN, _a("volume", "150 ml", "250 ml", step=0.3)),
         variant="volume", feature="kind", spec="skin_type",
         blurbs=("Removes makeup without stripping.", "pH-balanced.", "Gentle enough for twice a day."),
         consumable=True),
    Leaf(("Beauty", "Hair care", "Shampoo"), "shampoo", "shampoo", 14, 0.5,
         "{brand} {model} {feature} shampoo for {hair_type}, {volume}",
         (_a("feature", "sulfate-free", "volumizing", "anti-dandruff", "moisturizing"),
          _a("hair_type", "dry hair", "curly hair", "fine hair", "color-treated hair"),
          _a("volume", "250 ml", "500 ml", "1 L", step=0.35)),
         variant="volume", feature="feature", spec="hair_type",
         blurbs=("Salon formula with argan oil.", "Rinses clean, no residue.", "Vegan and cruelty-free."),
         consumable=True),
    Leaf(("Beauty", "Hair care", "Conditioner"), "conditioner", "conditioner", 15, 0.5,
         "{brand} {model} {feature} conditioner for {hair_type}, {volume}",
         (_a("feature", "leave-in", "repairing", "moisturizing", "lightweight"),
          _a("hair_type", "dry hair", "curly hair", "fine hair", "color-treated hair"),
          _a("volume", "250 ml", "500 ml", "1 L", step=0.35)),
         variant="volume", feature="feature", spec="hair_type",
         blurbs=("Detangles in seconds.", "Smooths frizz for 48 hours.", "Vegan and cruelty-free."),
         consumable=True),
    Leaf(("Beauty", "Hair care", "Hair dryers"), "hair dryer", "hair dryer", 80, 0.6,
         "{brand} {model} {feature} hair dryer, {wattage}, {color}",
         (_a("feature", "ionic", "ceramic", "compact", "diffuser"), _a("wattage", "1600 W", "1875 W", "2000 W",
          step=0.15), _a("color", "black", "white", "rose gold", "purple")),
         variant="color", feature="feature", spec="wattage",
         blurbs=("Three heat and two speed settings.", "Cool-shot button sets the style.",
                 "Concentrator nozzle included.")),
    Leaf(("Beauty", "Fragrance"), "perfume", "perfume", 70, 0.55,
         "{brand} {model} {scent} {concentration}, {volume}, {gender}",
         (_a("scent", "floral", "woody", "citrus", "fresh", "amber"),
          _a("concentration", "eau de toilette", "eau de parfum", "parfum", step=0.2),
          _a("volume", "30 ml", "50 ml", "100 ml", step=0.35), GENDER),
         variant="volume", feature="scent", spec="concentration",
         blurbs=("Top notes of bergamot and pink pepper.", "Long-lasting, up to 8 hours.", "Refillable bottle."),
         season=(130, 0.3)),
    # ---- Sports ---------------------------------------------------------------------------------
    Leaf(("Sports", "Fitness", "Yoga mats"), "yoga mat", "yoga mat", 35, 0.45,
         "{brand} {model} {material} yoga mat, {thickness}, {color}",
         (_a("material", "TPE", "natural rubber", "PVC", "cork"), _a("thickness", "4 mm", "6 mm", "8 mm", step=0.1),
          BRIGHT),
         variant="color", feature="material", spec="thickness",
         blurbs=("Non-slip on both sides.", "Alignment lines printed on top.", "Carry strap included.")),
    Leaf(("Sports", "Fitness", "Dumbbells"), "dumbbells", "dumbbells", 60, 0.6,
         "{brand} {model} {kind} dumbbells, {weight}",
         (_a("kind", "rubber hex", "neoprene", "chrome", "adjustable"),
          _a("weight", "5 lb pair", "10 lb pair", "20 lb pair", "30 lb pair", step=0.35)),
         variant="weight", feature="kind", spec="weight",
         blurbs=("Hex heads stop them rolling away.", "Knurled, comfortable grip.", "Floor-friendly coating.")),
    Leaf(("Sports", "Fitness", "Fitness trackers"), "fitness tracker", "fitness tracker", 120, 0.55,
         "{brand} {model} {feature} fitness tracker, {battery} battery, {color}",
         (_a("feature", "GPS", "heart-rate", "sleep-tracking"), _a("battery", "5-day", "7-day", "14-day", step=0.1),
          TECH),
         variant="color", feature="feature", spec="battery",
         blurbs=("Tracks 20 workout types automatically.", "Swim-proof to 50 meters.", "Always-on display.")),
    Leaf(("Sports", "Nutrition", "Protein powder"), "protein powder", "protein powder", 40, 0.35,
         "{brand} {model} {protein} protein powder, {flavor}, {weight}",
         (_a("protein", "whey", "plant-based", "casein"),
          _a("flavor", "chocolate", "vanilla", "strawberry", "unflavored", "cookies and cream"),
          _a("weight", "1 lb", "2 lb", "5 lb", step=0.6)),
         variant="flavor", feature="protein", spec="flavor",
         blurbs=("24 g of protein per scoop.", "Mixes smoothly with a shaker.", "Third-party tested."),
         consumable=True),
    Leaf(("Sports", "Cycling", "Bike helmets"), "bike helmet", "helmet", 70, 0.5,
         "{brand} {model} {feature} bike helmet, {size}, {color}",
         (_a("feature", "MIPS", "lightweight", "aero", "commuter"), _a("size", "S", "M", "L"), BRIGHT),
         variant="size", feature="feature",
         blurbs=("Twelve vents keep you cool.", "Dial-fit adjustment.", "Certified to CPSC standards."),
         season=(170, 0.4)),
    Leaf(("Sports", "Cycling", "Bike lights"), "bike light", "bike light", 35, 0.5,
         "{brand} {model} {kind} bike light, {brightness}",
         (_a("kind", "front", "rear", "front and rear set"), _a("brightness", "400 lumens", "800 lumens",
          "1200 lumens", step=0.3)),
         variant="brightness", feature="kind", spec="brightness",
         blurbs=("USB rechargeable.", "Daytime flash mode.", "Tool-free mount fits any handlebar.")),
    Leaf(("Sports", "Running", "Running shorts"), "running shorts", "shorts", 35, 0.35,
         "{brand} {model} {feature} running shorts, {length}, {gender}, {color}",
         (_a("feature", "lined", "lightweight", "compression", "zip-pocket"), _a("length", "3 in", "5 in", "7 in"),
          GENDER, BRIGHT, APPAREL_SIZE),
         variant="color", feature="feature", spec="length",
         blurbs=("Quick-dry, four-way stretch fabric.", "Reflective details.", "Back zip pocket fits a phone.")),
)

#: Top-level seasons (peak day of year, log amplitude): outdoors peaks in summer, sports after New Year,
#: electronics around Black Friday, beauty before Mother's Day, home in spring.
SEASONS: dict[str, tuple[float, float]] = {
    "Outdoors": (190, 0.55),
    "Sports": (10, 0.35),
    "Electronics": (332, 0.3),
    "Beauty": (128, 0.2),
    "Home": (100, 0.15),
}

#: How often shoppers shop each top level (catalog shares follow the leaf weights instead).
TOP_DEMAND: dict[str, float] = {"Electronics": 0.28, "Home": 0.22, "Outdoors": 0.18, "Beauty": 0.17, "Sports": 0.15}

#: Leaf -> the leaves bought to go with it, with weights. Not symmetric: a memory card needs no camera.
COMPLEMENTS: dict[str, dict[str, float]] = {
    "Mirrorless cameras": {"Memory cards": 0.55, "Camera bags": 0.25, "Tripods": 0.2},
    "Action cameras": {"Memory cards": 0.8, "Camera bags": 0.2},
    "Smartphones": {"Phone cases": 0.6, "Chargers": 0.3, "Headphones": 0.1},
    "Laptops": {"Laptop sleeves": 0.5, "Mice": 0.5},
    "Tents": {"Sleeping bags": 0.6, "Headlamps": 0.25, "Camp stoves": 0.15},
    "Sleeping bags": {"Headlamps": 0.5, "Camp stoves": 0.5},
    "Hiking boots": {"Hiking backpacks": 0.6, "Water bottles": 0.4},
    "Trail running shoes": {"Running shorts": 0.6, "Water bottles": 0.4},
    "Coffee makers": {"Coffee beans": 1.0},
    "Blenders": {"Protein powder": 1.0},
    "Frying pans": {"Kitchen knives": 1.0},
    "Pillows": {"Sheet sets": 1.0},
    "Shampoo": {"Conditioner": 1.0},
    "Hair dryers": {"Shampoo": 0.5, "Conditioner": 0.5},
    "Moisturizers": {"Cleansers": 0.6, "Sunscreen": 0.4},
    "Dumbbells": {"Protein powder": 0.6, "Yoga mats": 0.4},
    "Yoga mats": {"Water bottles": 0.6, "Fitness trackers": 0.4},
    "Bike helmets": {"Bike lights": 1.0},
    "Fitness trackers": {"Running shorts": 1.0},
}


@dataclass(frozen=True, slots=True)
class Brand:
    """A brand: its price tier (a price multiplier) and the category prefixes it sells in."""

    name: str
    tier: float
    covers: tuple[str, ...]  # "Top" or "Top/Mid" or "Top/Mid/Leaf" prefixes


BUDGET, MID, PREMIUM = 0.62, 1.0, 1.65

BRANDS: tuple[Brand, ...] = (
    Brand("Northpeak", PREMIUM, ("Outdoors",)),
    Brand("Trailhound", MID, ("Outdoors/Footwear", "Sports/Running")),
    Brand("Campfield", BUDGET, ("Outdoors/Camping", "Outdoors/Water bottles")),
    Brand("Ridgeline", MID, ("Outdoors", "Sports/Cycling")),
    Brand("Alpenglow", PREMIUM, ("Outdoors/Camping", "Outdoors/Backpacks")),
    Brand("Summitworks", MID, ("Outdoors/Footwear", "Outdoors/Backpacks")),
    Brand("Hydrafell", MID, ("Outdoors/Water bottles",)),
    Brand("Lumora", PREMIUM, ("Electronics/Cameras", "Electronics/Camera accessories")),
    Brand("Kestrel", MID, ("Electronics/Cameras", "Electronics/Audio")),
    Brand("Optiva", BUDGET, ("Electronics/Cameras", "Electronics/Camera accessories")),
    Brand("Memora", MID, ("Electronics/Camera accessories/Memory cards",)),
    Brand("Voltix", BUDGET, ("Electronics/Phone accessories", "Electronics/Audio", "Electronics/Computer accessories")),
    Brand("Nimbus", PREMIUM, ("Electronics/Phones", "Electronics/Computers", "Electronics/Audio/Headphones",
                              "Electronics/Phone accessories")),
    Brand("Arclight", MID, ("Electronics/Phones", "Electronics/Computers", "Electronics/Computer accessories")),
    Brand("Sonique", PREMIUM, ("Electronics/Audio",)),
    Brand("Pixelon", MID, ("Electronics/Phones", "Electronics/Phone accessories", "Sports/Fitness/Fitness trackers")),
    Brand("Carryall", MID, ("Electronics/Camera accessories/Camera bags", "Electronics/Computer accessories/Laptop "
                            "sleeves", "Outdoors/Backpacks")),
    Brand("Brightway", MID, ("Home/Kitchen",)),
    Brand("Ironhearth", PREMIUM, ("Home/Kitchen/Frying pans", "Home/Kitchen/Kitchen knives")),
    Brand("Brewline", PREMIUM, ("Home/Kitchen/Coffee makers",)),
    Brand("Roastery Row", MID, ("Home/Pantry",)),
    Brand("Daybreak Roasters", BUDGET, ("Home/Pantry", "Home/Kitchen/Coffee makers")),
    Brand("Cedar & Co", MID, ("Home/Bedding",)),
    Brand("Dreamfield", BUDGET, ("Home/Bedding",)),
    Brand("Kitchenly", BUDGET, ("Home/Kitchen",)),
    Brand("Amberleaf", PREMIUM, ("Beauty",)),
    Brand("Purelle", MID, ("Beauty/Skincare", "Beauty/Hair care")),
    Brand("Glowlab", BUDGET, ("Beauty/Skincare",)),
    Brand("Silkwave", MID, ("Beauty/Hair care",)),
    Brand("Maison Verre", PREMIUM, ("Beauty/Fragrance",)),
    Brand("Solenne", MID, ("Beauty/Fragrance", "Beauty/Skincare/Sunscreen")),
    Brand("Stridewell", MID, ("Sports", "Outdoors/Footwear/Trail running shoes")),
    Brand("Corefit", BUDGET, ("Sports/Fitness", "Sports/Nutrition")),
    Brand("Ironform", MID, ("Sports/Fitness",)),
    Brand("Velocita", PREMIUM, ("Sports/Cycling", "Sports/Running")),
    Brand("Fuelwell", MID, ("Sports/Nutrition",)),
    Brand("Everyday Basics", BUDGET, ("Home/Kitchen", "Home/Bedding", "Electronics/Phone accessories",
                                      "Electronics/Computer accessories", "Sports/Fitness/Yoga mats",
                                      "Outdoors/Water bottles")),
)

#: Product-line names: a brand's model in one leaf is a word and an optional suffix ("Summit Pro").
MODEL_WORDS: tuple[str, ...] = (
    "Trailblazer", "Summit", "Ridge", "Ascent", "Horizon", "Voyager", "Nova", "Apex", "Zenith", "Pulse", "Aero",
    "Vista", "Echo", "Flux", "Terra", "Aurora", "Element", "Prime", "Orbit", "Strata", "Vector", "Cascade", "Sierra",
    "Tundra", "Breeze", "Halo", "Luxe", "Core", "Edge", "Glide", "Quest", "Atlas", "Ember", "Drift", "Pioneer",
    "Kodiak", "Granite", "Falcon", "Comet", "Solstice", "Meridian", "Verve", "Bloom", "Velvet", "Radiant", "Ritual",
    "Hearth", "Harvest", "Crest", "Tempo", "Stride", "Rally", "Sprint", "Orion", "Lyra", "Juno", "Boreal", "Mesa",
    "Canyon", "Glacier", "Harbor", "Monarch", "Sable", "Willow", "Indigo", "Cobalt", "Saffron", "Juniper", "Alder",
)
MODEL_SUFFIXES: tuple[str, ...] = ("", " 2", " 3", " Pro", " Lite", " X", " Max", " Plus", " GT", " Mini", " Air",
                                   " II", " 500", " 700", " Elite", " Sport")

#: Words that appear in queries but not in titles.
QUERY_WORDS: tuple[str, ...] = ("under", "for", "women", "men", "womens", "mens", "unisex")
