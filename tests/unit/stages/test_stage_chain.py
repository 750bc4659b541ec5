"""The stage chain exists once (local and Ray mode walk the same object) and every stage option is a
job-spec field whose value reaches the stage."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing

import polars as pl
import pytest
import yaml

from ccs_dist.jobs import pipeline
from ccs_dist.jobs.spec import JobSpec, load_spec
from ccs_dist.stages import chain
from ccs_dist.attribution.run import AttributionConfig
from ccs_dist.card.config import CardConfig
from ccs_dist.stages.config import StageConfig, field_types, spec_fields
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.stages.evaluate import EvaluateConfig
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.spans.table import SpanConfig
from tests.support.paths import REPO

SECTIONS = {"probe": DecomposeConfig, "spans": SpanConfig, "llm": ScoreConfig, "evaluation": EvaluateConfig,
            "attribution": AttributionConfig, "card": CardConfig}


def test_spec_sections_are_the_stage_configs():
    for section, config in SECTIONS.items():
        assert JobSpec.model_fields[section].annotation is config, section


def test_downstream_follows_the_inputs():
    assert chain.STAGES == ("spans", "score", "evaluate", "direct", "attribution", "card")
    assert chain.downstream("spans") == chain.STAGES
    assert chain.downstream("score") == ("score", "evaluate", "direct", "attribution", "card")
    assert chain.downstream("direct") == ("direct",)
    assert chain.downstream("evaluate") == ("evaluate",) and chain.downstream("attribution") == ("attribution",)


def _string_constants(source: str) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_executors_name_no_stage_themselves():
    """Local mode and the Ray driver and actors get every stage from the chain: none names a stage."""
    sources = [inspect.getsource(pipeline.run_local), inspect.getsource(pipeline.plan_models)]
    sources += [(REPO / "ccs_dist" / "distributed" / f).read_text() for f in ("executor.py", "actors.py")]
    for source in sources:
        assert not _string_constants(source) & set(chain.STAGES)


def _spec(tmp_path, **sections) -> JobSpec:
    data = {"run": "t", "out": str(tmp_path / "o"), "cache_dir": str(tmp_path / "c"),
            "models": [{"arch": "ccs-tiny", "pretrained": "none"}], **sections}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


@pytest.fixture
def fake_chain(monkeypatch):
    """CHAIN with each stage's work replaced by a recorder (same order, inputs and enabling); the calls."""
    calls = []

    def fake_run(stage):
        def run(ctx, inputs):
            calls.append((ctx.config.key, stage.name, sorted(f"{r.stage}.{r.table}" for r in inputs)))
            names = {"spans": ("spans",), "score": ("ccs", "judgments")}.get(stage.name, (stage.name,))
            return chain.StageOutput({name: pl.DataFrame({"stage": [stage.name], "model": [ctx.config.key]})
                                      for name in names}, {})
        return run

    stages = tuple(dataclasses.replace(s, run=fake_run(s), key_parts=lambda c, n=s.name: {"n": n, "m": c.key})
                   for s in chain.CHAIN)
    monkeypatch.setattr(chain, "CHAIN", stages)
    monkeypatch.setattr(chain, "BY_NAME", {s.name: s for s in stages})

    class FakeRunner:  # no model is loaded
        def __init__(self, config, threads=None, progress=True):
            self.context = chain.StageContext(config, None, progress)

        def run(self, name, inputs):
            return chain.run_stage(name, self.context, inputs)

        def run_shard(self, name, index, inputs):
            return chain.BY_NAME[name].run_shard(self.context, index, inputs)

    monkeypatch.setattr(chain, "ModelRunner", FakeRunner)
    monkeypatch.setattr(pipeline, "ModelRunner", FakeRunner)
    return calls


CHAIN_CALLS = [("spans", []), ("score", ["spans.spans"]), ("evaluate", ["score.ccs"]), ("attribution", ["score.ccs"]),
               ("card", ["score.ccs", "score.judgments", "spans.spans"])]
CARD = {"enabled": True, "reference": {"arch": "ccs-toy", "pretrained": "planted_v2"}}


