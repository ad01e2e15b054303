"""Training past one machine: lanes (each rank reads its own shards), two torchrun nodes on loopback,
resume across world sizes, shards over a real HTTP server, the TrainJob against the Trainer's CRD schema,
and the Kubeflow SDK's process backend running ``chromaflow train``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from toy import ToyShardTask

from chromaflow.data.dataset import READ_BLOCK
from chromaflow.models import load_weights
from chromaflow.train.engine import LaneSampler, TrainConfig, fit

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CRD = HERE / "data" / "trainjob_crd_v2.3.0.json"  # kubeflow/trainer v2.3.0, see its "source" field


def _losses(out) -> list[float]:
    with open(Path(out) / "history.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------- lane order


def _global(sampler_lanes: list[list[int]], sizes: list[int], chunk: int, steps: int, start: int = 0):
    """The global micro-batches as (lane, row-in-lane) pairs, from the ranks owning ``sampler_lanes``."""
    its = []
    for lanes in sampler_lanes:
        its.append((lanes, iter(LaneSampler([sizes[k] for k in lanes], chunk, lanes, seed=5, start=start))))
    out = []
    for _ in range(steps):
        batch = []
        for lanes, it in its:
            local = [sizes[k] for k in lanes]
            for _ in range(chunk * len(lanes)):
                i, lane = next(it), 0
                while i >= local[lane]:
                    i, lane = i - local[lane], lane + 1
                batch.append((lanes[lane], i))
        out.append(batch)
    return out


def test_lane_order_is_independent_of_the_number_of_ranks():
    """1, 2 and 4 ranks over 4 lanes yield the same global micro-batches, in the same order; resuming at
    micro-batch ``b`` continues the stream; each lane visits all its rows once per lane epoch."""
    sizes, chunk, steps = [7, 5, 9, 6], 2, 12
    one = _global([[0, 1, 2, 3]], sizes, chunk, steps)
    assert _global([[0, 1], [2, 3]], sizes, chunk, steps) == one
    assert _global([[0], [1], [2], [3]], sizes, chunk, steps) == one
    assert _global([[0, 1], [2, 3]], sizes, chunk, steps - 5, start=5) == one[5:]
    lane1 = [i for b in one[:2] for lane, i in b if lane == 1]  # lane 1: 5 rows, 2 chunks per epoch
    assert len(set(lane1)) == 4 and set(lane1) <= set(range(5))
    assert [lane for lane, _ in one[0]] == [0, 0, 1, 1, 2, 2, 3, 3]  # lane after lane
    with pytest.raises(ValueError, match="at least one chunk"):
        LaneSampler([1, 5], 2, [0, 1])


def test_lane_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="lanes .3. must divide the global micro-batch"):
        TrainConfig(out=str(tmp_path), batch_size=8, lanes=3).validate()
    base = TrainConfig(out=str(tmp_path))
    assert base.fingerprint({}) == TrainConfig(out=str(tmp_path), lanes=0).fingerprint({})
    assert base.fingerprint({}) != TrainConfig(out=str(tmp_path), lanes=2).fingerprint({})


# ------------------------------------------------------------------------------- shards over HTTP


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with byte ranges (as object stores serve them); counts bytes sent per path."""

    def _body(self) -> tuple[int, bytes, int] | None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if not rng:
            return 200, data, len(data)
        a, b = rng.removeprefix("bytes=").split("-")
        a, b = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
        return 206, data[a : b + 1], len(data)

    def _send(self, head_only: bool) -> None:
        got = self._body()
        if got is None:
            return
        code, body, total = got
        self.send_response(code)
        self.send_header("Content-Length", str(total if head_only else len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {self.headers['Range'][6:].split('-')[0]}-"
                             f"{int(self.headers['Range'][6:].split('-')[0]) + len(body) - 1}/{total}")  # fmt: skip
        self.end_headers()
        if not head_only:
            self.wfile.write(body)
            with self.server.lock:
                self.server.served[self.path] += len(body)

    def do_GET(self):  # noqa: N802
        self._send(head_only=False)

    def do_HEAD(self):  # noqa: N802
        self._send(head_only=True)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, sample_dir):
    """The sample photos prepared into train shards of 12 rows (3 shards: 2 lanes), images up to 512 px."""
    from chromaflow.data.prepare import prepare

    out = tmp_path_factory.mktemp("sharded") / "prepared"
    prepare(str(sample_dir), out, max_side=512, val_fraction=0.2, shard_rows=12, workers=1)
    return out


