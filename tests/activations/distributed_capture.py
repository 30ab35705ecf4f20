"""Run under torchrun by test_distributed.py: each rank captures its share into one cache."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tiny_models import tiny_corpus, tiny_model, tiny_tokenizer

from saescope._dist import end_worker, init_distributed
from saescope.activations import capture
from saescope.data import ContextConfig

init_distributed()
capture(
    tiny_model("llama", tiny_tokenizer()),
    ["layers.1.resid_post"],
    sys.argv[1],
    tokens=301,
    corpus=tiny_corpus(),
    context=ContextConfig(16),
    dtype="float32",
    batch_size=4,
    shard_rows=64,
    progress=False,
)
end_worker()
