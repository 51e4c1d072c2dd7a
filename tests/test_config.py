"""Config: defaults, YAML + --set overrides, validation messages naming field and value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from izray.config import RunConfig, config_from_dict, config_to_dict, load_config
from izray.errors import ConfigError


def test_defaults_are_the_papers_setting():
    cfg = RunConfig()
    assert (cfg.bo.budget, cfg.bo.n_init) == (150, 25)
    assert (cfg.softprompt.dim, cfg.softprompt.n_tokens) == (10, 5)
    assert (cfg.tasks.n_exemplars, cfg.tasks.n_dev) == (5, 20)
    assert cfg.evaluator.embedded and cfg.evaluator.temperature == 0.0


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\nbo:\n  budget: 40\n  n_init: 10\ntasks:\n  names: [a, b]\n")
    cfg = load_config(path, ["bo.budget=60", "evaluator.rpm=500", "tasks.names=[x]",
                             'evaluator.stop=["\\n", "END"]'])
    assert cfg.seed == 3 and cfg.bo.budget == 60 and cfg.bo.n_init == 10
    assert cfg.evaluator.rpm == 500.0 and isinstance(cfg.evaluator.rpm, float)
    assert cfg.tasks.names == ("x",)
    assert cfg.evaluator.stop == ("\n", "END")


def test_strategy_candidate_cap_and_reference_instructions():
    cfg = config_from_dict({}, ["strategy=ape", "bo.budget=30",
                                ("tasks.reference_instructions={antonyms: 'Write the opposite, "
                                "please.'}")])
    assert cfg.strategy == "ape" and cfg.bo.candidate_cap == 150  # 5 x budget by default
    # free text is never split at commas: one string is one instruction
    assert cfg.tasks.reference_instructions == {"antonyms": ["Write the opposite, please."]}
    assert config_from_dict({}, ["bo.budget=30", "bo.max_candidates=40"]).bo.candidate_cap == 40
    assert config_from_dict({}, []).strategy == "instructzero"


def test_surrogate_settings_default_to_the_calibrated_model():
    bo = RunConfig().bo
    assert (bo.surrogate, bo.residual, bo.incumbent_samples) == ("ic_residual", 3.0, 128)
    assert (bo.racing, bo.racing_delta) == (0.25, 0.1)  # quality v6: same test, fewer calls
    paper = config_from_dict({}, ["bo.surrogate=ic", "bo.incumbent_samples=0"]).bo
    assert (paper.surrogate, paper.incumbent_samples) == ("ic", 0)


def test_comma_separated_names_and_null():
    cfg = config_from_dict({}, ["tasks.names=a,b", "tasks.n_test=null"])
    assert cfg.tasks.names == ("a", "b") and cfg.tasks.n_test is None


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["bo.budjet=3"], "unknown config key 'bo.budjet' (did you mean 'bo.budget'?)"),
        (["nope=1"], "unknown config key 'nope'"),
        (["bo.budget=abc"], "bo.budget: expected an integer (got 'abc')"),
        (["bo.budget=0"], "bo.budget: must be >= 1 (got 0)"),
        (["bo.n_init=30", "bo.budget=20"], "bo.n_init: must be <= bo.budget (20) (got 30)"),
        (["generator.backend=tpu"], "generator.backend: must be one of vllm, served, hf, sim (got 'tpu')"),
        (["evaluator.base_url=ftp://x"], "evaluator.base_url: must be an http(s) URL"),
        (["evaluator.base_url=http://h/v1"], "evaluator.model: name the model served"),
        (["evaluator.template=no fields"], "evaluator.template: must contain {instruction}"),
        (["evaluator.rpm=-1"], "evaluator.rpm: must be > 0 or null (got -1.0)"),
        (["softprompt.scale=0"], "softprompt.scale: must be in (0, 100] (got 0.0)"),
        (["tasks.names=[]"], "tasks.names: name at least one task"),
        (["bo=3"], "bo: expected a mapping of keys (got 3)"),
        (["seed=true"], "seed: expected an integer (got True)"),
        (["justakey"], "expected key=value with a dotted key"),
        (["strategy=random"], "strategy: must be one of instructzero, uniform, ape (got 'random')"),
        (["bo.surrogate=rbf"], "bo.surrogate: must be one of ic_residual, ic, matern (got 'rbf')"),
        (["bo.residual=-1"], "bo.residual: must be >= 0 (got -1.0)"),
        (["bo.incumbent_samples=-3"], "bo.incumbent_samples: must be >= 0 (got -3)"),
        (["bo.budget=20", "bo.max_candidates=10"],
         "bo.max_candidates: must be >= bo.budget (20) or null (got 10)"),
        (["tasks.reference_instructions={a: ['  ']}"],
         "tasks.reference_instructions.a: instructions must not be empty"),
        (["tasks.reference_instructions={a: [x, x]}"], "tasks.reference_instructions.a: instructions repeat"),
        (["tasks.reference_instructions=[x]"], "tasks.reference_instructions: expected a mapping"),
    ],
)
def test_bad_values_name_field_and_value(overrides, needle):
    with pytest.raises(ConfigError) as err:
        config_from_dict({}, overrides)
    msg = str(err.value)
    assert needle in msg
    assert "\n" not in msg


def test_malformed_yaml_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bo:\n  budget: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_saved_config_has_no_credentials():
    cfg = config_from_dict({}, ["evaluator.base_url=https://user:s3cret@api.example.com/v1",
                                "evaluator.model=m"])
    text = json.dumps(config_to_dict(cfg))
    assert "s3cret" not in text and "***@api.example.com" in text
    assert config_to_dict(cfg)["tasks"]["names"] == list(cfg.tasks.names)


# ------------------------------------------------------------------ shipped configs


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["examples/quickstart.yaml", "cluster/example-run.yaml"])
def test_shipped_run_configs_are_valid(name):
    cfg = load_config(REPO / name)
    assert cfg.tasks.names, name


def test_cluster_launcher_config_passes_rays_schema():
    import jsonschema
    import ray.autoscaler
    import yaml

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    config = yaml.safe_load((REPO / "cluster/ray-cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))


def test_kuberay_and_runtime_env_yaml_parse():
    import yaml

    docs = list(yaml.safe_load_all((REPO / "cluster/kuberay-rayjob.yaml").read_text()))
    job = next(d for d in docs if d and d.get("kind") == "RayJob")
    assert "izray run" in job["spec"]["entrypoint"]
    env = yaml.safe_load((REPO / "cluster/runtime_env.yaml").read_text())
    assert isinstance(env, dict) and env
