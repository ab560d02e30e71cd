"""Sharded normax checks on 8 host CPU devices, run by tests/test_sharding.py.

Runs in its own process (``XLA_FLAGS=--xla_force_host_platform_device_count=8``
must be set before JAX starts) and prints one JSON object: for each case the
largest difference from the same computation on one device without a mesh,
and whether each output's sharding equals its input's.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import json  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import normax  # noqa: E402

AXES = ("data", "model")

# Parameter layouts: FSDP shards one matrix axis over every device, tensor
# parallel shards the fan-in (row parallel) or fan-out (column parallel) axis
# over "model" (and FSDP over "data" on the other axis in "2d").
LAYOUTS = {
  "replicated": {"a": P(), "b": P(), "c": P(), "stack": P()},
  "fsdp": {"a": P(AXES, None), "b": P(AXES, None), "c": P(None, AXES), "stack": P(None, AXES)},
  "tp_in": {
    "a": P("model", None),
    "b": P("model", None),
    "c": P("model"),
    "stack": P(None, "model"),
  },
  "tp_out": {
    "a": P(None, "model"),
    "b": P(None, "model"),
    "c": P(None, "model"),
    "stack": P(None, None, "model"),
  },
  "2d": {
    "a": P("data", "model"),
    "b": P("model", "data"),
    "c": P("data", "model"),
    "stack": P("data", None, "model"),
  },
}


def tree(key):
  k = jax.random.split(key, 4)
  return {
    "a": jax.random.normal(k[0], (32, 64)),  # Wide, grouped with the tall "c".
    "b": jax.random.normal(k[1], (32, 64)),
    "c": jax.random.normal(k[2], (64, 32)),
    "stack": jax.random.normal(k[3], (4, 32, 32)),  # A scanned stack of 4 layers.
  }


def max_diff(x, y):
  return max(
    float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)
  )


def same_sharding(out, ref):
  return all(
    o.sharding.is_equivalent_to(r.sharding, o.ndim)
    for o, r in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True)
  )


def shard(x, mesh, specs):
  return jax.tree.map(lambda v, s: jax.device_put(v, NamedSharding(mesh, s)), x, specs)


def lmo_cases(results):
  """``scale_by_lmo`` on an ``Auto`` mesh, the output shardings pinned by ``jit``."""
  mesh = jax.make_mesh((2, 4), AXES, axis_types=(AxisType.Auto,) * 2)
  g = tree(jax.random.key(0))
  for strategy in ("partition", "gather", "distribute"):
    tx = normax.scale_by_lmo(normax.Spectral(sharding=strategy))
    ref = jax.jit(lambda u, tx=tx: tx.update(u, tx.init(u))[0])(g)
    for layout, specs in LAYOUTS.items():
      gs = shard(g, mesh, specs)
      shardings = jax.tree.map(lambda x: x.sharding, gs)
      with jax.set_mesh(mesh):
        update = jax.jit(lambda u, tx=tx: tx.update(u, tx.init(u))[0], out_shardings=shardings)
        out = update(gs)
      results[f"auto/{layout}/{strategy}"] = {
        "diff": max_diff(out, ref),
        "sharding_kept": same_sharding(out, gs),
      }


def explicit_cases(results):
  """``scale_by_lmo`` on an ``Explicit`` mesh (sharding in types): every layout,
  strategy and batch setting; the updates must keep the gradients' shardings."""
  mesh = jax.make_mesh((2, 4), AXES, axis_types=(AxisType.Explicit,) * 2)
  g = tree(jax.random.key(0))
  for strategy in ("auto", "partition", "gather", "distribute"):
    for batch in (True, False) if strategy != "auto" else (True,):
      tx = normax.scale_by_lmo(normax.Spectral(sharding=strategy), batch=batch)
      ref = jax.jit(lambda u, tx=tx: tx.update(u, tx.init(u))[0])(g)
      for layout in LAYOUTS if batch else ("2d",):
        gs = shard(g, mesh, LAYOUTS[layout])
        with jax.set_mesh(mesh):
          out = jax.jit(lambda u, tx=tx: tx.update(u, tx.init(u))[0])(gs)
        results[f"explicit/{layout}/{strategy}/batch={batch}"] = {
          "diff": max_diff(out, ref),
          "sharding_kept": same_sharding(out, gs),
        }


