# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The long prompts the serving tier sends: seeded, so that every run's prompt differs."""

from __future__ import absolute_import, division, print_function

import json
import random

from .common import TierError

# Words that common BPE tokenizers (Llama 3, Qwen, Mistral) encode as one token each
# when preceded by a space, so that N words make roughly N prompt tokens.
PROMPT_WORDS = (
    "the of and to in is was for on are with as by at from that this be or an have not "
    "but had they which one you were all we her she there been their has would more when "
    "will who if no out so up said what its about than into them can only other new some "
    "could time these two may first then do any like my now over such our man me even most "
    "made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used take "
    "three states himself few house use during without again place around however home small "
    "found thought went say part once general high upon school every don does got united left "
    "number course war until always away something fact though water less public put think "
    "almost hand enough far took head yet government system better set told nothing night end"
).split()


def load_prompt_words(path):
    """Prompt words: the built-in list, or a JSON list / whitespace-separated words from `path`.

    For a model whose tokenizer does not know English words (a word-level test tokenizer, say)
    point it at that vocabulary, so that one word stays one token and runs differ.
    """
    if not path:
        return PROMPT_WORDS
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise TierError("--prompt-words %s: %s" % (path, exc))
    try:
        words = json.loads(text)
    except ValueError:
        words = text.split()
    if not isinstance(words, list):
        raise TierError("--prompt-words %s: a JSON file must hold a list of words" % path)
    words = tuple(
        w for w in words if isinstance(w, str) and w and not w.startswith("<") and not any(c.isspace() for c in w)
    )
    if not words:
        raise TierError("--prompt-words %s holds no usable word" % path)
    return words


def build_prompt(nonce, words, question, vocabulary=PROMPT_WORDS):
    # Seeded by the nonce: another run's prompt differs in every word, not only in its first line
    # (a tokenizer may map the nonce itself to an unknown-word token).
    rng = random.Random(nonce)
    body = " ".join(rng.choice(vocabulary) for dummy in range(max(words, 1)))
    return "Request %s.\n%s\n%s" % (nonce, body, question)