def test_local_mode_runs_the_chain_object_in_order_and_resumes_it(tmp_path, fake_chain):
    spec = _spec(tmp_path, attribution={"enabled": True, "task": "toy-colour@x"}, card=CARD, resources={"device": "cpu"})
    state = pipeline.JobState(spec)
    plans = pipeline.plan_models(state)
    pipeline.run_local(state, plans, show_progress=False)
    assert [c[1:] for c in fake_chain] == CHAIN_CALLS
    replanned = pipeline.plan_models(pipeline.JobState(spec))
    enabled = set(chain.STAGES) - {"direct"}  # the benchmark's stage needs a toy:N probe set and toy tasks
    assert set(replanned[0].done) == enabled and replanned[0].next_stage() is None
    forced = pipeline.plan_models(pipeline.JobState(spec, force=("evaluate",)))
    assert set(forced[0].done) == {"spans", "score", "attribution", "card"}
    off = pipeline.plan_models(pipeline.JobState(_spec(tmp_path)))
    assert off[0].stages == ("spans", "score", "evaluate")


def _fake_ray(monkeypatch):
    """In-process stand-ins for ray and the actors in the Ray driver; -> (model actors alive, [most alive])."""
    from ccs_dist.distributed import actors, executor

    alive, most = set(), [0]

    class Ref:
        def __init__(self, value):
            self.value = value

    class Method:
        def __init__(self, fn):
            self.remote = lambda *a: Ref(fn(*a))

    class Actor:
        def __init__(self, impl, model: bool):
            self.impl, self.model = impl, model
            self.run = Method(lambda config, stage, inputs: impl.run(config, stage, inputs))
            self.snapshot = Method(lambda: {})
            if model:
                self.ready = Method(lambda: "node-1")
                self.run_shard = Method(lambda config, stage, index, inputs: (impl.runner.run_shard(stage, index, inputs), 0.0, "node-1"))
                alive.add(self)
                most[0] = max(most[0], len(alive))

    def actor_class(impl_cls, model=False):
        cls = type("C", (), {"options": lambda self, **kw: self,
                             "remote": lambda self, *a: Actor(impl_cls(*a), model)})
        return cls()

    class Board:
        pass

    fake_ray = type("FakeRay", (), {
        "wait": staticmethod(lambda refs, num_returns, timeout: (refs[:1], refs[1:])),
        "get": staticmethod(lambda ref, timeout=None: ref.value),
        "kill": staticmethod(lambda actor, no_restart=True: alive.discard(actor)),
        "get_actor": staticmethod(lambda name: None),
        "exceptions": type("E", (), {"RayTaskError": RuntimeError}),
    })
    from ccs_dist.distributed import shards

    monkeypatch.setattr(executor, "ray", fake_ray)
    monkeypatch.setattr(shards, "ray", fake_ray)
    monkeypatch.setattr(executor, "_connect", lambda address: None)
    monkeypatch.setattr(executor, "pinned_to_this_node", lambda: None)  # no real Ray: the node is the stand-in's
    monkeypatch.setattr(executor, "StageBoard", actor_class(Board))
    monkeypatch.setattr(executor, "LLMWorker", actor_class(actors.LLMWorker.__ray_actor_class__))
    monkeypatch.setattr(executor, "ModelWorker", actor_class(actors.ModelWorker.__ray_actor_class__, model=True))
    monkeypatch.setattr(actors, "_announce", lambda *a: None)
    monkeypatch.setattr(actors, "_quiet_setup", lambda progress: None)
    return alive, most


MODELS = [{"arch": "ccs-tiny", "pretrained": "none"}, {"arch": "ccs-toy", "pretrained": "none"},
          {"arch": "ccs-toy", "pretrained": "planted_v2"}]