@pytest.fixture
def http_root(sharded):
    """``(url, served)``: ``sharded`` served on loopback; ``served[path]`` = bytes sent for it."""
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(sharded.parent), **k)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.served, server.lock = Counter(), threading.Lock()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/{sharded.name}", server.served
    server.shutdown()
    server.server_close()


def test_http_share_reads_only_its_own_images(sharded, http_root):
    """A lane share over http:// fetches its own shards' images and only the small columns of the others."""
    from chromaflow.data import ShardDataset

    url, served = http_root
    full = ShardDataset(sharded, "train", crop=16, train=False)
    remote = ShardDataset(url, "train", crop=16, train=False)
    assert remote.ids == full.ids
    share = remote.share([1], 2)
    assert len(share) == share.group_sizes[0] == sum(len(full.file_rows[k]) for k in range(1, len(full.files), 2))
    assert torch.equal(share[0]["rgb"], full[len(full.file_rows[0])]["rgb"])  # file 1's first row
    lanes = [[i for k in range(g, len(full.files), 2) for i in full.file_rows[k]] for g in (0, 1)]
    offsets = np.cumsum([0] + [len(r) for r in full.file_rows]).tolist()
    by_file = [full.ids[offsets[k] : offsets[k + 1]] for k in range(len(full.files))]
    both = full.share([0, 1], 2)  # lane after lane: files 0, 2, ... then 1, 3, ...
    assert both.ids == [i for g in (0, 1) for k in range(g, len(full.files), 2) for i in by_file[k]]
    assert both.group_sizes == [len(x) for x in lanes]
    names = [Path(f).name for f in full.files]
    sizes = {n: (sharded / "shards" / n).stat().st_size for n in names}
    got = {n: served[f"/{sharded.name}/shards/{n}"] for n in names}
    for k, n in enumerate(names):
        if k % 2 == 1:  # mine: the whole image column came
            assert got[n] > 0.9 * sizes[n], (n, got[n], sizes[n])
        else:  # not mine: the footer and the small columns, one read-ahead block each at most
            assert got[n] <= 3 * READ_BLOCK, (n, got[n], sizes[n])
    assert any(sizes[n] / 2 > 3 * READ_BLOCK for n in names[::2])  # (so the bound above means something)


# --------------------------------------------------------------------------- two torchrun nodes


