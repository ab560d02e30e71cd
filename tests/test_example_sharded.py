"""examples/sharded_gpt.py's mesh flag and sharding rules (its training runs across processes in
tests/test_multiprocess.py)."""

import types

import pytest
from jax.sharding import PartitionSpec as P
from test_example_image import load_example

sg = load_example("sharded_gpt")
MESH = types.SimpleNamespace(shape={"data": 2, "model": 4})  # the rules read the axis sizes


def test_mesh_flag():
  assert sg.parse_mesh("data=2,model=4", 8) == {"data": 2, "model": 4}
  assert sg.parse_mesh("data=-1,model=4", 16) == {"data": 4, "model": 4}
  assert sg.parse_mesh("data=-1", 8) == {"data": 8, "model": 1}
  for bad in ("data=3,model=4", "batch=8", "data=-1,model=-1", "data=2,model=2"):
    with pytest.raises(ValueError, match="--mesh"):
      sg.parse_mesh(bad, 8)


@pytest.mark.parametrize(
  ("path", "shape", "layout", "spec"),
  [
    ("blocks/0/attn/query/kernel", (32, 32), "tp", P(None, "model")),  # column parallel
    ("blocks/0/fc/kernel", (32, 128), "2d", P("data", "model")),
    ("blocks/0/fc_out/kernel", (128, 32), "tp", P("model", None)),  # row parallel
    ("blocks/0/fc_out/kernel", (128, 32), "2d", P("model", "data")),
    ("blocks/0/attn/attn/query/kernel", (32, 4, 8), "tp", P(None, "model", None)),  # heads
    ("blocks/0/attn/attn/out/kernel", (4, 8, 32), "2d", P("model", "data", None)),
    ("tok_embed/embedding", (65, 32), "2d", P(None, "model")),  # 65 rows: not divisible
    ("lm_head/kernel", (32, 65), "2d", P("model", None)),
    ("tok_embed/embedding", (65, 32), "fsdp", P(None, ("data", "model"))),
    ("blocks/0/fc/kernel", (32, 128), "fsdp", P(("data", "model"), None)),
    ("final_norm/scale", (32,), "2d", P(None)),  # gains replicated
  ],
)
def test_layouts(path, shape, layout, spec):
  assert sg.partition_spec(path, shape, layout, MESH) == spec