def test_ray_mode_runs_the_same_chain_and_caps_model_actors(tmp_path, fake_chain, monkeypatch):
    """The Ray driver with in-process stand-ins for ray and the actors: the same calls as local mode, and
    never more model actors alive than resources.model_workers."""
    from ccs_dist.distributed import executor

    alive, most = _fake_ray(monkeypatch)
    for cap, expected_most in ((None, 3), (1, 1), (2, 2)):
        fake_chain.clear()
        spec = _spec(tmp_path / str(cap), models=MODELS, attribution={"enabled": True, "task": "toy-colour@x"}, card=CARD,
                     resources={"device": "cpu", "model_workers": cap})
        state = pipeline.JobState(spec)
        plans = pipeline.plan_models(state)
        executor.run_ray(state, plans, show_progress=False)
        for plan in plans:
            assert [c[1:] for c in fake_chain if c[0] == plan.key] == CHAIN_CALLS
            assert set(plan.done) == set(chain.STAGES) - {"direct"}  # not enabled: no toy probe set
        assert most[0] == expected_most and not alive, cap
        most[0] = 0


def test_shard_helpers_count_against_the_model_actor_cap(tmp_path, fake_chain, monkeypatch):
    """Sharded spans (4 shards, 3 workers each): helpers take model actor slots, so a cap of 2 keeps at most 2
    model actors alive, and every shard is still done once before its stage."""
    from ccs_dist.distributed import executor

    done_shards = []
    stages = tuple(dataclasses.replace(s, run_shard=lambda ctx, index, inputs, n=s.name: done_shards.append((ctx.config.key, n, index)) or {})
                   for s in chain.CHAIN)
    monkeypatch.setattr(chain, "CHAIN", stages)
    monkeypatch.setattr(chain, "BY_NAME", {s.name: s for s in stages})
    alive, most = _fake_ray(monkeypatch)
    for cap, expected_most in ((None, 9), (2, 2), (4, 4)):  # no cap: 3 models x 3 workers at once
        fake_chain.clear()
        done_shards.clear()
        spec = _spec(tmp_path / str(cap), models=MODELS, probe={"shards": 4},
                     resources={"device": "cpu", "model_workers": cap, "shard_workers": 3})
        state = pipeline.JobState(spec)
        plans = pipeline.plan_models(state)
        executor.run_ray(state, plans, show_progress=False)
        assert sorted(done_shards) == sorted((p.key, "spans", i) for p in plans for i in range(4))
        assert all(set(plan.done) == {"spans", "score", "evaluate"} for plan in plans)
        assert most[0] == expected_most and not alive, cap
        most[0] = 0


# -- every stage option settable from a spec -------------------------------------------------------------

SPECIAL = {  # fields whose other value must be of a particular form
    ("card", "heldout_share"): 0.3,
    ("card", "prompt"): "an image of {label}",
    ("llm", "offline_judges"): ("minilm", "clip:ccs-tiny"),
    ("llm", "cache"): "refresh",
    ("evaluation", "heads"): {"mine": "L0.H1"},
    ("evaluation", "data_root"): "/data/root",
    ("evaluation", "occupations"): "/data/occupations.txt",
    ("evaluation", "concept_map"): "/data/concepts.json",
    ("evaluation", "tasks"): ("toy-shape@/data/x",),
    ("evaluation", "min_stability"): 0.5,
    ("attribution", "task"): "toy-shape@/data/x",
    ("probe", "images"): "synthetic:7",
    ("llm", "min_scored_share"): 0.8,
}


def _other_value(section: str, name: str, annotation, default):
    if (section, name) in SPECIAL:
        return SPECIAL[(section, name)]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return next(v for v in typing.get_args(annotation) if v != default)
    if annotation is bool:
        return not default
    if typing.get_origin(annotation) is tuple or any(typing.get_origin(a) is tuple for a in args):
        item = typing.get_args(annotation if typing.get_origin(annotation) is tuple else args[0])[0]
        return (7, 9) if item is int else ("colour-x", "shape-y")
    if annotation is int or int in args:
        return (default or 1) + 2
    if annotation is float or float in args:
        return (default or 0.25) + 1.5
    if annotation is str or str in args:
        return f"{default or 'x'}_other"
    raise AssertionError(f"{section}.{name}: no other value known for {annotation}")