def optimizer_cases(results):
  """``muon`` and ``scion`` steps on a 2-D sharded tree (``Explicit`` mesh) vs one device."""
  mesh = jax.make_mesh((2, 4), AXES, axis_types=(AxisType.Explicit,) * 2)
  params = tree(jax.random.key(1))
  params["bias"] = jnp.zeros(64)
  specs = dict(LAYOUTS["2d"], bias=P("model"))
  grads = [
    jax.tree.map(lambda p, k=k: jax.random.normal(jax.random.key(k), p.shape), params)
    for k in range(3)
  ]
  for strategy in ("partition", "gather", "distribute"):
    spectral = normax.Spectral(sharding=strategy)
    labels = {"a": "hidden", "b": "hidden", "c": "hidden", "stack": "hidden", "bias": "bias"}
    optimizers = {
      "muon": normax.muon(
        0.02, orthogonalizer=normax.Orthogonalizer(method="newton_schulz", sharding=strategy)
      ),
      "scion": normax.scion(
        0.05,
        {
          "hidden": normax.LayerSpec(spectral, radius=2.0),
          "bias": normax.LayerSpec("bias_rms", radius=1.0),
        },
        labels,
      ),
    }
    for name, tx in optimizers.items():

      def run(p, gs, tx=tx):
        state = tx.init(p)
        for g in gs:
          u, state = tx.update(g, state, p)
          p = optax.apply_updates(p, u)
        return p

      ref = jax.jit(run)(params, grads)
      ps = shard(params, mesh, specs)
      gss = [shard(g, mesh, specs) for g in grads]
      with jax.set_mesh(mesh):
        out = jax.jit(run)(ps, gss)
      results[f"{name}/{strategy}"] = {
        "diff": max_diff(out, ref),
        "sharding_kept": same_sharding(out, ps),
      }


def mlp_params(key, sizes):
  keys = jax.random.split(key, len(sizes) - 1)
  return {
    f"layer{i}": {"kernel": jax.random.normal(k, (m, n)) / np.sqrt(m), "bias": jnp.zeros(n)}
    for i, (k, m, n) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))
  }


def mlp_loss(params, x, y):
  h = x
  n = len(params)
  for i in range(n):
    h = h @ params[f"layer{i}"]["kernel"] + params[f"layer{i}"]["bias"]
    if i < n - 1:
      h = jax.nn.gelu(h)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(h, y))


def training_case(results, steps=20):
  """An MLP classifier trained with scion on a data × model mesh vs one device.

  ``Auto`` mesh: the train step pins the parameters' shardings with
  ``out_shardings``, the batch is sharded over "data".
  """
  mesh = jax.make_mesh((2, 4), AXES, axis_types=(AxisType.Auto,) * 2)
  sizes = (64, 128, 128, 10)
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(10, 64))
  labels_all = rng.integers(0, 10, size=(steps, 64))
  xs = centers[labels_all] + 1.0 * rng.normal(size=(steps, 64, 64))
  params = mlp_params(jax.random.key(2), sizes)
  # Megatron layout: column parallel, row parallel, then the head column
  # parallel; FSDP over "data" on the other axis; biases follow their outputs.
  specs = {
    "layer0": {"kernel": P("data", "model"), "bias": P("model")},
    "layer1": {"kernel": P("model", "data"), "bias": P()},
    "layer2": {"kernel": P("data", None), "bias": P()},
  }
  label_fn = lambda tree: {
    k: {
      "kernel": "head" if k == "layer2" else "hidden",  # noqa: E731
      "bias": "bias",
    }
    for k in tree
  }

  def make(strategy):
    return normax.scion(
      0.05,
      {
        "hidden": normax.LayerSpec(normax.Spectral(sharding=strategy), radius=3.0),
        "head": normax.LayerSpec("sign", radius=3.0),
        "bias": normax.LayerSpec("bias_rms", radius=1.0),
      },
      label_fn,
      constrained=False,
    )

  def train(params, tx, data_sharding=None):
    out_shardings = None
    if data_sharding is not None:
      out_shardings = (jax.tree.map(lambda x: x.sharding, params), None, None)

    @jax.jit(out_shardings=out_shardings)
    def step(p, s, x, y):
      loss, g = jax.value_and_grad(mlp_loss)(p, x, y)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s, loss

    state = jax.jit(tx.init)(params)
    losses = []
    for x, y in zip(xs, labels_all, strict=True):
      x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y)
      if data_sharding is not None:
        x = jax.device_put(x, data_sharding)
        y = jax.device_put(y, data_sharding)
      params, state, loss = step(params, state, x, y)
      losses.append(float(loss))
    return params, losses

  ref_params, ref_losses = train(params, make("partition"))
  results["train/reference"] = {"losses": ref_losses}
  for strategy in ("partition", "gather", "distribute"):
    ps = shard(params, mesh, specs)
    with jax.set_mesh(mesh):
      out, losses = train(ps, make(strategy), NamedSharding(mesh, P("data")))
    results[f"train/{strategy}"] = {
      "diff": max_diff(out, ref_params),
      "sharding_kept": same_sharding(out, ps),
      "losses": losses,
    }


