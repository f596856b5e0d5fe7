"""Reading model architectures and GPUs: the built-in ones, and a user's files with every mistake named."""

import pytest

from loratwin.errors import InputError
from loratwin.profiles.derive.catalog import (
    architecture_from_config,
    builtin_gpus,
    builtin_models,
    resolve_gpu,
    resolve_model,
)

LLAMA = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
         "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}


def test_builtin_models_and_gpus_load():
    assert len(builtin_models()) >= 6 and len(builtin_gpus()) >= 8
    for name in builtin_models():
        assert resolve_model(name).parameters > 1e9
    for name in builtin_gpus():
        assert resolve_gpu(name).total_bytes > 20 * 2**30


def test_llama_8b_has_its_known_size():
    arch = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    assert arch.parameters == 8_030_261_248
    assert arch.kv_bytes_per_token == 128 * 1024  # 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes


def test_head_dim_defaults_to_hidden_over_heads():
    assert architecture_from_config(LLAMA, "m", "c.json").head_dim == 128


def test_every_mistake_is_named_on_one_line():
    config = LLAMA | {"torch_dtype": "int3", "num_attention_heads": 0, "intermediate_size": -5}
    with pytest.raises(InputError) as err:
        architecture_from_config(config, "m", "c.json")
    message = str(err.value)
    assert "\n" not in message
    for part in ("torch_dtype", "num_attention_heads", "intermediate_size", "head_dim (not in the file"):
        assert part in message


def test_unsupported_architecture_and_missing_fields_together():
    config = {k: v for k, v in LLAMA.items() if k != "vocab_size"} | {"architectures": ["GPT2LMHeadModel"]}
    with pytest.raises(InputError, match=r"architectures: .*not supported.*; missing fields vocab_size"):
        architecture_from_config(config, "m", "c.json")