def _field_infos(config) -> list[tuple[str, object, object]]:
    """(name, annotation, default) of a stage config's settable fields: a dataclass or a pydantic model."""
    if dataclasses.is_dataclass(config):
        return [(f.name, field_types(config)[f.name], f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in spec_fields(config)]
    return [(name, info.annotation, info.get_default(call_default_factory=True)) for name, info in config.model_fields.items()]


def _fields(section: str, config: type[StageConfig], prefix=()):
    """(path, value) for every leaf field of a stage config, nested configs (and lists of them) included."""
    for name, annotation, default in _field_infos(config):
        inner = typing.get_args(annotation)
        if isinstance(default, StageConfig) or dataclasses.is_dataclass(default):
            yield from _fields(section, type(default), (*prefix, name))
        elif inner and isinstance(inner[0], type) and (issubclass(inner[0], StageConfig) or dataclasses.is_dataclass(inner[0])):  # judges: a tuple of endpoints
            for path, value in _fields(section, inner[0], ()):
                yield (*prefix, name, 0, *path), value
        else:
            yield (*prefix, name), _other_value(section, name, annotation, default)


def _set(data: dict, path: tuple, value):
    for key in path[:-1]:
        if isinstance(key, int):
            data = data[key]
        else:
            data = data.setdefault(key, [{}] if key == "judges" else {})
    data[path[-1]] = value


def _get(obj, path: tuple):
    for key in path:
        obj = obj[key] if isinstance(key, int) or isinstance(obj, dict) else getattr(obj, key)
    return obj


@pytest.mark.parametrize("section", SECTIONS)
def test_every_stage_option_is_settable_from_a_spec_and_reaches_the_stage(tmp_path, section):
    fields = list(_fields(section, SECTIONS[section]))
    assert len(fields) >= len(_field_infos(SECTIONS[section]))
    data: dict = {}
    for path, value in fields:
        _set(data, path, value)
    spec = _spec(tmp_path, **{section: data, "evaluation": {**(data if section == "evaluation" else {}), "synthetic": True}})
    config = getattr(spec.chain_config(spec.models[0]), section)
    for path, value in fields:
        got = _get(config, path)
        want = tuple(value) if isinstance(value, list) else value
        if isinstance(want, str) and "/data/" in want:  # input paths are made absolute
            assert str(got).endswith(want.rpartition("/data/")[2]), (path, got)
        else:
            assert got == want and got != _get(SECTIONS[section](), path), path


def test_new_options_reach_the_library_configs(tmp_path):
    """The options specs could not set before: caption_mode, workers, concept_map, offline_judges."""
    concepts = tmp_path / "concepts.json"
    concepts.write_text('{"colour": ["red", "blue"]}')
    spec = _spec(tmp_path, evaluation={"caption_mode": "all", "workers": 2, "concept_map": str(concepts), "synthetic": True},
                 llm={"offline_judges": ["minilm", "clip:ccs-tiny"]})
    c = spec.chain_config(spec.models[0])
    ev = c.evaluation.eval_config(data_root=c.data_root, progress=False)
    assert (ev.caption_mode, ev.num_workers) == ("all", 2)
    assert dict(c.evaluation.head_set_config().concept_map) == {"colour": ("red", "blue")}
    assert c.llm.offline_judges == ("minilm", "clip:ccs-tiny")


def test_bad_stage_options_are_one_line_spec_errors(tmp_path):
    from ccs_dist.core.errors import UserError

    with pytest.raises(UserError, match="offline judges .*gpt-4o.*: use minilm"):
        _spec(tmp_path, llm={"offline_judges": ["gpt-4o"]})
    with pytest.raises(UserError, match="attribution.task: a real dataset needs evaluation.data_root"):
        _spec(tmp_path, attribution={"enabled": True, "task": "cifar10"})
    with pytest.raises(UserError, match="resources.model_workers"):
        _spec(tmp_path, resources={"model_workers": 0})


def test_probe_shards_reach_the_decomposition_and_key_the_spans_stage_only_when_set(tmp_path):
    """``probe.shards`` > 1 is a different decomposition (another merge order), so another spans key; the
    default leaves the keys of runs made before the option existed as they were."""
    one = _spec(tmp_path / "a")
    sharded = _spec(tmp_path / "b", probe={"shards": 4}, resources={"shard_workers": 2})
    c1, c4 = one.chain_config(one.models[0]), sharded.chain_config(sharded.models[0])
    spans = chain.BY_NAME["spans"]
    assert (spans.shards(c1), spans.shards(c4)) == (1, 4) and sharded.resources.shard_workers == 2
    assert "shards" not in chain._spans_key(c1)["probe"] and chain._spans_key(c4)["probe"]["shards"] == 4
    assert c4.probe.shards == 4


def test_evaluation_shards_leave_the_key_and_give_the_unsharded_table(tmp_path, tiny, monkeypatch):
    """``evaluation.shards`` splits the tasks into groups any worker may evaluate ahead of the stage; the stage
    key and the merged table are the unsharded ones (a shard done ahead is read, not evaluated again)."""
    from ccs_dist.stages import evaluate as evaluate_module
    from ccs_dist.stages.evaluate import ShardFolder, evaluate_shard, evaluate_stage, prepare_synthetic_data, shard_tasks
    from ccs_dist.artifacts.store import ArtifactStore

    tasks = ["toy-colour", "toy-shape", "toy-size"]
    one = _spec(tmp_path / "a", evaluation={"synthetic": True, "tasks": tasks})
    three = _spec(tmp_path / "b", evaluation={"synthetic": True, "tasks": tasks, "shards": 3})
    c1, c3 = one.chain_config(one.models[0]), three.chain_config(three.models[0])
    evaluate = chain.BY_NAME["evaluate"]
    assert (evaluate.shards(c1), evaluate.shards(c3)) == (1, 3) and chain._evaluate_key(c1) == chain._evaluate_key(c3)
    config = c3.evaluation.model_copy(update={"heads": {"a": "L1.H0,L2.H3"}, "conditions": ("original",),
                                              "limit": 24, "templates_per_class": 1, "batch_size": 8})
    assert [shard_tasks(config, i) for i in range(3)] == [("toy-colour",), ("toy-shape",), ("toy-size",)]
    data = tmp_path / "data"
    prepare_synthetic_data(tasks, data)
    whole = evaluate_stage(tiny, None, config.model_copy(update={"shards": 1}), data_root=data, progress=False).table
    shard_dir = ShardFolder(ArtifactStore(tmp_path / "cache"), "k")
    assert evaluate_shard(tiny, None, config, 1, data_root=data, shard_dir=shard_dir)["tasks"] == ["toy-shape"]
    evaluated, rows_of = [], evaluate_module.evaluate_rows
    monkeypatch.setattr(evaluate_module, "evaluate_rows", lambda loaded, t, *a: evaluated.extend(t) or rows_of(loaded, t, *a))
    merged = evaluate_stage(tiny, None, config, data_root=data, progress=False, shard_dir=shard_dir).table
    assert merged.equals(whole) and set(merged["task"]) == set(tasks)
    assert evaluated == ["toy-colour", "toy-size"]  # shard 1, done ahead, was read
    assert not (tmp_path / "cache" / "evaluate-shards" / "k.partial").exists()  # merged, then removed


def test_the_offline_vocabulary_and_scoring_key_the_score_stage(tmp_path, monkeypatch):
    """A new vocabulary file or another scoring is another score stage; the openai backend's key ignores the file."""
    from ccs_dist.llm import offline

    offline_spec, openai_spec = _spec(tmp_path / "a", llm={"backend": "offline"}), _spec(tmp_path / "b", llm={"backend": "openai"})
    c_off, c_api = offline_spec.chain_config(offline_spec.models[0]), openai_spec.chain_config(openai_spec.models[0])
    cosine = _spec(tmp_path / "c", llm={"backend": "offline", "offline_scoring": "cosine"})
    c_cos = cosine.chain_config(cosine.models[0])
    before = chain._score_key(c_off), chain._score_key(c_api)
    assert before[0]["offline_vocabulary"] == offline.vocabulary_fingerprint() and "offline_vocabulary" not in before[1]
    assert chain._score_key(c_cos) != before[0]
    other = tmp_path / "concepts.txt"
    other.write_text(offline.VOCAB_PATH.read_text(encoding="utf-8") + "extra concept\n", encoding="utf-8")
    monkeypatch.setattr(offline, "VOCAB_PATH", other)
    assert chain._score_key(c_off) != before[0] and chain._score_key(c_api) == before[1]
