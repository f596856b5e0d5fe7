"""The max_lora_rank values vLLM accepts, the server rank adapters need, and adapter loads at any rank."""

from __future__ import annotations

import pytest

from loratwin.errors import InputError
from loratwin.profiles import load_profile
from loratwin.profiles.lora_rank import check_max_lora_rank, server_max_lora_rank


@pytest.mark.parametrize(("largest", "server"), [(1, 8), (4, 8), (8, 8), (12, 16), (16, 16), (33, 64), (64, 64),
                                                 (100, 128), (300, 320), (321, 512), (512, 512)])
def test_the_least_accepted_rank_that_serves_the_largest_adapter(largest, server):
    assert server_max_lora_rank(largest) == server


def test_ranks_vllm_refuses():
    with pytest.raises(InputError, match="adapter rank 513 is above 512, the largest --max-lora-rank vLLM accepts"):
        server_max_lora_rank(513)
    assert check_max_lora_rank(320) == 320
    with pytest.raises(InputError, match=r"^--max-lora-rank 12: vLLM accepts only 8, 16, 32, 64, 128, 256, 320, 512$"):
        check_max_lora_rank(12)


def test_adapter_loads_at_unmeasured_ranks():
    loads = load_profile("llama-3.1-8b-instruct-reference").adapter_load
    # measured
    assert loads.cpu_to_gpu(16, 8) == 7.772142 and loads.disk_to_cpu(32, 32) == 141.442475
    # an unmeasured rank below a measured one costs like the next measured rank above it
    assert loads.cpu_to_gpu(8, 4) == loads.cpu_to_gpu(8, 8) and loads.cpu_to_gpu(16, 12) == loads.cpu_to_gpu(16, 16)
    # an unmeasured max_lora_rank takes the largest measured one below it (32); ranks beyond the
    # measured ones cost in proportion to their bytes (rank)
    assert loads.cpu_to_gpu(64, 8) == loads.cpu_to_gpu(32, 8)
    assert loads.cpu_to_gpu(64, 64) == pytest.approx(2 * 6.367267)
    assert loads.disk_to_cpu(512, 320) == pytest.approx(10 * 141.442475)
