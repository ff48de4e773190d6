"""Messages in the user's language: one catalogue (``messages.json``) per page group.

Each file maps a language to ``{key: text}``; every key starts with the group's name and a dot
(``customers.title``), so page groups written in parallel never touch each other's files, and two
groups claiming one key is an error at start-up. Texts are ``str.format`` templates.
"""

from __future__ import annotations

import json
from pathlib import Path

LANGUAGES = ("zh-CN", "en")
FALLBACK = "en"


class Catalogue:
    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}

    def load(self, prefix: str, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        for lang, messages in data.items():
            if lang not in self.messages:
                raise ValueError(f"{path}: unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
            for key, text in messages.items():
                if not key.startswith(f"{prefix}."):
                    raise ValueError(f"{path}: key {key!r} must start with '{prefix}.'")
                if key in self.messages[lang]:
                    raise ValueError(f"{path}: key {key!r} is defined twice")
                self.messages[lang][key] = str(text)

    def missing(self) -> dict[str, list[str]]:
        """Keys some language lacks (tests check it is empty)."""
        every = set().union(*(set(m) for m in self.messages.values()))
        return {lang: sorted(every - set(m)) for lang, m in self.messages.items() if every - set(m)}

    def translate(self, language: str, key: str, **values: object) -> str:
        text = self.messages.get(language, {}).get(key) or self.messages[FALLBACK].get(key) or key
        return text.format(**values) if values else text


def pick_language(accept_language: str | None, default: str) -> str:
    """The first of our languages the browser asks for (``zh``, ``zh-CN``, ``en-GB`` …), else the default."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default
