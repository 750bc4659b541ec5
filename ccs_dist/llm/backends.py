"""Labelers and judges over chat endpoints (the offline ones, with the same interface, are in
:mod:`ccs_dist.llm.offline`).

A labeler turns a head's descriptions into one label; a judge turns (descriptions, label) into one
:class:`Verdict` per description. Unusable answers are re-asked (each re-ask is its own cache entry,
so a re-run replays the same sequence without a request) and finally recorded as failed verdicts. A
request the endpoint refuses for good (:class:`RequestRejected`) is a failed label or verdict too: its
head is flagged and the other heads are scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ccs_dist.llm.answers import InvalidAnswer, normalise_label, parse_head_verdicts, parse_pair_verdict
from ccs_dist.llm.client import EndpointClient, RequestRejected
from ccs_dist.llm.prompts import judge_head_request, judge_pair_request, label_request


@dataclass(frozen=True)
class LabelResult:
    label: str | None  # None when every ask gave an unusable answer
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    aligned: bool | None  # None: the judge failed, ``error`` says why
    error: str | None = None


class Labeler(Protocol):
    name: str

    async def label(self, descriptions: Sequence[str]) -> LabelResult: ...


class Judge(Protocol):
    name: str

    async def judge(self, descriptions: Sequence[str], label: str) -> list[Verdict]: ...


class ChatLabeler:
    def __init__(self, client: EndpointClient, attempts: int = 3, template: str = "label"):
        self.client, self.attempts, self.name, self.template = client, attempts, client.name, template

    async def label(self, descriptions: Sequence[str]) -> LabelResult:
        reasons = []
        for ask in range(self.attempts):
            try:
                answer = await self.client.ask(label_request(descriptions, ask=ask, template=self.template))
            except RequestRejected as e:
                return LabelResult(None, f"labeler: {e}")
            try:
                return LabelResult(normalise_label(answer.text))
            except InvalidAnswer as e:
                reasons.append(str(e))
        return LabelResult(None, f"unusable label after {self.attempts} asks: {reasons[-1]}")


class ChatPairJudge:
    """The paper's protocol: one request per (description, label), answer 1 or 0."""

    def __init__(self, client: EndpointClient, attempts: int = 3):
        self.client, self.attempts, self.name = client, attempts, client.name

    async def judge(self, descriptions: Sequence[str], label: str) -> list[Verdict]:
        return list(await asyncio.gather(*(self._one(d, label) for d in descriptions)))

    async def _one(self, description: str, label: str) -> Verdict:
        reasons = []
        for ask in range(self.attempts):
            try:
                answer = await self.client.ask(judge_pair_request(description, label, ask=ask))
            except RequestRejected as e:
                return Verdict(None, f"judge: {e}")
            try:
                return Verdict(parse_pair_verdict(answer.text))
            except InvalidAnswer as e:
                reasons.append(str(e))
        return Verdict(None, f"unusable verdict after {self.attempts} asks: {reasons[-1]}")


class ChatHeadJudge:
    """Cheaper: one request per head returning all verdicts as JSON."""

    def __init__(self, client: EndpointClient, attempts: int = 3):
        self.client, self.attempts, self.name = client, attempts, client.name

    async def judge(self, descriptions: Sequence[str], label: str) -> list[Verdict]:
        reasons = []
        for ask in range(self.attempts):
            try:
                answer = await self.client.ask(judge_head_request(descriptions, label, ask=ask))
            except RequestRejected as e:
                return [Verdict(None, f"judge: {e}") for _ in descriptions]
            try:
                return [Verdict(v) for v in parse_head_verdicts(answer.text, len(descriptions))]
            except InvalidAnswer as e:
                reasons.append(str(e))
        err = f"unusable verdicts after {self.attempts} asks: {reasons[-1]}"
        return [Verdict(None, err) for _ in descriptions]
