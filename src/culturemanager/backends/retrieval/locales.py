"""A culture's locale (ISO 3166 country, ISO 639-1 language) in each web search API's own terms.

One pure function per backend of websearch.py, returning the request parameters to add (none when the API has
no value for the culture: an unknown value is an error or a silent no-op there, never a hint):
- `tavily_locale`:  {"country": "spain"}, Tavily's lowercase English names (codes without one are not sent).
- `brave_locale`:   {"country": "ES", "search_lang": "es"}, only values Brave lists (ja -> jp, zh -> zh-hans /
                    zh-hant, pt -> pt-pt / pt-br, en -> en / en-gb); another value is a 422 there.
- `serper_locale`:  {"gl": "es", "hl": "es"} (zh -> zh-cn / zh-tw).
- `searxng_locale`: {"language": "es-ES"} (or "es" without a country).
- `ddgs_region`:    "es-es" in DuckDuckGo's region codes (gb -> uk-en, ja -> jp-jp, Arabic -> xa-ar; else wt-wt).

Use: `from culturemanager.backends.retrieval.locales import brave_locale;
params.update(brave_locale(culture))`; or try one:
`python -c "from culturemanager.config import Culture;
from culturemanager.backends.retrieval.locales import ddgs_region;
print(ddgs_region(Culture(name='x', country='gb', language='en')))"` prints uk-en.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from culturemanager.config import Culture


def tavily_locale(culture: Culture | None) -> dict[str, str]:
    """Tavily's `country` (honoured with topic "general" only)."""
    if culture and culture.country and culture.country.upper() in TAVILY_COUNTRIES:
        return {"country": TAVILY_COUNTRIES[culture.country.upper()]}
    return {}


def brave_locale(culture: Culture | None) -> dict[str, str]:
    """Brave's `country` and `search_lang`, each only when Brave lists it (another value is a 422 error)."""
    params: dict[str, str] = {}
    country = (culture.country or "").upper() if culture else ""
    if country in BRAVE_COUNTRIES:
        params["country"] = country
    if culture and culture.language:
        lang = {"ja": "jp", "no": "nb", "zh": "zh-hant" if country in ("TW", "HK") else "zh-hans",
                "pt": "pt-br" if country == "BR" else "pt-pt",
                "en": "en-gb" if country == "GB" else "en"}.get(culture.language.lower(), culture.language.lower())
        if lang in BRAVE_LANGUAGES:
            params["search_lang"] = lang
    return params


def serper_locale(culture: Culture | None) -> dict[str, str]:
    """Serper's (Google's) `gl` country and `hl` interface language."""
    params: dict[str, str] = {}
    country = (culture.country or "").lower() if culture else ""
    if country:
        params["gl"] = country
    if culture and culture.language:
        lang = culture.language.lower()
        params["hl"] = ("zh-tw" if country in ("tw", "hk") else "zh-cn") if lang == "zh" else lang
    return params


def searxng_locale(culture: Culture | None) -> dict[str, str]:
    """SearXNG's `language`: "es-ES", or "es" without a country; nothing without a language."""
    if culture and culture.language:
        lang = culture.language.lower()
        return {"language": f"{lang}-{culture.country.upper()}" if culture.country else lang}
    return {}


def ddgs_region(culture: Culture | None) -> str:
    """DuckDuckGo region for a culture, e.g. es/es -> "es-es", gb/en -> "uk-en"; "wt-wt" (no region) when
    DuckDuckGo has none for it."""
    if culture is None or not culture.country:
        return "wt-wt"
    country, lang = culture.country.lower(), (culture.language or "").lower()
    if country in _ARAB_COUNTRIES:
        return "xa-ar" if lang in ("ar", "") else "xa-en"
    country = {"gb": "uk"}.get(country, country)
    lang = {"ja": "jp", "ko": "kr", "zh": "tzh" if country in ("tw", "hk") else "zh"}.get(lang, lang)
    if f"{country}-{lang}" in DDGS_REGIONS:
        return f"{country}-{lang}"
    # no language, or one DuckDuckGo does not pair with the country: the country's first listed region
    return next((r for r in sorted(DDGS_REGIONS) if r.startswith(country + "-")), "wt-wt")


# ---------------------------------------------------------------------------------------------- tables

# Tavily's `country` takes lowercase English names; only these codes are mapped (others are not sent).
TAVILY_COUNTRIES = {
    "AR": "argentina", "AU": "australia", "AT": "austria", "BD": "bangladesh", "BE": "belgium", "BR": "brazil",
    "CA": "canada", "CL": "chile", "CN": "china", "CO": "colombia", "CZ": "czech republic", "DK": "denmark",
    "EG": "egypt", "FI": "finland", "FR": "france", "DE": "germany", "GR": "greece", "IN": "india",
    "ID": "indonesia", "IR": "iran", "IQ": "iraq", "IE": "ireland", "IL": "israel", "IT": "italy", "JP": "japan",
    "JO": "jordan", "KE": "kenya", "KR": "south korea", "MY": "malaysia", "MX": "mexico", "MA": "morocco",
    "NL": "netherlands", "NZ": "new zealand", "NG": "nigeria", "NO": "norway", "PK": "pakistan", "PE": "peru",
    "PH": "philippines", "PL": "poland", "PT": "portugal", "RO": "romania", "RU": "russia",
    "SA": "saudi arabia", "ZA": "south africa", "ES": "spain", "SE": "sweden", "CH": "switzerland",
    "TW": "taiwan", "TH": "thailand", "TR": "turkey", "UA": "ukraine", "AE": "united arab emirates",
    "GB": "united kingdom", "US": "united states", "VN": "vietnam"}
# Brave rejects (422) a country or search_lang outside its lists.
BRAVE_COUNTRIES = frozenset(
    "AR AU AT BE BR CA CL DK FI FR DE HK IN ID IT JP KR MY MX NL NZ NO CN PL PT PH RU SA ZA ES SE CH TW TR GB US"
    .split())
BRAVE_LANGUAGES = frozenset(
    "ar eu bn bg ca zh-hans zh-hant hr cs da nl en en-gb et fi fr gl de gu he hi hu is it jp kn ko lv lt ms ml "
    "mr nb pl pt-br pt-pt pa ro ru sr sk sl es sv ta te th tr uk vi".split())
# DuckDuckGo's regions ("country-language"); the language part is sometimes its own code.
DDGS_REGIONS = frozenset(
    "xa-ar xa-en ar-es au-en at-de be-fr be-nl br-pt bg-bg ca-en ca-fr ct-ca cl-es cn-zh co-es hr-hr cz-cs "
    "dk-da ee-et fi-fi fr-fr de-de gr-el hk-tzh hu-hu in-en id-id id-en ie-en il-he it-it jp-jp kr-kr lv-lv "
    "lt-lt xl-es my-ms my-en mx-es nl-nl nz-en no-no pe-es ph-en ph-tl pl-pl pt-pt ro-ro ru-ru sg-en sk-sk "
    "sl-sl za-en es-es se-sv ch-de ch-fr ch-it tw-tzh th-th tr-tr ua-uk uk-en us-en ue-es ve-es vn-vi".split())
_ARAB_COUNTRIES = frozenset("ae bh dz eg iq jo kw lb ly ma om ps qa sa sd sy tn ye".split())
