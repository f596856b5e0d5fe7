"""The GPU tensors vLLM 0.8.5 (V1 engine, one GPU) creates before it sizes the KV cache, in the
order it creates them, with their bytes from the model's shapes.

- Runner buffers (`GPUModelRunner.__init__`, before the model): token ids, positions, slot mapping,
  the input-embedding buffer (max_num_batched_tokens rows) and the block table (max_num_seqs rows of
  ceil(max_model_len / block_size) int32 block ids).
- Weights (`get_model`): embeddings, per layer the fused q/k/v projection (with bias for Qwen2), the
  output projection, the rotary cos/sin cache (once, shared), the fused gate/up and the down
  projection, two RMSNorms; the final norm and the LM head unless tied. With LoRA, Llama-type
  models add `lora_extra_vocab_size` (256) embedding rows per GPU slot, and their LM head gets
  256 extra rows, padded to a multiple of 256 (`lora_vocab_padding_size`).
- LoRA buffers (`LoRAModelManager`, stacked per slot, the server's max_lora_rank wide): the punica
  index buffers, then for every layer the A and B stacks of q/k/v (three slices), o, gate/up (two
  slices) and down: A is (max_loras, 1, rank, in), B is (max_loras, 1, out, rank). Llama-type
  models also put LoRA on the embeddings (extra-vocab rows, A over vocab + 256, B) and on the LM
  head (`LogitsProcessorWithLoRA`: A, B over the padded vocab, the extra-vocab rows); Qwen2 does not.
"""

from __future__ import annotations

from loratwin.profiles.derive.catalog import ModelArchitecture

LORA_EXTRA_VOCAB = 256  # LoRAConfig.lora_extra_vocab_size default
LORA_VOCAB_PADDING = 256  # LoRAConfig.lora_vocab_padding_size
VOCAB_PADDING = 64  # DEFAULT_VOCAB_PADDING_SIZE of vocab-parallel embeddings
# vLLM 0.8.5 gives these architectures LoRA on the embeddings and the LM head (llama.py lists
# embed_tokens and lm_head among its LoRA modules; qwen2.py does not).
EXTRA_VOCAB_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
# LogitsProcessorWithLoRA refuses larger vocabularies.
MAX_LORA_VOCAB = 257_024


def _pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def has_lora_vocab(arch: ModelArchitecture) -> bool:
    return arch.architecture in EXTRA_VOCAB_ARCHITECTURES


def logits_vocab(arch: ModelArchitecture) -> int:
    """Columns of the logits the sampler sees (the LoRA logits processor keeps the extra vocabulary)."""
    return arch.vocab_size + LORA_EXTRA_VOCAB if has_lora_vocab(arch) else arch.vocab_size


def lm_head_rows(arch: ModelArchitecture) -> int:
    if has_lora_vocab(arch):
        return _pad(arch.vocab_size + LORA_EXTRA_VOCAB, LORA_VOCAB_PADDING)
    return _pad(arch.vocab_size, VOCAB_PADDING)


def runner_buffers(arch: ModelArchitecture, max_num_seqs: int, max_num_batched_tokens: int,
                   max_model_len: int, block_size: int) -> list[int]:
    tokens, d = max_num_batched_tokens, arch.dtype_bytes
    blocks_per_request = -(-max_model_len // block_size)
    return [
        4 * tokens, 8 * tokens,  # input ids (int32), positions (int64)
        4 * (max_num_seqs + 1), 4 * max_num_seqs,  # query start locations, sequence lengths
        8 * tokens,  # slot mapping (int64)
        tokens * arch.hidden_size * d,  # input-embedding buffer
        4 * max_num_seqs * blocks_per_request,  # block table (int32)
        *[4 * max_num_seqs] * 6,  # per-request sampling parameters
    ]


def weight_tensors(arch: ModelArchitecture, max_loras: int) -> list[int]:
    h, d = arch.hidden_size, arch.dtype_bytes
    qkv = arch.q_size + 2 * arch.kv_size
    extra_rows = max_loras * LORA_EXTRA_VOCAB if has_lora_vocab(arch) else 0
    sizes = [(_pad(arch.vocab_size, VOCAB_PADDING) + _pad(extra_rows, VOCAB_PADDING)) * h * d]
    for layer in range(arch.num_hidden_layers):
        sizes.append(qkv * h * d)
        if arch.qkv_bias:
            sizes.append(qkv * d)
        sizes.append(h * arch.q_size * d)
        if layer == 0:  # rotary cos/sin cache, one for the whole model
            sizes.append(arch.max_position_embeddings * arch.head_dim * d)
        sizes += [2 * arch.intermediate_size * h * d, h * arch.intermediate_size * d, h * d, h * d]
    sizes.append(h * d)  # final norm
    if not arch.tie_word_embeddings:
        sizes.append(lm_head_rows(arch) * h * d)
    return sizes


def lora_tensors(arch: ModelArchitecture, max_loras: int, max_lora_rank: int, max_num_batched_tokens: int) -> list[int]:
    h, d, s, r = arch.hidden_size, arch.dtype_bytes, max_loras, max_lora_rank
    q, kv, inter = arch.q_size, arch.kv_size, arch.intermediate_size
    punica_tokens = 3 * max_num_batched_tokens
    sizes = [8 * punica_tokens] * 3 + [2 * 8 * punica_tokens, 8 * punica_tokens]
    sizes += [4 * max_num_batched_tokens] * 2 + [4 * (s + 1)] * 2 + [4 * (s + 2)]
    vocab = has_lora_vocab(arch)
    if vocab:
        sizes += [s * LORA_EXTRA_VOCAB * h * d, s * (arch.vocab_size + LORA_EXTRA_VOCAB) * r * d, s * h * r * d]

    f = s * r * d  # bytes of an A stack per input feature, and of a B stack per output feature
    layer = [f * h] * 3 + [f * q, f * kv, f * kv]  # q/k/v: three A, three B
    layer += [f * q, f * h]  # o
    layer += [f * h] * 2 + [f * inter] * 2  # gate/up
    layer += [f * inter, f * h]  # down
    sizes += layer * arch.num_hidden_layers
    if vocab:
        sizes += [s * r * h * d, s * lm_head_rows(arch) * r * d, s * LORA_EXTRA_VOCAB * h * d]
    return sizes