NODE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from toy import ToyShardTask
    from chromaflow.train.engine import TrainConfig, fit
    from chromaflow.train import distributed

    class Count(ToyShardTask):
        seen = []
        def loss(self, model, batch):
            self.seen.append(len(batch["id"]))
            return super().loss(model, batch)

    data, out = sys.argv[1:3]
    task = Count(data)
    fit(task, TrainConfig(out=out, steps=6, stop_at=4, batch_size=8, grad_accum=2, lanes=2, lr=1e-2, device="cpu",
                          log_every=1))
    json.dump({"world": int(os.environ["WORLD_SIZE"]), "seen": task.seen},
              open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w"))
    distributed.cleanup()
    """
)


@pytest.mark.slow  # two torchrun nodes + workers importing torch: ~30-60 s on a loaded 2-core machine
def test_two_nodes_over_http_match_one_process_and_resume_on_one(sharded, http_root, tmp_path):
    """``torchrun --nnodes 2 --rdzv-backend c10d`` on loopback (gloo), data over http://: per-step losses equal
    a single process with the same global batch; each rank fetched only its shards' images; global batch =
    per-rank batch x world x accumulation; a single process resumes the 2-rank checkpoint to the same end."""
    url, served = http_root
    cfg = dict(steps=6, batch_size=8, grad_accum=2, lanes=2, lr=1e-2, device="cpu", log_every=1)
    fit(ToyShardTask(str(sharded)), TrainConfig(out=str(tmp_path / "single"), **cfg))
    ref = _losses(tmp_path / "single")

    script, out, port = tmp_path / "node.py", tmp_path / "two", _free_port()
    script.write_text(NODE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HERE)]), "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(r),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "cf",
                str(script),
                url,
                str(out),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for r in (0, 1)
    ]
    logs = [p.communicate(timeout=300)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(x[-3000:] for x in logs)

    assert _losses(out) == pytest.approx(ref[:4], abs=1e-5)  # stop_at=4: the first 4 steps
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # global batch 8 = per-rank micro-batch 2 x 2 ranks x 2 accumulation steps, on every rank and step
    assert all(r["seen"] == [2] * 8 for r in ranks)

    shards = sorted((sharded / "shards").glob("train-*.parquet"))
    for f in shards:  # each shard's images were fetched once (by its lane's rank), not once per rank
        got, size = served[f"/{sharded.name}/shards/{f.name}"], f.stat().st_size
        assert size < got <= size + 6 * READ_BLOCK, (f.name, got, size)
        assert got < 2 * size or size < 6 * READ_BLOCK, (f.name, got, size)

    # resume the 2-rank checkpoint (rank 0 wrote it) in a single process: the same last steps and weights
    fit(ToyShardTask(str(sharded)), TrainConfig(out=str(out), resume="auto", **cfg))
    assert _losses(out) == pytest.approx(ref, abs=1e-5)
    wa = load_weights(tmp_path / "single" / "model.safetensors").state_dict()
    wb = load_weights(out / "model.safetensors").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


# ------------------------------------------------------------------------------------- TrainJob


def _schema() -> dict:
    return json.loads(CRD.read_text())


def test_rendered_trainjob_is_valid_against_the_trainer_crd(tmp_path):
    """``--launcher kubeflow --render``: a TrainJob the Trainer v2.3.0 CRD accepts; 2 nodes x 8 GPUs, our image,
    torch-distributed, ``torchrun`` running ``chromaflow train`` with the same flags (launcher flags dropped)."""
    import jsonschema

    from chromaflow.train import train

    path = tmp_path / "trainjob.json"
    got = train("colorization", data="s3://bucket/prepared", out="/mnt/runs/c", steps=5, batch_size=32, lanes=4,
                loss="softce", launcher="kubeflow", num_nodes=2, gpus_per_node=8, image="reg/chromaflow:9",
                render=str(path))  # fmt: skip
    assert got == {}
    job = json.loads(path.read_text())
    schema = _schema()
    assert schema["source"]["tag"] == "v2.3.0"
    jsonschema.validate(job, schema["openAPIV3Schema"])
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["spec"]["runtimeRef"] == {"kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    tr = job["spec"]["trainer"]
    assert tr["numNodes"] == 2 and tr["image"] == "reg/chromaflow:9"
    assert tr["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    script = tr["command"][-1]
    assert tr["command"][:2] == ["bash", "-c"] and 'torchrun "' in script
    source = script[script.index("def chromaflow_train") : script.index("\nchromaflow_train(")]
    exec(compile(source, "trainjob", "exec", dont_inherit=True), {})  # noqa: S102 - the function's source stands alone
    call = next(line for line in script.splitlines() if line.startswith("chromaflow_train("))
    argv = eval(call.removeprefix("chromaflow_train(**").removesuffix(")"))["argv"]  # noqa: S307 - our own render
    assert argv[:2] == ["--task", "colorization"] and "--launcher" not in argv and "--image" not in argv
    i = argv.index
    assert argv[i("--data") + 1] == "s3://bucket/prepared" and argv[i("--lanes") + 1] == "4"
    assert argv[i("--loss") + 1] == "softce"

    bad = json.loads(path.read_text())
    bad["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="numNodes|'two'"):
        jsonschema.validate(bad, schema["openAPIV3Schema"])
    bad = json.loads(path.read_text())
    del bad["spec"]["runtimeRef"]
    with pytest.raises(jsonschema.ValidationError, match="runtimeRef"):
        jsonschema.validate(bad, schema["openAPIV3Schema"])


def test_node_argv_round_trips_every_kind_of_flag():
    from chromaflow.train import cli, trainjob

    parser = cli.task_parser("colorization")
    argv = ["--out", "o", "--steps", "7", "--no-channels-last", "--compile", "--resume", "--extra-data", "a",
            "--extra-data", "b", "--lr", "0.5", "--launcher", "kubeflow", "--num-nodes", "3"]  # fmt: skip
    args = parser.parse_args(argv)
    again = parser.parse_args(trainjob.node_argv(args, parser))
    keep = {k: v for k, v in vars(args).items() if k not in trainjob.LAUNCH_FLAGS}
    assert {k: v for k, v in vars(again).items() if k not in trainjob.LAUNCH_FLAGS} == keep
    assert again.launcher == "local" and again.num_nodes == 1  # the nodes train; they do not submit again


def test_launcher_errors_are_clear(tmp_path):
    from chromaflow.train import train

    with pytest.raises(ValueError, match="--image is required"):
        train("colorization", data="d", out=str(tmp_path), launcher="kubeflow")
    with pytest.raises(ValueError, match="--num-nodes must be >= 1"):
        train("colorization", data="d", out=str(tmp_path), launcher="kubeflow", num_nodes=0, image="i")


# ---------------------------------------------------------------------- the SDK's process backend


def _entry_wheel(index: Path) -> None:
    """A local package index with one wheel whose only content is the ``torchrun`` console script.

    The SDK's process backend runs ``<fresh venv>/bin/torchrun``; the venv sees this interpreter's torch
    through ``PYTHONPATH`` (so pip does not reinstall it) but gets no ``torchrun`` script from it.
    """
    import base64
    import hashlib
    import zipfile

    name, ver = "torchrun_entry", "0.0.1"
    files = {
        f"{name}-{ver}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: torchrun-entry\nVersion: {ver}\n",
        f"{name}-{ver}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}-{ver}.dist-info/entry_points.txt": "[console_scripts]\ntorchrun = torch.distributed.run:main\n",
    }  # fmt: skip
    record = [f"{k},sha256={base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(v.encode())}" for k, v in files.items()]  # fmt: skip
    files[f"{name}-{ver}.dist-info/RECORD"] = "\n".join([*record, f"{name}-{ver}.dist-info/RECORD,,"]) + "\n"
    folder = index / "torchrun-entry"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / f"{name}-{ver}-py3-none-any.whl", "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    (folder / "index.html").write_text(f'<a href="{name}-{ver}-py3-none-any.whl">{name}-{ver}-py3-none-any.whl</a>')


@pytest.mark.slow  # a venv + pip + torchrun + a colorization run: ~40-90 s
def test_sdk_process_backend_runs_chromaflow_train(sharded, tmp_path):
    """``TrainerClient(LocalProcessBackendConfig())`` runs the TrainJob function (torchrun, one node) that runs
    ``chromaflow train``: it leaves model, metrics and history, with the losses of the same run in-process."""
    from chromaflow.io import read_json
    from chromaflow.train import train, trainjob

    flags = dict(data=str(sharded), steps=2, batch_size=4, crop=32, width=0.125, loss="softce",
                 device="cpu", log_every=1)  # fmt: skip
    train("colorization", out=str(tmp_path / "local"), **flags)
    argv = ["--task", "colorization", "--out", str(tmp_path / "job")]
    argv += [x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    _entry_wheel(tmp_path / "index")
    # the venv's pip is the one PYTHONPATH shows, so ensurepip adds none to it: PIP_PYTHON (the job runs in its
    # venv folder) makes whichever pip the PATH finds install into the job's venv, not that pip's own python
    env = {**trainjob.node_env("process"), "OMP_NUM_THREADS": "1", "PIP_PYTHON": "."}
    trainer = trainjob.custom_trainer(argv, image=None, num_nodes=1, gpus_per_node=0, env=env,
                                      packages_to_install=["torchrun-entry"],
                                      pip_index_urls=[(tmp_path / "index").as_uri()])  # fmt: skip
    lines: list[str] = []
    cwd = os.getcwd()
    try:
        trainjob.submit(trainer, backend="process", timeout=600, echo=lines.append)
    finally:
        os.chdir(cwd)  # the process backend chdirs this process into its venv
    assert any("final loss" in x or "done, final loss" in x for x in lines), "\n".join(lines[-40:])
    job = tmp_path / "job"
    assert {"model.safetensors", "metrics.json", "history.csv", "checkpoint.pt"} <= {p.name for p in job.iterdir()}
    assert _losses(job) == pytest.approx(_losses(tmp_path / "local"), abs=1e-5)
    assert read_json(job / "metrics.json")["world"] == 1


def test_vendored_crd_names_its_source():
    s = _schema()["source"]
    assert s["repository"] == "github.com/kubeflow/trainer" and len(s["commit"]) == 40
    assert s["path"].endswith("trainer.kubeflow.org_trainjobs.yaml") and s["version"] == "v1alpha1"


def test_out_as_url_is_staged_and_resumable(sharded, tmp_path, caplog):
    """``--out memory://...`` (any fsspec URL): the outputs land at the URL; a re-run downloads the finished
    state and does nothing; ``--resume`` continues from the URL's checkpoint."""
    import fsspec

    from chromaflow.train import train

    flags = dict(data=str(sharded), batch_size=4, crop=32, width=0.125, loss="softce", device="cpu", log_every=1)
    url = "memory://runs/c"
    first = train("colorization", out=url, steps=2, stop_at=1, **flags)
    fs = fsspec.filesystem("memory")
    assert first["stopped"] and fs.exists("/runs/c/checkpoint.pt") and not fs.exists("/runs/c/metrics.json")
    done = train("colorization", out=url, steps=2, resume="auto", **flags)
    assert {"model.safetensors", "metrics.json", "history.csv"} <= {
        Path(p).name for p in fs.ls("/runs/c", detail=False)
    }
    local = train("colorization", out=str(tmp_path / "local"), steps=2, **flags)
    assert done["final_loss"] == pytest.approx(local["final_loss"], abs=1e-6)  # resumed == uninterrupted
    with caplog.at_level("INFO"):
        again = train("colorization", out=url, steps=2, **flags)
    assert again["fingerprint"] == done["fingerprint"] and "nothing to do" in caplog.text


def test_train_step_launchers(tmp_path):
    from types import SimpleNamespace

    from chromaflow.pipeline import artifact_url, train_step

    assert artifact_url("minio://mlpipeline/v2/artifacts/x/model") == "s3://mlpipeline/v2/artifacts/x/model"
    assert artifact_url("gs://b/x") == "gs://b/x"
    art = SimpleNamespace(path=str(tmp_path), uri=str(tmp_path))
    with pytest.raises(ValueError, match="launcher must be 'local' or 'kubeflow', got 'slurm'"):
        train_step("colorization", dataset=art, model=art, launcher="slurm")


# ------------------------------------------------------------------ the SDK's container backend (podman)

TOY_CFG = dict(steps=4, batch_size=8, grad_accum=2, lanes=2, lr=1e-2, device="cpu", log_every=1)


def toy_fit(data, out, cfg):  # runs alone in each container (its source is copied): imports inside
    from toy import ToyShardTask

    from chromaflow.train import distributed
    from chromaflow.train.engine import TrainConfig, fit

    fit(ToyShardTask(data), TrainConfig(out=out, **cfg))
    distributed.cleanup()


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """A private podman (own storage, ``podman system service`` on a socket) and a stand-in image: an empty
    root whose ``/usr``, this interpreter, its venv, the repo and the test folders are mounted from this machine
    (containers.conf ``volumes``), so the nodes run this checkout's code. Also yields the runtime folder."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install -y podman)")
    base = tmp_path_factory.mktemp("podman")
    cmd = ["podman", "--root", str(base / "root"), "--runroot", str(base / "run"), "--cgroup-manager", "cgroupfs",
           "--events-backend", "file"]  # fmt: skip
    mounts = {"/usr", os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), str(REPO),
              str(tmp_path_factory.getbasetemp())}  # fmt: skip
    # runc, and rlimits no higher than this machine's (a Firecracker VM refuses podman's defaults under crun)
    vols = [f"{m}:{m}:{'rw' if m == str(tmp_path_factory.getbasetemp()) else 'ro'}" for m in sorted(mounts)]
    (base / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        f'volumes = {json.dumps(vols)}\n[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}
    root = base / "image"
    for d in ("usr", "tmp", "proc", "sys", "dev", "etc", "workspace"):
        (root / d).mkdir(parents=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        (root / link).symlink_to(f"usr/{link}")
    subprocess.run(["tar", "-C", str(root), "-cf", str(base / "image.tar"), "."], check=True)
    subprocess.run([*cmd, "import", str(base / "image.tar"), "localhost/chromaflow-host:test"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    runtimes = base / "runtimes"
    runtimes.mkdir()
    (runtimes / "torch_distributed.yaml").write_text(RUNTIME_YAML)
    sock = base / "podman.sock"
    service = subprocess.Popen([*cmd, "system", "service", "--time=0", f"unix://{sock}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.1)
    yield {"container_host": f"unix://{sock}", "container_runtime": "podman",
           "runtime_source": {"sources": [runtimes.as_uri()]}}  # fmt: skip
    subprocess.run([*cmd, "rm", "-af"], env=env, capture_output=True)
    subprocess.run([*cmd, "network", "prune", "-f"], env=env, capture_output=True)
    service.terminate()
    service.wait(timeout=30)


RUNTIME_YAML = """\
# the torch-distributed ClusterTrainingRuntime of kubeflow/trainer v2.3.0
# (charts/kubeflow-trainer/files/runtimes/torch-distributed.yaml) without its Helm templating, on our image
apiVersion: trainer.kubeflow.org/v1alpha1
kind: ClusterTrainingRuntime
metadata:
  name: torch-distributed
  labels:
    trainer.kubeflow.org/framework: torch
spec:
  mlPolicy:
    numNodes: 1
    torch: {}
  template:
    spec:
      replicatedJobs:
        - name: node
          template:
            spec:
              template:
                spec:
                  containers:
                    - name: node
                      image: localhost/chromaflow-host:test
"""


@pytest.mark.slow  # two podman containers per job, two jobs: ~3-4 min on a loaded 2-core machine
def test_sdk_container_backend_two_nodes_on_podman(podman, sharded, tmp_path):
    """``TrainerClient(ContainerBackendConfig)`` on podman, 2 nodes (2 containers on a podman network, torchrun
    static rendezvous, gloo): per-step losses equal one process with the same global batch; and
    ``chromaflow train`` itself runs as the 2-node job, rank 0 writing the run."""
    from kubeflow.trainer import CustomTrainer

    from chromaflow.io import read_json
    from chromaflow.train import trainjob

    fit(ToyShardTask(str(sharded)), TrainConfig(out=str(tmp_path / "single"), **TOY_CFG))
    env = {"PATH": f"{os.path.realpath(sys.prefix)}/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": "/tmp",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HERE)])}  # fmt: skip
    image = "localhost/chromaflow-host:test"
    toy = CustomTrainer(func=toy_fit, func_args={"data": str(sharded), "out": str(tmp_path / "two"), "cfg": TOY_CFG},
                        image=image, num_nodes=2, env=env)  # fmt: skip
    lines: list[str] = []
    trainjob.submit(toy, backend="container", config=podman, timeout=900, echo=lines.append)
    assert read_json(tmp_path / "two" / "metrics.json")["world"] == 2, "\n".join(lines[-30:])
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "single"), abs=1e-5)

    argv = ["--task", "colorization", "--data", str(sharded), "--out", str(tmp_path / "cf"), "--steps", "2",
            "--batch-size", "8", "--crop", "32", "--width", "0.125", "--loss", "softce", "--device", "cpu",
            "--lanes", "2"]  # fmt: skip
    cf = trainjob.custom_trainer(argv, image=image, num_nodes=2, gpus_per_node=0, env=env)
    trainjob.submit(cf, backend="container", config=podman, timeout=900, echo=lines.append)
    out = tmp_path / "cf"
    assert {"model.safetensors", "metrics.json", "history.csv"} <= {p.name for p in out.iterdir()}
    assert read_json(out / "metrics.json")["world"] == 2
