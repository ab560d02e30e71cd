"""Smoke tests of examples/char_gpt.py on a small text the tests write."""

import dataclasses
import json
import logging
import math

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from test_example_image import load_example

import normax

cg = load_example("char_gpt")
parse_config = load_example("_common").parse_config

TEXT = (
  "to be, or not to be, that is the question:\n"
  "whether 'tis nobler in the mind to suffer\n"
  "the slings and arrows of outrageous fortune,\n"
) * 60


def tiny(tmp_path, **kw):
  path = tmp_path / "text.txt"
  path.write_text(TEXT, encoding="utf-8")
  defaults = dict(
    steps=30, eval_every=15, batch_size=16, block_size=16, n_embd=32, n_layer=1, n_head=2,
    text=str(path), out=str(tmp_path / "m.jsonl"), plot=str(tmp_path / "m.png"),
    progress=False, sample_len=24, eval_batches=4,
  )  # fmt: skip
  return cg.Config(**(defaults | kw))


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", cg.OPTIMIZERS)
def test_every_optimizer_learns_the_text(tmp_path, optimizer):
  # Rates for this tiny model and 30 steps (the defaults suit the full-size one).
  lr = {"scion": 2**-9, "uscion": 2**-9, "muon": 0.02, "optax_muon": 0.02, "adamw": 1e-2,
        "normuon": 0.02, "muon_aol": 0.02, "muon_rms": 1e-2, "shampoo": 1e-2, "soap": 1e-2,
        "scion_free": 1.0, "muon_free": 1.0, "scion_last2": 2**-9}  # fmt: skip
  config = tiny(tmp_path, optimizer=optimizer, lr=lr[optimizer])
  metrics = cg.main(config)
  uniform = math.log(len(set(TEXT)))  # The loss of a uniform guess over the alphabet.
  first, last = metrics["history"][0], metrics["history"][-1]
  assert last["step"] == config.steps
  assert last["eval_loss"] < first["eval_loss"]
  assert last["eval_loss"] < 0.75 * uniform, (optimizer, metrics["history"])
  assert metrics["final_eval_loss"] == last["eval_loss"]
  assert metrics["tokens_per_second"] > 0
  v, d, L = len(set(TEXT)), config.n_embd, config.n_layer
  per_block = 4 * d * d + 2 * 4 * d * d + 2 * d  # Attention, MLP, two RMSNorm gains.
  assert metrics["n_params"] == v * d + config.block_size * d + L * per_block + d + d * v
  # Metrics as JSON lines, one per evaluation, the same as the returned history.
  lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
  assert lines[0]["config"]["optimizer"] == optimizer  # The config, ...
  assert lines[1:-1] == metrics["history"]  # ... one line per evaluation, ...
  assert lines[-1]["final_eval_loss"] == metrics["final_eval_loss"]  # ... the final record.
  assert {"step", "train_loss", "eval_loss", "tokens_per_second", "seconds"} <= set(lines[1])
  assert (tmp_path / "m.png").stat().st_size > 0
  # The sample has the requested length, in the text's alphabet.
  assert len(metrics["sample"]) == config.sample_len
  assert set(metrics["sample"]) <= set(TEXT)


def test_scion_uses_the_papers_gpt_norms():
  """Embeddings ColNorm, hidden matrices Spectral, head Sign, RMSNorm gains BiasRMS."""
  config = cg.Config(n_embd=32, n_layer=2, n_head=2, block_size=16, vocab_size=20)
  params = nnx.state(cg.GPT(config, rngs=nnx.Rngs(0)), nnx.Param)
  labels, specs = normax.presets.scion_gpt()
  flat = {
    "/".join(str(getattr(k, "key", k)) for k in path): label
    for path, label in jax.tree_util.tree_flatten_with_path(labels(params))[0]
  }
  norm_of = {path: type(specs[label].norm).__name__ for path, label in flat.items()}
  assert norm_of["tok_embed/embedding"] == "ColNorm"
  assert norm_of["pos_embed/embedding"] == "ColNorm"
  assert norm_of["lm_head/kernel"] == "Sign"
  for block in (0, 1):
    for name in ("attn/query", "attn/key", "attn/value", "attn/proj", "fc", "fc_out"):
      assert norm_of[f"blocks/{block}/{name}/kernel"] == "Spectral"
    assert norm_of[f"blocks/{block}/attn_norm/scale"] == "BiasRMS"
  assert norm_of["final_norm/scale"] == "BiasRMS"


