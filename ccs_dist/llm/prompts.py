"""Prompt templates: versioned JSON files beside this module, rendered into chat messages.

A template's ``name@version`` is part of every cache key, so editing a prompt means bumping its
version (the rendered messages are in the key too, so a forgotten bump still cannot serve stale
answers).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ccs_dist.llm.client import ChatRequest

PROMPT_DIR = Path(__file__).parent / "prompts"
# judge_*@2: the label is quoted as a JSON string (data, not instructions)
VERSIONS = {"label": 1, "label_paper": 1, "judge_pair": 2, "judge_head": 2, "judge_image": 1}
LABEL_PROMPTS = ("label", "label_paper")  # label_v1: 1-4 words or "mixed"; label_paper_v1: one word (the paper's)


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    system: str
    examples: tuple[tuple[tuple[str, ...], str], ...]  # (descriptions, answer)
    user: str
    max_tokens: int
    json_schema: dict | None

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


@lru_cache(maxsize=None)
def load_template(name: str, version: int | None = None) -> Template:
    version = VERSIONS[name] if version is None else version
    data = json.loads((PROMPT_DIR / f"{name}_v{version}.json").read_text(encoding="utf-8"))
    if data["name"] != name or data["version"] != version:
        raise ValueError(f"prompt file {name}_v{version}.json declares {data['name']}@{data['version']}")
    return Template(
        name=name,
        version=version,
        system=data["system"],
        examples=tuple((tuple(e["descriptions"]), e["answer"]) for e in data["examples"]),
        user=data["user"],
        max_tokens=int(data["max_tokens"]),
        json_schema=data.get("json_schema"),
    )


def numbered(descriptions: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. {' '.join(d.split())}" for i, d in enumerate(descriptions))


def quoted_label(label: str) -> str:
    """The label as the judges see it: a JSON string (quoted, escaped), i.e. data inside the prompt."""
    return json.dumps(label, ensure_ascii=False)


def label_request(descriptions: Sequence[str], ask: int = 0, template: str = "label") -> ChatRequest:
    """Few-shot: the curated examples as user/assistant turns, then the head's descriptions.

    ``template``: ``label`` (1-4 words, or "mixed") or ``label_paper`` (one word, no punctuation, as the paper asks).
    """
    t = load_template(template)
    msgs: list[tuple[str, str]] = [("system", t.system)]
    for descs, answer in t.examples:
        msgs += [("user", t.user.format(descriptions=numbered(descs))), ("assistant", answer)]
    msgs.append(("user", t.user.format(descriptions=numbered(descriptions))))
    return ChatRequest(tuple(msgs), template=t.tag, max_tokens=t.max_tokens, ask=ask)


def judge_pair_request(description: str, label: str, ask: int = 0) -> ChatRequest:
    t = load_template("judge_pair")
    user = t.user.format(label=quoted_label(label), description=" ".join(description.split()))
    return ChatRequest((("system", t.system), ("user", user)), template=t.tag, max_tokens=t.max_tokens,
                       json_schema=t.json_schema, ask=ask)


def judge_head_request(descriptions: Sequence[str], label: str, ask: int = 0) -> ChatRequest:
    t = load_template("judge_head")
    schema = copy.deepcopy(t.json_schema)
    if schema is not None:
        schema["properties"]["verdicts"]["minItems"] = schema["properties"]["verdicts"]["maxItems"] = len(descriptions)
    user = t.user.format(label=quoted_label(label), descriptions=numbered(descriptions))
    return ChatRequest((("system", t.system), ("user", user)), template=t.tag, max_tokens=t.max_tokens,
                       json_schema=schema, ask=ask)
