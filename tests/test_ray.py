"""The variant x target matrix on a local Ray cluster (started once for this module, ~10 s): same manifests as a
local build, a dead address fails within seconds, resources no node has fail before anything is written."""

import json
import os
import subprocess
import sys
import time

import pytest

from slimserve.bench.store import history
from slimserve.builder import build
from slimserve.catalog import Catalog
from slimserve.cli import main
from slimserve.errors import UserError

from .bench_helpers import long_text, make_catalog
from .helpers import write_recipe

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'slimserve[ray]')")

TWO = (
    "  - name: q4\n    tier: nano\n    steps: [{quantize: {method: rtn, bits: 4, group_size: 32}}]\n"
    "  - name: q8\n    tier: small\n    steps: [{quantize: {method: rtn, bits: 8, group_size: null}}]\n"
)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), f"the test cluster must stay on loopback, it took {address}"
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield address
    ray.shutdown()


def _comparable(m: dict) -> dict:
    """A manifest without what differs run to run: times, file hashes, the recipe file's path."""
    m = {k: v for k, v in m.items() if k not in ("built_at", "build_seconds", "files", "recipe")}
    m["steps"] = [{k: v for k, v in s.items() if k != "seconds"} for s in m["steps"]]
    return m


def test_two_variant_build_through_ray_gives_the_local_manifests(cluster, tiny_llama_dir, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, TWO)
    local = {r.name: r.manifest for r in build(recipe, catalog=tmp_path / "local")}
    remote = {r.name: r.manifest for r in build(recipe, catalog=tmp_path / "ray", ray=cluster)}
    assert sorted(remote) == ["q4", "q8"]
    for name in local:
        assert _comparable(remote[name]) == _comparable(local[name])
        assert set(remote[name]["files"]) == set(local[name]["files"])
    on_disk = json.loads((tmp_path / "ray" / "q4" / "manifest.json").read_text())
    assert on_disk["name"] == "q4" and Catalog.open(tmp_path / "ray").names() == ["q4", "q8"]
    assert not list((tmp_path / "ray" / ".staging").iterdir())  # committed by the driver, nothing left behind


def test_an_address_that_does_not_answer_fails_in_seconds_naming_it(tiny_llama_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, TWO)
    t0 = time.monotonic()
    assert main(["build", str(recipe), "--catalog", str(tmp_path / "cat"), "--ray", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 10 and "--ray: no Ray cluster answers at 127.0.0.1:9" in err
    assert not (tmp_path / "cat").exists()


def test_resources_no_node_has_fail_before_anything_runs(cluster, tiny_llama_dir, tmp_path, capsys):
    root = make_catalog(tmp_path / "cat", tiny_llama_dir)
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    Catalog.open(root)

    def listing():
        return sorted(p.name for p in root.iterdir() if not p.name.startswith("index.sqlite"))

    before = listing()
    args = ["bench", "--catalog", str(root), "--eval-text", str(text), "--target", "cuda", "--ray", cluster]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"no node of the Ray cluster at {cluster} has the resources" in err and "GPU 1" in err and "cuda 1" in err
    assert history(Catalog.open(root)) == [] and listing() == before


def test_bench_through_ray_stores_the_records_on_the_driver(cluster, tiny_llama_dir, tmp_path):
    from slimserve.bench.api import bench

    root = make_catalog(tmp_path / "cat", tiny_llama_dir, {"tiny-noisy": 0.05})
    text = tmp_path / "eval.txt"
    text.write_text(long_text())
    quick = dict(threads=1, limit=1, rounds=1, iters=1, min_seconds=0, new_tokens=4, prompt_lens=[16], batches=[1])
    recs = {r.variant: r for r in bench(catalog=root, eval_text=text, target="cpu", ray=cluster, show=False,
                                         log=lambda m: None, **quick)}  # fmt: skip
    assert recs["tiny-fp32"].quality.kld == 0.0 and recs["tiny-noisy"].quality.kld > 0
    assert recs["tiny-noisy"].speed.decode_tok_s.p50 > 0 and recs["tiny-noisy"].cost.usd_per_1m_output > 0
    assert any("Ray task on node" in n for n in recs["tiny-noisy"].notes)
    assert {r.variant for r in history(Catalog.open(root))} == {"tiny-fp32", "tiny-noisy"}


def test_executor_refuses_an_impossible_label(cluster):
    from slimserve.executor import Job, RayExecutor

    with pytest.raises(UserError, match="neuron 1"):
        RayExecutor(cluster).check_feasible(Job(len, [], {"CPU": 1, "neuron": 1}, label="x"))


def test_ray_local_starts_its_instance_on_loopback():
    """`--ray local` must not listen on the machine's network interface (a fresh process: Ray reads it at import)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    code = (
        "from slimserve.executor import connect\n"
        "ray = connect('local')\n"
        "print(ray.get_runtime_context().gcs_address, *sorted({n['NodeManagerAddress'] for n in ray.nodes()}))\n"
        "ray.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    gcs, *nodes = out.stdout.strip().splitlines()[-1].split()
    assert gcs.startswith("127.0.0.1:") and nodes == ["127.0.0.1"], out.stdout