def test_muon_split_puts_only_hidden_matrices_on_muon():
  config = cg.Config(n_embd=32, n_layer=1, n_head=2, block_size=16, vocab_size=20)
  params = nnx.state(cg.GPT(config, rngs=nnx.Rngs(0)), nnx.Param)
  leaves = jax.tree_util.tree_flatten_with_path(cg.muon_labels(params))[0]
  on_muon = sorted(
    "/".join(str(getattr(k, "key", k)) for k in path) for path, label in leaves if label == "muon"
  )
  hidden = ("attn/key", "attn/proj", "attn/query", "attn/value", "fc", "fc_out")
  assert on_muon == sorted(f"blocks/0/{name}/kernel" for name in hidden)


def test_make_optimizer_every_name_and_bad_name():
  for name in cg.OPTIMIZERS:
    assert isinstance(cg.make_optimizer(cg.Config(optimizer=name)), optax.GradientTransformation)
  with pytest.raises(ValueError, match="--optimizer must be one of"):
    cg.make_optimizer(cg.Config(optimizer="sgd"))


def test_missing_and_short_text_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="--text"):
    load_example("_data").load_text(str(tmp_path / "missing.txt"))
  with pytest.raises(ValueError, match="block_size"):
    cg.CharData("abc" * 10, block_size=16)


def test_flags():
  argv = ["--optimizer", "muon", "--lr", "0.01", "--out", "none", "--no-progress", "--n-layer", "2"]
  config = parse_config(cg.Config, argv)
  assert (config.optimizer, config.lr, config.out, config.progress, config.n_layer) == (
    "muon", 0.01, None, False, 2,
  )  # fmt: skip
  config = parse_config(cg.Config, ["--lr", "2**-6", "--radii", "hidden=10,head=2**3"])
  assert config.lr == 2**-6 and config.radii == "hidden=10,head=2**3"
  _, specs = cg.scion_recipe(config)
  assert specs["hidden"].radius == 10.0 and specs["head"].radius == 8.0
  with pytest.raises(ValueError, match="--radii names label"):
    cg.scion_recipe(cg.Config(radii="hiden=3"))
  assert parse_config(cg.Config, []) == cg.Config()
  with pytest.raises(SystemExit):
    parse_config(cg.Config, ["--optimizer", "sgd"])


@pytest.mark.slow  # An end-to-end run (the benchmark script / the example's training).
def test_boundary_init_tied_embeddings_and_one_compilation_for_sampling(tmp_path, caplog):
  config = tiny(tmp_path, steps=2, eval_every=2, tie_embeddings=True, init="boundary", lr=2**-6)
  metrics = cg.main(config)
  assert math.isfinite(metrics["final_eval_loss"])
  config = dataclasses.replace(config, vocab_size=len(set(TEXT)))
  model = cg.GPT(config, rngs=nnx.Rngs(0))
  assert model.lm_head is None  # The token table is the head.
  labels, specs = cg.scion_recipe(config)
  assert specs["head"].norm == normax.Sign(transpose=True)
  normax.init_model(jax.random.key(0), model, labels, specs, keep=("bias",))
  table = np.asarray(model.tok_embed.embedding[...])
  np.testing.assert_allclose(np.abs(table), specs["head"].radius / config.n_embd, rtol=1e-6)
  # Sampling reuses one compiled function for every position (a model of a new width, so the
  # compilation cache of the run above cannot hide one per position).
  model = cg.GPT(dataclasses.replace(config, n_embd=24), rngs=nnx.Rngs(0))
  data = cg.CharData(TEXT, config.block_size)
  with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
    cg.generate(model, data, 12, seed=0)
  compiles = [r for r in caplog.messages if r.startswith("Compiling jit(_next_logits)")]
  assert len(compiles) == 1  # 12 positions, one compilation (a new model shape: exactly one).
  with pytest.raises(ValueError, match="--init boundary"):
    cg.main(dataclasses.replace(config, optimizer="adamw"))