def docs_case(results):
  """Runs the complete example of docs/sharding.md."""
  import contextlib
  import io
  import pathlib
  import re

  text = (pathlib.Path(__file__).parent.parent / "docs" / "sharding.md").read_text()
  code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
  namespace = {"__name__": "docs_sharding"}
  with contextlib.redirect_stdout(io.StringIO()):
    exec(compile(code, "docs/sharding.md", "exec"), namespace)
  results["docs/example"] = {
    "loss": float(namespace["loss"]),
    "sharding_kept": namespace["params"]["w1"].sharding.spec == P("data", "model"),
  }


def hlo_cases(results):
  """Collectives of the compiled default (``"auto"``) update on a GPT-like tree of
  hidden matrices, per layout (``benchmarks/sharding.py``'s counter), and of
  ``"partition"`` on FSDP as a control that the counter sees in-loop collectives."""
  bench = _bench()
  mesh = jax.make_mesh((2, 4), AXES, axis_types=(AxisType.Explicit,) * 2)
  for row in bench.hlo_rows(32, 2, mesh, strategies=("auto",)):
    results[f"hlo/{row['tree']}/{row['layout']}/auto"] = row
  for row in bench.hlo_rows(32, 2, mesh, strategies=("partition",), layouts=("fsdp",)):
    results[f"hlo/{row['tree']}/{row['layout']}/partition"] = row


# Expert-parallel layout of the zoo's routed MoE: experts over "expert", each expert's fan-in
# FSDP-sharded over "data"; every other parameter replicated, so that every collective of the
# update is the experts'.
MOE_AXES = ("expert", "data")
MOE_SPECS = {
  "blocks/w_in": P(None, "expert", "data", None),
  "blocks/w_out": P(None, "expert", "data", None),
  "moe/w_in": P("expert", "data", None),
  "moe/w_out": P("expert", "data", None),
}


