# Copyright: (c) 2026, gaudi.vllm_lmcache contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build a small random-weight Llama with a locally built tokenizer; print its path.

A real vLLM server needs a real Hugging Face model directory (config.json, weights,
tokenizer). This script makes one without any download: the weights are random
(seeded), the tokenizer is a word-level ``tokenizers`` tokenizer over a generated
vocabulary, saved for transformers' ``PreTrainedTokenizerFast``. The output text is
meaningless; what matters for KV-cache work is that the model has real Llama
geometry (layers, KV heads, head size), is deterministic, and that one word of a
generated prompt is one token (``prompt_words()`` builds prompts of an exact length).

The directory is ``<cache>/tiny-models/<sha256 of the recipe>[:16]``, built once
and reused until the recipe changes (``--recipe`` or the defaults below). The cache
is ``--cache-dir``, else ``$GVL_CACHE_DIR``, else ``~/.cache/gaudi-vllm-lmcache``.

Needs torch, transformers and tokenizers: run it with the serving virtualenv's
python (scripts/bench-serving.py does).

    python scripts/tiny-model.py                     # prints the model directory
    python scripts/tiny-model.py --recipe '{"num_hidden_layers": 2}'
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile

# Bump when the build procedure changes in a way the recipe does not show.
BUILD_VERSION = 1

DEFAULT_RECIPE = {
    "architecture": "LlamaForCausalLM",
    "seed": 1234,
    "vocab_words": 8000,
    "hidden_size": 768,
    "intermediate_size": 2048,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "initializer_range": 0.02,
    "dtype": "float32",
}

SPECIAL = ["<unk>", "<s>", "</s>"]
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh", "tr", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]


def cache_root(cache_dir=None):
    return (
        cache_dir
        or os.environ.get("GVL_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "gaudi-vllm-lmcache")
    )


def recipe_hash(recipe):
    blob = json.dumps({"recipe": recipe, "build": BUILD_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def vocabulary(recipe):
    """The generated words (deterministic for a recipe's seed and size)."""
    rng = random.Random(recipe["seed"])
    words, seen = [], set()
    while len(words) < recipe["vocab_words"]:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _syllable in range(rng.randint(1, 3)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def prompt_words(words, n, seed):
    """``n`` words (``n`` tokens with this tokenizer) drawn from ``words`` with ``seed``."""
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _word in range(n))


def build(recipe, out_dir):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if recipe["architecture"] != "LlamaForCausalLM":
        raise SystemExit("recipe: architecture must be LlamaForCausalLM, got %r" % recipe["architecture"])
    if recipe["hidden_size"] % recipe["num_attention_heads"]:
        raise SystemExit(
            "recipe: hidden_size %d is not a multiple of num_attention_heads %d"
            % (recipe["hidden_size"], recipe["num_attention_heads"])
        )
    if recipe["num_attention_heads"] % recipe["num_key_value_heads"]:
        raise SystemExit(
            "recipe: num_attention_heads %d is not a multiple of "
            "num_key_value_heads %d" % (recipe["num_attention_heads"], recipe["num_key_value_heads"])
        )

    vocab = {tok: i for i, tok in enumerate(SPECIAL + vocabulary(recipe))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=recipe["max_position_embeddings"],
    )
    fast.save_pretrained(out_dir)

    torch.manual_seed(recipe["seed"])
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=recipe["hidden_size"],
        intermediate_size=recipe["intermediate_size"],
        num_hidden_layers=recipe["num_hidden_layers"],
        num_attention_heads=recipe["num_attention_heads"],
        num_key_value_heads=recipe["num_key_value_heads"],
        max_position_embeddings=recipe["max_position_embeddings"],
        rms_norm_eps=recipe["rms_norm_eps"],
        rope_theta=recipe["rope_theta"],
        initializer_range=recipe["initializer_range"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        tie_word_embeddings=False,
    )
    dtype = getattr(torch, recipe["dtype"])
    model = LlamaForCausalLM(config).to(dtype)
    model.config.torch_dtype = dtype
    model.save_pretrained(out_dir, safe_serialization=True)
    with open(os.path.join(out_dir, "words.json"), "w") as f:
        json.dump(SPECIAL + vocabulary(recipe), f)
    with open(os.path.join(out_dir, "recipe.json"), "w") as f:
        json.dump({"recipe": recipe, "build": BUILD_VERSION}, f, indent=1, sort_keys=True)


def readable(path):
    """Make the model readable by every user: mkdtemp creates 0700, and the serving nodes run
    vLLM as their own service user."""
    os.chmod(path, 0o755)
    for name in os.listdir(path):
        os.chmod(os.path.join(path, name), 0o644)


def ensure(recipe=None, cache_dir=None):
    """Return the model directory for ``recipe``, building it when missing."""
    recipe = dict(DEFAULT_RECIPE, **(recipe or {}))
    unknown = set(recipe) - set(DEFAULT_RECIPE)
    if unknown:
        raise SystemExit("recipe: unknown keys %s (known: %s)" % (sorted(unknown), sorted(DEFAULT_RECIPE)))
    root = os.path.join(cache_root(cache_dir), "tiny-models")
    path = os.path.join(root, recipe_hash(recipe))
    if os.path.isfile(os.path.join(path, "recipe.json")):
        readable(path)
        return path
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
    try:
        build(recipe, tmp)
        readable(tmp)
        os.rename(tmp, path)
    except OSError:
        if not os.path.isfile(os.path.join(path, "recipe.json")):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="{}", help="JSON object overriding keys of the default recipe")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--show-recipe", action="store_true", help="print the default recipe and exit")
    args = ap.parse_args(argv)
    if args.show_recipe:
        print(json.dumps(DEFAULT_RECIPE, indent=1, sort_keys=True))
        return 0
    try:
        override = json.loads(args.recipe)
    except ValueError as exc:
        raise SystemExit("--recipe is not JSON: %s" % exc)
    if not isinstance(override, dict):
        raise SystemExit("--recipe must be a JSON object, got %r" % (override,))
    print(ensure(override, args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
