"""Stage configs are the library's dataclasses: the spec sections and the commands' flags come from their fields,
and the stage keys stay those of the code before (pinned: computed on commit 308a104)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from ccs_dist.artifacts.store import content_key
from ccs_dist.attribution.run import AttributionConfig
from ccs_dist.cli import Commands, main
from ccs_dist.cli.flags import build_parser, command_flags, flag_name
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.jobs.spec import load_spec
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.spans.table import SpanConfig
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.stages import chain
from ccs_dist.stages.config import field_types, nested_config, spec_fields

# stage -> content key of its key_parts, per shipped spec and model (spans only where the pool is local)
PINNED = {
    'demo/ccs-toy/planted_v2/attribution': 'b64fdbe674e2d5963895da12',
    'demo/ccs-toy/planted_v2/evaluate': '43c63e085941d728f7847acc',
    'demo/ccs-toy/planted_v2/score': 'cc502bfeab0d56ce4a08dd3a',
    'demo/ccs-toy/planted_v2/spans': '2945283bd4be48fc05a9f9ab',
    'demo/ccs-toy/random-init/attribution': 'd522bd0548820681ab7751e8',
    'demo/ccs-toy/random-init/evaluate': '07c7791ca76a48da5bc2f226',
    'demo/ccs-toy/random-init/score': 'cc502bfeab0d56ce4a08dd3a',
    'demo/ccs-toy/random-init/spans': '1f99860fe45823a393984334',
    'local_gpu/ViT-B-16/laion2b_s34b_b88k/attribution': 'dcd277724f4e20dfcb612818',
    'local_gpu/ViT-B-16/laion2b_s34b_b88k/evaluate': '7c2f9486d4adb5707b8aadbe',
    'local_gpu/ViT-B-16/laion2b_s34b_b88k/score': 'cc502bfeab0d56ce4a08dd3a',
    'minimal/attribution': 'dfe43832c4c2eb8088585175',
    'minimal/evaluate': 'fc1cb1fee5d28da407463637',
    'minimal/score': 'cc502bfeab0d56ce4a08dd3a',
    'minimal/spans': '506453b834a7f5e01777dbb0',
    'paper_grid/ViT-B-16/laion2b_s34b_b88k/attribution': 'dcd277724f4e20dfcb612818',
    'paper_grid/ViT-B-16/laion2b_s34b_b88k/evaluate': 'd551443cecf22b3f67a45a9f',
    'paper_grid/ViT-B-16/laion2b_s34b_b88k/score': '3c2359e2909853eff869435f',
    'paper_grid/ViT-B-16/openai/attribution': '30d8fdb7dada4506447d4133',
    'paper_grid/ViT-B-16/openai/evaluate': '11d89d82bb9589ec4cebd50f',
    'paper_grid/ViT-B-16/openai/score': '3c2359e2909853eff869435f',
    'paper_grid/ViT-B-32/datacomp_m_s128m_b4k/attribution': '62575aa53a5d6451e5d7f0df',
    'paper_grid/ViT-B-32/datacomp_m_s128m_b4k/evaluate': '130824343d2a7d48e8924616',
    'paper_grid/ViT-B-32/datacomp_m_s128m_b4k/score': '3c2359e2909853eff869435f',
    'paper_grid/ViT-B-32/openai/attribution': 'dfe43832c4c2eb8088585175',
    'paper_grid/ViT-B-32/openai/evaluate': '0f91b6247417b4320accc23d',
    'paper_grid/ViT-B-32/openai/score': '3c2359e2909853eff869435f',
    'paper_grid/ViT-L-14/laion2b_s32b_b82k/attribution': 'e93e0e00662afab4c2daefc8',
    'paper_grid/ViT-L-14/laion2b_s32b_b82k/evaluate': 'a252a2d21036ad7fb03d1568',
    'paper_grid/ViT-L-14/laion2b_s32b_b82k/score': '3c2359e2909853eff869435f',
    'paper_grid/ViT-L-14/openai/attribution': '3595e617d2bde597561391c0',
    'paper_grid/ViT-L-14/openai/evaluate': '7f9469f9db7d6e5c29bf0a94',
    'paper_grid/ViT-L-14/openai/score': '3c2359e2909853eff869435f',
    # the card stage (added with it; the keys of every other stage unchanged)
    'demo/ccs-toy/planted_v2/card': 'f475262516d3cdecab69adba',
    'demo/ccs-toy/random-init/card': '2c80a1fc794b4bd6641c2a6c',
    'local_gpu/ViT-B-16/laion2b_s34b_b88k/card': '72ec17eb54a15c48d8964fef',
    'minimal/card': '5404f659c5390faa5fbbb83b',
    'paper_grid/ViT-B-16/laion2b_s34b_b88k/card': '72ec17eb54a15c48d8964fef',
    'paper_grid/ViT-B-16/openai/card': '91d0a5a84dd97afac05e6a1b',
    'paper_grid/ViT-B-32/datacomp_m_s128m_b4k/card': 'd8e0a82c299fb9477621c567',
    'paper_grid/ViT-B-32/openai/card': '411e3b41e71c525b36dccb89',
    'paper_grid/ViT-L-14/laion2b_s32b_b82k/card': '3f50b766150d1d2264e48256',
    'paper_grid/ViT-L-14/openai/card': 'dab99a95b96e6127f3b01937',
    # the direct stage (the planted-concept benchmark, issue 23): new keys, no earlier key changed
    'demo/ccs-toy/planted_v2/direct': '3c934660f8c8a6abe5ab419c',
    'demo/ccs-toy/random-init/direct': '10dcd01f3351a5fd7747788b',
    'local_gpu/ViT-B-16/laion2b_s34b_b88k/direct': 'f3754fa2c7abbddb3f193769',
    'minimal/direct': '6df79d12a96403d3c666aca3',
    'paper_grid/ViT-B-16/laion2b_s34b_b88k/direct': '4a579fc355f5a8fb18de6215',
    'paper_grid/ViT-B-16/openai/direct': '447a58ded4ef7e81757e9273',
    'paper_grid/ViT-B-32/datacomp_m_s128m_b4k/direct': 'a077553f363da1beb16b1a51',
    'paper_grid/ViT-B-32/openai/direct': '46e796a62cf02dca8d329326',
    'paper_grid/ViT-L-14/laion2b_s32b_b82k/direct': 'e3665eda7ec1e721ea921a7d',
    'paper_grid/ViT-L-14/openai/direct': '175ed9c2c45e82374cbbdd5e',
}

# command -> ((its config parameter, the stage config whose fields are its flags), ...)
GENERATED = {
    "attribute": (("attribution", AttributionConfig),),
    "benchmark": (("benchmark", BenchmarkConfig),),
    "decompose": (("probe", DecomposeConfig),),
    "textspan": (("probe", DecomposeConfig), ("spans", SpanConfig)),
    "score": (("llm", ScoreConfig),),
}


def _stage_keys(name_or_path) -> dict[str, str]:
    spec = load_spec(name_or_path, {"out": "/o", "cache_dir": "/c"})
    label = "minimal" if not isinstance(name_or_path, str) else name_or_path
    out = {}
    for entry in spec.models:
        c = spec.chain_config(entry)
        for stage in chain.CHAIN:
            if label in ("local_gpu", "paper_grid") and stage.name == "spans":
                continue  # their pools are a file to fetch / a dataset
            out[f"{label}/{c.key}/{stage.name}" if label != "minimal" else f"minimal/{stage.name}"] = content_key(stage.key_parts(c))
    return out


def test_stage_keys_are_those_of_the_code_before(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/data")
    minimal = tmp_path / "s.yaml"
    minimal.write_text("run: x\nmodels: [{arch: ViT-B-32, pretrained: openai}]\n")
    got = {}
    for name in ("demo", "local_gpu", "paper_grid", minimal):
        got.update(_stage_keys(name))
    assert got == PINNED


def _flag_mismatch(func, param: str, config) -> tuple[set[str], set[str]]:
    """(fields without a flag, flags without a field) of ``config`` in the command ``func``."""
    flags = {f.dest[1:] for f in command_flags(func) if f.dest[0] == param}
    fields = set(_leaf_paths(config))
    return fields - flags, flags - fields


def _leaf_paths(config, prefix=()):
    for f in spec_fields(config):
        if f.metadata.get("spec_only"):
            continue
        tp = field_types(config)[f.name]
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            continue  # a list of configs (the judges): the command's own flag says how it is given
        inner = nested_config(tp)
        if inner is not None:
            yield from _leaf_paths(inner, (*prefix, f.name))
        else:
            yield (*prefix, f.name)


@pytest.mark.parametrize("command", GENERATED)
def test_every_field_of_the_stage_config_is_a_flag_and_back(command):
    for param, config in GENERATED[command]:
        assert _flag_mismatch(getattr(Commands, command), param, config) == (set(), set()), param


def test_the_check_finds_a_field_without_its_flag():
    @dataclasses.dataclass(frozen=True)
    class Wider(AttributionConfig):
        new_option: int = 3

    missing, extra = _flag_mismatch(Commands.attribute, "attribution", Wider)
    assert missing == {("new_option",)} and not extra


def test_a_field_added_to_a_config_becomes_a_flag_with_its_help():
    @dataclasses.dataclass(frozen=True)
    class Wider(AttributionConfig):
        new_option: float | None = dataclasses.field(default=None, metadata={"help": "a new knob"})

    def cmd(attribution: Wider, out: str = "o"):
        """A command.

        Args:
            out: where.
        """

    cmd.__annotations__.update(attribution=Wider, out=str)  # a local class: no string annotation resolves to it
    text = build_parser("ccs-dist cmd", cmd).format_help()
    assert "--new-option float | none" in text and "a new knob" in text


@pytest.mark.parametrize("command", GENERATED)
def test_help_uses_dashes_and_readable_types(command):
    text = build_parser(f"ccs-dist {command}", getattr(Commands, command)).format_help()
    assert "--batch-size int" in text or command in ("score", "benchmark")
    assert "--templates-per-class int | none" in text or command != "attribute"
    assert "--workers int | none" in text or command in ("attribute", "score", "benchmark")
    assert "--null-sets int" in text or command != "benchmark"
    assert "Optional[" not in text and not [w for w in text.split() if w.startswith("--") and "_" in w]


def test_a_bad_flag_value_is_one_line(capsys):
    assert main(["attribute", "--samples", "-3", "--data-root", "/nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --samples must be >= 0, got -3"
    assert main(["attribute", "--seeds", "a,b"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds must be an integer, got 'a'"
    assert main(["attribute", "--no-such-flag", "1"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_score_flags_are_the_spec_names_and_the_old_spellings_still_parse():
    from ccs_dist.cli.flags import parse_command

    text = build_parser("ccs-dist score", Commands.score).format_help()
    for flag in ("--base-url str", "--offline-threshold float | none", "--max-concurrency int", "--cache use | refresh | bypass"):
        assert flag in text, flag
    assert "--timeout-s float, --timeout float" in text and "--model str, --llm-model str" in text
    llm = parse_command("ccs-dist score", Commands.score, ["--llm-model", "m", "--concurrency", "3", "--timeout", "9",
                                                            "--threshold", "0.5", "--base-url", "http://h:1/v1"])["llm"]
    assert (llm.labeler.model, llm.labeler.max_concurrency, llm.labeler.timeout_s, llm.offline_threshold) == ("m", 3, 9.0, 0.5)
    assert llm.labeler.base_url == "http://h:1/v1" and llm.backend == "openai"


def test_fire_spellings_still_parse():
    assert flag_name(("top_k",)) == "--top-k"
    flags = {f.name for f in command_flags(Commands.attribute)}
    assert {"--top-k", "--templates-per-class", "--data-root"} <= flags


def test_the_old_verdict_rule_without_gold_pairs_keeps_the_score_key_of_earlier_releases(monkeypatch):
    """The demo's score key before the rank rule and the judge validation ('0f516aee...'), reproduced by asking for
    the threshold rule and no gold pairs; the defaults (rank rule, gold pairs) give another key."""
    monkeypatch.setenv("DATA_ROOT", "/data")
    score = next(s for s in chain.CHAIN if s.name == "score")
    spec = load_spec("demo", {"out": "/o", "cache_dir": "/c"})
    c = spec.chain_config(spec.models[0])
    old = dataclasses.replace(c, llm=dataclasses.replace(c.llm, offline_verdict="threshold", judge_gold_pairs=0))
    assert content_key(score.key_parts(old)) == "0f516aee0f41927df4e004d8"
    assert content_key(score.key_parts(c)) == PINNED["demo/ccs-toy/planted_v2/score"] != "0f516aee0f41927df4e004d8"
