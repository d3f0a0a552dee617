"""The engine behind the re-rankers (internal: its names may change without notice).

- :mod:`.batching`: packing a batch of lists into buckets and groups, without padding;
- :mod:`.encoder`: the BERT/ELECTRA layers on packed tokens;
- :mod:`.attention`: own-token and inter-passage attention of one bucket (xformers on CUDA, SDPA elsewhere);
- :mod:`.precision`: numerics per machine (``dtype="auto"``, half precision with float32 where it decides ranks);
- :mod:`.numerics`: int8 linear layers;
- :mod:`.allocator`: freed memory kept for reuse on glibc.

The public classes (:class:`pyterrier_setenc.SetEncoderReRanker` and the others) are the supported way in.
"""
