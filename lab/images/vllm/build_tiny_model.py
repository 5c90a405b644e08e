"""Build a tiny random Qwen2 model offline and deterministically: python build_tiny_model.py DIR

The lab has no GPU and cannot download a model, yet vLLM needs a real checkpoint with a real
tokenizer. This writes one of ~1.5 MB:
- a byte-level BPE tokenizer (vocabulary at most 2048) trained with `tokenizers` on text that is
  already on the machine: the docstrings and comments of Python's standard library, read in a
  fixed order;
- a Qwen2ForCausalLM with random weights from a fixed seed: hidden size 128, 2 layers, 4
  attention heads and 2 KV heads (head size 32: vLLM's CPU attention needs at least 32).
Same inputs, same bytes: re-running it over an existing directory changes nothing.
"""
import json
import pathlib
import sys
import sysconfig

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SEED = 20261127
VOCAB_SIZE = 2048
CORPUS_BYTES = 4 * 1024 * 1024
EOS = "<|endoftext|>"
MAX_LEN = 2048


def corpus():
    """Text from the standard library's own sources, in sorted order, up to CORPUS_BYTES."""
    stdlib = pathlib.Path(sysconfig.get_path("stdlib"))
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        total += len(text)
        yield text
        if total >= CORPUS_BYTES:
            return


def build_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   pad_token=EOS, unk_token=EOS, model_max_length=MAX_LEN)


def build_model(vocab_size, eos_id):
    torch.manual_seed(SEED)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=MAX_LEN, tie_word_embeddings=True,
                         bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
                         torch_dtype="bfloat16")
    model = Qwen2ForCausalLM(config)
    return model.to(torch.bfloat16)


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/data/models/tiny-qwen2")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), tokenizer.convert_tokens_to_ids(EOS))
    tokenizer.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    print(json.dumps({"model": str(out), "vocab": len(tokenizer), "files": files}))


if __name__ == "__main__":
    main()
