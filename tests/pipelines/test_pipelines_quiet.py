"""What the commands print is the result: no PISA log lines, no weight-loading bars under ``--quiet``."""

from __future__ import annotations


def test_pisa_indexing_and_search_print_no_log_lines(tmp_path, capfd):
    from pipelines.bm25 import cached_pisa_index

    docs = [{"docno": f"d{i}", "text": f"passage number {i} about retrieval and ranking"} for i in range(20)]
    index = cached_pisa_index("tiny", "0", lambda: iter(docs), tmp_path)
    results = index.bm25(num_results=5).search("retrieval")
    assert len(results) == 5
    printed = capfd.readouterr()
    assert "[info]" not in printed.out + printed.err, printed


def test_quiet_hides_the_weight_loading_bar_of_transformers(capfd):
    """The teacher loads with transformers, whose "Loading weights" bar goes to stderr; with verbose=False (what
    --quiet passes) nothing is printed."""
    from training.teacher import teacher_reranker

    reranker = teacher_reranker(verbose=False)
    assert reranker.teacher is not None  # loads the weights
    printed = capfd.readouterr()
    assert "Loading" not in printed.err and "%|" not in printed.err, printed.err
