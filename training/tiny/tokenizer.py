"""The tiny model's tokenizer: a SentencePiece unigram model trained on the caption grammar, with
umT5's conventions (pad 0, eos 1, unk 2, no BOS, nmt_nfkc normalization, byte fallback), written as
`spiece.model` and as transformers' `tokenizer.json` (T5 converter), as google/umt5-xxl ships them.

    python3 -m training.tiny.tokenizer --out Models/tiny      # run on the CPU machine; needs sentencepiece

Deterministic (fixed seed, one thread). The GPU machine only reads the result (`load`), with
sentencepiece or, when that is missing, tokenizers.
"""
from __future__ import annotations

import argparse
import io
import os
import types

import numpy as np

from ..data.scenes import caption, sample_attributes, sample_switch

VOCAB = 400


def corpus(n: int = 20000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = sample_attributes(rng, empty_prob=0.05)
        if i % 3 == 0 and not a.empty:
            a, _ = sample_switch(rng, a, np.array([64.0, 64.0]), 128)
        out.append(caption(a))
    return out


def train(out_dir: str, vocab: int = VOCAB) -> tuple[str, str]:
    import sentencepiece as spm
    from transformers.convert_slow_tokenizer import T5Converter
    os.makedirs(out_dir, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=buf, model_type="unigram", vocab_size=vocab,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="nmt_nfkc", byte_fallback=True,
        character_coverage=1.0, hard_vocab_limit=False, input_sentence_size=0, shuffle_input_sentence=False,
        num_threads=1, minloglevel=2, seed_sentencepiece_size=100000)
    spiece = os.path.join(out_dir, "spiece.model")
    with open(spiece, "wb") as f:
        f.write(add_word_pieces(buf.getvalue(), corpus()))

    class Converter(T5Converter):
        handle_byte_fallback = True

    original = types.SimpleNamespace(vocab_file=spiece, _extra_ids=0, legacy=True, add_prefix_space=True,
                                     convert_tokens_to_ids=lambda token: 1)
    path = os.path.join(out_dir, "tokenizer.json")
    Converter(original).converted().save(path)
    return spiece, path


def add_word_pieces(model: bytes, lines: list[str]) -> bytes:
    """Adds every word of the grammar as a whole piece, scored by its log relative frequency.

    sentencepiece's unigram trainer cannot grow a vocabulary past ~57 pieces on a corpus of ~35
    distinct words (pruning keeps only pieces its Viterbi pass uses), so it leaves words split into
    letters and fragments (up to 54 tokens a caption). A unigram model is a list of scored pieces, so
    adding '▁word' pieces with their unigram log-probabilities keeps it a valid model of the same kind
    and makes captions one token per word, which a 3-layer encoder learns far more easily.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    proto.ParseFromString(model)
    have = {p.piece for p in proto.pieces}
    counts: dict[str, int] = {}
    for line in lines:
        for w in line.split():
            counts[w] = counts.get(w, 0) + 1
    total = sum(counts.values())
    for w in sorted(counts, key=lambda k: (-counts[k], k)):
        piece = "\u2581" + w
        if piece not in have:
            new = proto.pieces.add()
            new.piece, new.score, new.type = piece, float(np.log(counts[w] / total)), pb.ModelProto.SentencePiece.NORMAL
    return proto.SerializeToString()


class Tokenizer:
    """caption -> ids with </s>, by sentencepiece (spiece.model) or tokenizers (tokenizer.json)."""

    def __init__(self, model_dir: str):
        try:
            import sentencepiece as spm
            sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "spiece.model"))
            self.vocabulary = sp.get_piece_size()
            self._encode = lambda s: sp.encode(s) + [sp.eos_id()]
            self.backend = "sentencepiece"
        except ImportError:
            import tokenizers
            tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
            self.vocabulary = tok.get_vocab_size()
            self._encode = lambda s: tok.encode(s).ids          # the T5 post-processor appends </s>
            self.backend = "tokenizers"
        self._cache: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self._cache[text] = self._encode(" ".join(text.split()))   # Wan's whitespace clean
        return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="Models/tiny")
    args = ap.parse_args()
    spiece, path = train(args.out)
    import sentencepiece as spm
    import tokenizers
    sp = spm.SentencePieceProcessor(model_file=spiece)
    hf = tokenizers.Tokenizer.from_file(path)
    texts = corpus(2000, seed=1)
    bad = [t for t in texts if sp.encode(t) + [1] != hf.encode(t).ids]
    lengths = [len(sp.encode(t)) + 1 for t in texts]
    print(f"{spiece} ({os.path.getsize(spiece)} bytes), {path}: vocabulary {sp.get_piece_size()}, "
          f"{len(bad)} of {len(texts)} captions where sentencepiece and tokenizers disagree, "
          f"tokens per caption {min(lengths)}..{max(lengths)}")
    print("example:", texts[0], "->", sp.encode(texts[0], out_type=str))
    if bad:
        raise SystemExit(f"tokenizers disagrees with sentencepiece on e.g. {bad[0]!r}")


if __name__ == "__main__":
    main()