def moe_cases(results):
  """Scion and Muon steps on the routed MoE (roles from the computation) over an
  expert-parallel ``Explicit`` mesh, each strategy against one device, with the collectives of
  the compiled update; and the recipe for ``Auto`` meshes (``jax.sharding.explicit_axes``)."""
  import dataclasses

  import zoo
  from flax import nnx

  bench = _bench()
  entry = zoo.routed_moe(idle=zoo.E - 1)
  roles = normax.infer_roles(entry.apply, entry.params, *entry.inputs)
  params = nnx.to_pure_dict(entry.params)
  # Random gradients, the idle expert's zero (as a trained model's): the few-token gradients of
  # the tiny model are low-rank, and Newton–Schulz magnifies the rounding of their small singular
  # values, which would hide the comparison below under noise that sharding does not cause.
  flat, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(4), len(flat))
  grads = treedef.unflatten(
    [jax.random.normal(k, x.shape) for k, x in zip(keys, flat, strict=True)]
  )
  for k in ("blocks", "moe"):
    for n in ("w_in", "w_out"):
      grads[k][n] = grads[k][n].at[..., zoo.E - 1, :, :].set(0.0)
  expert_bytes = sum(
    x.size * x.dtype.itemsize
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
    if normax.path_to_str(path) in MOE_SPECS
  )
  mesh = jax.make_mesh((4, 2), MOE_AXES, axis_types=(AxisType.Explicit,) * 2)

  def specs_of(tree):
    return jax.tree_util.tree_map_with_path(
      lambda path, _: MOE_SPECS.get(normax.path_to_str(path), P()), tree
    )

  specs = specs_of(params)
  labels, presets = normax.presets.scion_gpt(roles=roles)
  for strategy in ("auto", "partition", "gather", "distribute"):
    hidden = dataclasses.replace(presets["hidden"], norm=normax.Spectral(sharding=strategy))
    optimizers = {
      "scion": normax.scion(0.01, presets | {"hidden": hidden}, labels, constrained=False),
      "muon": normax.muon(
        0.02,
        roles=roles,
        orthogonalizer=normax.Orthogonalizer(method="newton_schulz", sharding=strategy),
      ),
    }
    for name, tx in optimizers.items():

      def step(g, p, tx=tx):
        return tx.update(g, tx.init(p), p)[0]

      ref = jax.jit(step)(grads, params)
      gs, ps = shard(grads, mesh, specs), shard(params, mesh, specs)
      with jax.set_mesh(mesh):
        compiled = jax.jit(step).lower(gs, ps).compile()
        out = compiled(gs, ps)
      row = bench.summarize(bench.hlo_collectives(compiled.as_text()))
      flat_out = {normax.path_to_str(k): v for k, v in jax.tree_util.tree_flatten_with_path(out)[0]}
      results[f"moe/{name}/{strategy}"] = {
        "diff": max_diff(out, ref),
        "sharding_kept": same_sharding(out, gs),
        "idle_zero": all(
          not np.any(np.asarray(flat_out[k])[..., zoo.E - 1, :, :]) for k in MOE_SPECS
        ),
        "bytes / experts": (row["inside_bytes"] + row["outside_bytes"]) / expert_bytes,
        "expert_groups": mesh.shape["expert"],
        **row,
      }
  # The expert leaves alone, so that every collective counted is theirs.
  experts = {k: {n: params[k][n] for n in ("w_in", "w_out")} for k in ("blocks", "moe")}
  expert_grads = {k: {n: grads[k][n] for n in ("w_in", "w_out")} for k in ("blocks", "moe")}
  for strategy in ("auto", "partition", "gather", "distribute"):
    tx = normax.scale_by_lmo(normax.Spectral(sharding=strategy), views=roles.views)
    ref = jax.jit(lambda g, tx=tx: tx.update(g, tx.init(g))[0])(expert_grads)
    gs = shard(expert_grads, mesh, specs_of(experts))
    with jax.set_mesh(mesh):
      compiled = jax.jit(lambda g, tx=tx: tx.update(g, tx.init(g))[0]).lower(gs).compile()
      out = compiled(gs)
    row = bench.summarize(bench.hlo_collectives(compiled.as_text()))
    results[f"moe/experts/{strategy}"] = {
      "diff": max_diff(out, ref),
      "sharding_kept": same_sharding(out, gs),
      "bytes / experts": (row["inside_bytes"] + row["outside_bytes"]) / expert_bytes,
      "devices": mesh.size,
      "expert_groups": mesh.shape["expert"],
      **row,
    }
  # An Auto mesh carries no shardings in the types: run the update under explicit_axes.
  auto = jax.make_mesh((4, 2), MOE_AXES, axis_types=(AxisType.Auto,) * 2)
  tx = normax.muon(
    0.02,
    roles=roles,
    orthogonalizer=normax.Orthogonalizer(method="newton_schulz", sharding="distribute"),
  )

  def explicit_step(g, p):
    f = jax.sharding.explicit_axes(
      lambda g, p: tx.update(g, tx.init(p), p)[0], axes=MOE_AXES, in_sharding=(specs, specs)
    )
    return f(g, p)

  ref = jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)
  gs, ps = shard(grads, auto, specs), shard(params, auto, specs)
  shardings = jax.tree.map(lambda x: x.sharding, gs)
  with jax.set_mesh(auto):
    compiled = jax.jit(explicit_step, out_shardings=shardings).lower(gs, ps).compile()
    out = compiled(gs, ps)
  row = bench.summarize(bench.hlo_collectives(compiled.as_text()))
  results["moe/auto_mesh_explicit_axes"] = {
    "diff": max_diff(out, ref),
    "bytes / experts": (row["inside_bytes"] + row["outside_bytes"]) / expert_bytes,
    "expert_groups": auto.shape["expert"],
    **row,
  }


def _bench():
  """benchmarks/sharding.py, for its HLO collective counter."""
  import importlib.util
  import pathlib

  path = pathlib.Path(__file__).parent.parent / "benchmarks" / "sharding.py"
  spec = importlib.util.spec_from_file_location("_normax_bench_sharding", path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  return bench


def main():
  if jax.device_count() < 8:
    sys.exit(f"need 8 devices, got {jax.device_count()}: set XLA_FLAGS before JAX starts")
  results = {}
  groups = sys.argv[1:] or ["lmo", "explicit", "optimizers", "train", "docs", "hlo", "moe"]
  if "lmo" in groups:
    lmo_cases(results)
  if "explicit" in groups:
    explicit_cases(results)
  if "optimizers" in groups:
    optimizer_cases(results)
  if "train" in groups:
    training_case(results)
  if "docs" in groups:
    docs_case(results)
  if "hlo" in groups:
    hlo_cases(results)
  if "moe" in groups:
    moe_cases(results)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
