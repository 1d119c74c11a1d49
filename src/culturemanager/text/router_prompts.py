"""The prompt router's templates and the pure functions that fill them in (`router.template`; the router itself is
stages/route.py). A module of its own that imports nothing of the package: the config validates a template's name
against it, and the config must not import the synthesis prompts (they import the config).

Run: `python -m culturemanager.text.router_prompts` prints each named template with three options filled in.
"""

from __future__ import annotations

# The prompt router's templates, by name (`router.template`). {options}: the options as a comma-separated list;
# {option_list}: one "- option" line each, "Others" with the paper's explanation; {input}: the text.
ROUTER_TEMPLATES: dict[str, str] = {
    # this project's own short prompt (the router's only template before the paper's was added)
    "short": "Which culture does the following text come from? Options: {options}.\nText: {input}\nCulture:",
    # the CultureManager paper's router prompt, word for word (the line breaks are ours)
    "paper": ("You are a helpful chatbot that knows different cultures around the world very well. Your task is to "
              "analyze the provided text based on its language, expressions, and context, and select the most "
              "relevant culture to the provided text from the following options:\n{option_list}\n"
              "Output **only** the exact name of the culture without any explanation.\nText: {input}\nAnswer:"),
}
OTHERS_EXPLAINED = "Others (if the text is not relevant to any cultures listed above)"


def router_template(name_or_template: str) -> str:
    """A named router template ("short", "paper"), or the custom template itself."""
    return ROUTER_TEMPLATES.get(name_or_template, name_or_template)


def format_router_prompt(template: str, options: list[str], text: str) -> str:
    listed = "\n".join(f"- {OTHERS_EXPLAINED if o == 'Others' else o}" for o in options)
    return (router_template(template).replace("{options}", ", ".join(options)).replace("{option_list}", listed)
            .replace("{input}", text))


def split_router_template(template: str, options: list[str]) -> tuple[str, str]:
    prefix, _, suffix = format_router_prompt(template, options, "\x00").partition("\x00")
    return prefix, suffix


def main() -> None:
    for name in ROUTER_TEMPLATES:
        print(f"[{name}]\n{format_router_prompt(name, ['Spanish', 'Turkish', 'Others'], 'TEXT')}\n")


if __name__ == "__main__":
    main()
