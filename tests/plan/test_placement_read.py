"""read_placement: a placement file (YAML or JSON) into the cluster twin's input, mistakes named."""

from __future__ import annotations

import json

import pytest
import yaml

from loratwin.errors import InputError
from loratwin.plan.placement.read import placement_cluster, read_placement
from loratwin.workload import AdapterSpec, WorkloadSpec

WORKLOAD = WorkloadSpec(adapters=(AdapterSpec(id="a", rank=8, rate_req_s=1.0), AdapterSpec(id="b", rank=16, rate_req_s=0.5),
                                  AdapterSpec(id="c", rank=8, rate_req_s=0.2)))
DOC = {
    "profile": "llama-3.1-8b-instruct",
    "gpus": [{"gpu": 0, "adapters": ["a", "b"], "max_loras": 2, "max_cpu_loras": 2, "max_lora_rank": 16},
             {"gpu": 1, "adapters": ["a", "c"], "max_loras": 1, "max_lora_rank": 8}],
    "routing": {"a": {0: 0.25, 1: 0.75}, "b": {0: 1.0}, "c": {1: 1.0}},
}


def test_yaml_and_json_read_the_same(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(DOC))
    (tmp_path / "p.json").write_text(json.dumps(DOC))  # JSON keys are strings: "0", "1"
    from_yaml = read_placement(tmp_path / "p.yaml", WORKLOAD)
    from_json = read_placement(tmp_path / "p.json", WORKLOAD)
    assert from_yaml.routing == from_json.routing == {"a": {0: 0.25, 1: 0.75}, "b": {0: 1.0}, "c": {1: 1.0}}
    assert [r.adapters for r in from_yaml.replicas] == [("a", "b"), ("a", "c")]
    assert from_yaml.replicas[1].server.max_loras == 1
    assert from_yaml.replicas[1].server.max_cpu_loras == 2  # absent: the GPU's adapters
    assert from_yaml.home("a") == 1


def test_without_routing_an_adapter_is_split_evenly():
    doc = {k: v for k, v in DOC.items() if k != "routing"}
    spec = placement_cluster(doc, WORKLOAD, "p.yaml")
    assert spec.routing == {"a": {0: 0.5, 1: 0.5}, "b": {0: 1.0}, "c": {1: 1.0}}


def test_gpu_indices_map_to_positions():
    doc = {"gpus": [{**DOC["gpus"][0], "gpu": 7}, {**DOC["gpus"][1], "gpu": 3}],
           "routing": {"a": {7: 0.5, 3: 0.5}, "b": {7: 1.0}, "c": {3: 1.0}}}
    spec = placement_cluster(doc, WORKLOAD, "p.yaml")
    assert [r.name for r in spec.replicas] == ["GPU 7", "GPU 3"]
    assert spec.routing["c"] == {1: 1.0}


def _with(**changes):
    doc = json.loads(json.dumps(DOC))  # string keys, as JSON has them
    for key, value in changes.items():
        doc[key] = value
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    ([], "p.json: expected a placement"),
    (_with(gpus=[]), "p.json: gpus: expected a non-empty list"),
    (_with(gpus=[{"gpu": 0, "adapters": ["a", "b", "c"], "max_loras": 0, "max_lora_rank": 16}]),
     r"p.json: gpus\[0\].max_loras: expected an integer >= 1, got 0"),
    (_with(gpus=[{"gpu": 0, "adapters": ["a", "b", "z"], "max_loras": 1, "max_lora_rank": 16}]),
     r"gpus\[0\].adapters: not in the workload: z"),
    (_with(gpus=[{"gpu": 0, "adapters": ["a", "b"], "max_loras": 1, "max_lora_rank": 16}], routing=None),
     "gpus: adapters of the workload on no GPU: c"),
    (_with(routing={"a": {"0": 0.5, "1": 0.6}, "b": {"0": 1}, "c": {"1": 1}}), "routing.a: the weights must sum to 1"),
    (_with(routing={"a": {"0": 1.0, "1": 0}, "b": {"0": 1}, "c": {"1": 1}}), r"routing.a.1: expected a weight > 0"),
    (_with(routing={"a": {"0": 1.0}, "b": {"0": 1}, "c": {"1": 1}}), "routing.a: GPU 1 holds it but gets no weight"),
    (_with(routing={"a": {"0": 0.5, "1": 0.5}, "b": {"1": 1}, "c": {"1": 1}}), "routing.b.1: GPU 1 does not hold b"),
    (_with(routing={"a": {"0": 0.5, "x": 0.5}, "b": {"0": 1}, "c": {"1": 1}}), "routing.a: 'x' is not a GPU"),
    (_with(routing={"a": {"0": 0.5, "1": 0.5}, "b": {"0": 1}}), "routing: no weights for c"),
])
def test_mistakes_name_the_file_and_field(doc, message):
    with pytest.raises(InputError, match=message):
        placement_cluster(doc, WORKLOAD, "p.json")


def test_a_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(InputError, match=r"p.txt: expected a placement file \(.yaml or .json"):
        read_placement(tmp_path / "p.txt", WORKLOAD)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json: line 1, column 2: invalid JSON"):
        read_placement(tmp_path / "bad.json", WORKLOAD)
