"""Smoke tests of examples/image_classification.py on small data the tests make."""

import gzip
import importlib.util
import json
import os
import struct
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name):
  if os.path.join(ROOT, "examples") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "examples"))
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # The dataclass resolves its string annotations through it.
  spec.loader.exec_module(module)
  return module


ic = load_example("image_classification")
datasets = load_example("_data")  # Where the example's IDX files come from.


def write_idx(path, array, compress):
  """The IDX format, written independently of the example's reader."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
    f">{array.ndim}I", *array.shape
  )
  data = header + array.astype(np.uint8).tobytes()
  with (gzip.open if compress else open)(path, "wb") as f:
    f.write(data)


def make_idx_dir(tmp_path, compress, n_train=256, n_test=64):
  """Two easy classes of 12×12 images: a bright left half (0) or right half (1), plus noise."""
  rng = np.random.default_rng(0)

  def images(n):
    labels = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 12, 12))
    for i, label in enumerate(labels):
      x[i, :, 6 * label : 6 * label + 6] += 180
    return x, labels

  (x_train, y_train), (x_test, y_test) = images(n_train), images(n_test)
  suffix = ".gz" if compress else ""
  for name, array in [
    ("train-images-idx3-ubyte", x_train),
    ("train-labels-idx1-ubyte", y_train),
    ("t10k-images-idx3-ubyte", x_test),
    ("t10k-labels-idx1-ubyte", y_test),
  ]:
    write_idx(tmp_path / (name + suffix), array, compress)
  return x_train, y_train


def tiny(**kw):
  defaults = dict(steps=20, eval_every=10, batch_size=32, width=32, progress=False)
  return ic.Config(**(defaults | kw))


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trips(tmp_path, compress):
  x_train, y_train = make_idx_dir(tmp_path, compress)
  suffix = ".gz" if compress else ""
  np.testing.assert_array_equal(
    datasets.read_idx(str(tmp_path / f"train-images-idx3-ubyte{suffix}")), x_train
  )
  np.testing.assert_array_equal(
    datasets.read_idx(str(tmp_path / f"train-labels-idx1-ubyte{suffix}")), y_train
  )


# Every optimizer on the MLP; on the CNN the ones with their own conv-kernel rule (Scion's
# SpectralConv) and the baselines (the variants share muon's and adamw's handling of conv kernels).
CASES = [(o, "mlp") for o in ic.OPTIMIZERS]
CASES += [(o, "cnn") for o in ("scion", "uscion", "muon", "optax_muon", "adamw", "shampoo")]


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "model"), CASES)
def test_every_optimizer_and_model_learns_idx_data(tmp_path, optimizer, model):
  make_idx_dir(tmp_path, compress=True)
  out, plot = tmp_path / "run" / "m.jsonl", tmp_path / "run" / "m.png"
  config = tiny(
    dataset="mnist", data_dir=str(tmp_path), model=model, optimizer=optimizer, out=str(out),
    plot=str(plot),
  )  # fmt: skip
  metrics = ic.main(config)
  history = metrics["history"]
  steps = [config.eval_every, config.steps]  # 10, 20
  assert [h["step"] for h in history] == steps
  uniform = float(np.log(10))  # The loss of a ten-way softmax that has learnt nothing.
  assert history[-1]["train_loss"] < min(history[0]["train_loss"], 0.75 * uniform), history
  assert metrics["final_eval_loss"] == history[-1]["eval_loss"] < 0.75 * uniform
  assert metrics["final_eval_acc"] >= 0.9  # Two classes a half-image apart.
  assert metrics["seconds"] > 0
  lines = [json.loads(line) for line in out.read_text().splitlines()]
  assert lines[0]["config"]["optimizer"] == optimizer
  assert [r["step"] for r in lines[1:-1]] == steps
  assert lines[-1]["final_eval_acc"] == metrics["final_eval_acc"]
  assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_digits_default_learns():
  config = tiny(steps=100, eval_every=50, out="", plot="")  # Default dataset: the digits.
  metrics = ic.main(config)
  assert config.dataset == "digits" and config.optimizer == "scion"
  assert metrics["final_eval_acc"] > 0.8
  assert metrics["history"][-1]["train_loss"] < 0.5 * metrics["history"][0]["train_loss"]


def test_missing_data_names_the_files_and_the_flag(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    ic.main(tiny(dataset="fashion_mnist", data_dir=str(tmp_path / "nowhere"), out="", plot=""))
  message = str(info.value)
  for expected in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "--data-dir"):
    assert expected in message


def test_flags_come_from_the_config():
  config = ic.parse_config(
    ic.Config,
    ["--optimizer", "adamw", "--lr", "0.01", "--width", "256", "--batch_size", "64",
     "--warmup", "5", "--no-progress", "--plot", "", "--radii", "none"],
  )  # fmt: skip
  assert config == ic.Config(
    optimizer="adamw", lr=0.01, width=256, batch_size=64, warmup=5, progress=False, plot=None
  )
  with pytest.raises(SystemExit):
    ic.parse_config(ic.Config, ["--optimizer", "sgd"])


def test_warmup_and_decay_schedule():
  schedule = ic.learning_rate_schedule(1.0, steps=100, warmup=10, decay="linear")
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(55), schedule(100)],
                             [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)  # fmt: skip
  assert ic.learning_rate_schedule(0.3, steps=100, decay="constant") == 0.3


def test_missing_files_are_downloaded_into_the_cache_and_checked(tmp_path, monkeypatch):
  # A "canonical location" the test serves from disk (file:// URLs go through urlopen too).
  source = tmp_path / "upstream"
  source.mkdir()
  x_train, y_train = make_idx_dir(source, compress=True)
  import hashlib

  md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in source.iterdir()}
  monkeypatch.setitem(datasets.SOURCES, "mnist", (source.as_uri() + "/", md5s))
  monkeypatch.setitem(datasets.DATA_DIRS, "mnist", str(tmp_path / "no-debian-package"))
  monkeypatch.setenv("NORMAX_DATA", str(tmp_path / "cache"))
  with pytest.raises(FileNotFoundError, match="--download"):  # Not allowed to fetch.
    datasets.load_idx_dataset("mnist", None, download=False)
  got = datasets.load_idx_dataset("mnist", None)
  np.testing.assert_array_equal(got[0], x_train)
  np.testing.assert_array_equal(got[1], y_train)
  cached = tmp_path / "cache" / "mnist"
  assert sorted(p.name for p in cached.iterdir()) == sorted(md5s)  # No partial files left.
  # The cache is read without the network afterwards.
  monkeypatch.setitem(datasets.SOURCES, "mnist", ("file:///nowhere/", md5s))
  np.testing.assert_array_equal(
    datasets.load_idx_dataset("mnist", None, download=False)[0], x_train
  )
  # A file whose MD5 does not match is an error, and is not kept.
  bad = dict(md5s, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
  monkeypatch.setitem(datasets.SOURCES, "mnist", (source.as_uri() + "/", bad))
  monkeypatch.setenv("NORMAX_DATA", str(tmp_path / "cache2"))
  with pytest.raises(ValueError, match="has MD5 .* expected 0{32}"):
    datasets.load_idx_dataset("mnist", None)
  assert not (tmp_path / "cache2" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
  # An unreachable source names the file and the alternatives.
  monkeypatch.setitem(datasets.SOURCES, "mnist", ("file:///nowhere/", md5s))
  monkeypatch.setenv("NORMAX_DATA", str(tmp_path / "cache3"))
  with pytest.raises(FileNotFoundError, match="could not download .*--data-dir"):
    datasets.load_idx_dataset("mnist", None)
