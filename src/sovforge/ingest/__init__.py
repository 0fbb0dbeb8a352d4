"""ingest stage: documents → screened, deduplicated, classified corpus (`sovforge ingest INPUT... --out DIR`).

`corpus.py` is the reader every later stage uses; `pipeline.py` is the stage itself.
"""
