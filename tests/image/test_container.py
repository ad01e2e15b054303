"""The component image for real (``make test-image``, marker ``image``): built with podman from the Debian base,
run as its non-root user, the colorization steps on a mounted folder, TorchServe inside it answering the host,
and no layer holding the build's CA bundle or a private key.

Needs podman (``make podman``), the base (``make base-image``) and the image (``make image-cpu``; ``make test-image``
does all three). ``$CHROMAFLOW_PODMAN`` is the podman command line (default ``podman --storage-driver=overlay``, the
driver ``make`` builds with) and ``$CHROMAFLOW_IMAGE`` the tag (default ``chromaflow:<version>``).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import yaml
from PIL import Image

from chromaflow import __version__

pytestmark = [
    pytest.mark.image,
    pytest.mark.timeout(3600),  # podman save of a 7 GB image and the steps on a loaded 2-core machine
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (make podman)"),
]
PODMAN = shlex.split(os.environ.get("CHROMAFLOW_PODMAN", "podman --storage-driver=overlay"))
IMAGE = os.environ.get("CHROMAFLOW_IMAGE", f"chromaflow:{__version__}")
UID = 10001  # the Dockerfile's non-root user
PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.S)
# a whole PEM private key (header, >= 100 base64 characters, footer): libraries (gnutls, cryptography, google-auth)
# carry the header strings alone, to parse keys
KEY = re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----[A-Za-z0-9+/=\s]{100,}-----END")


def podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"podman {' '.join(args)}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def run_in_image(work: Path, script: str, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``bash -c script`` in the image as its user, ``work`` mounted at /work (also the cwd), no network."""
    return podman("run", "--rm", "--network=none", "-v", f"{work}:/work", "-w", "/work", *extra, IMAGE,
                  "bash", "-c", script, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def image(repo_root) -> str:
    """The image, checked to hold exactly the chromaflow files of this checkout's wheel (a stale image fails)."""
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is not built: run `make test-image` (builds base and image first)")
    wheel = repo_root / "build" / "wheel" / f"chromaflow-{__version__}-py3-none-any.whl"
    assert wheel.is_file(), "make image builds the wheel into build/wheel"
    with zipfile.ZipFile(wheel) as z:
        record = z.read(f"chromaflow-{__version__}.dist-info/RECORD").decode()
    want = {ln.split(",")[0]: ln.split(",")[1] for ln in record.splitlines() if ln.startswith("chromaflow/")}
    probe = (
        "import base64, hashlib, json, pathlib, sys, chromaflow; root = pathlib.Path(chromaflow.__file__).parents[1]; "
        "print(json.dumps({p: 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256((root / p).read_bytes())"
        ".digest()).rstrip(b'=').decode() for p in json.loads(sys.argv[1])}))"
    )
    r = podman("run", "--rm", "--network=none", IMAGE, "python3", "-c", probe, json.dumps(sorted(want)))
    assert json.loads(r.stdout) == want, f"{IMAGE} is stale: it does not hold the wheel of this checkout"
    return IMAGE


def test_runs_as_non_root_and_prints_help(image):
    r = podman("run", "--rm", "--network=none", image, "bash", "-c", "id -u && chromaflow --help")
    uid, *rest = r.stdout.splitlines()
    assert int(uid) == UID
    assert all(step in r.stdout for step in ("prepare", "stats", "train", "evaluate", "export", "serve"))
    probe = (
        "python3 -c 'import importlib.util as u; print(u.find_spec(\"pytest\") is None)'; "
        "find / -xdev \\( -name .git -o -name runs -o -name .pytest_cache -o -path '*/tests/spine' \\) -print 2>/dev/null; "
        "ls -A /home/chromaflow"
    )
    r = podman("run", "--rm", "--network=none", image, "bash", "-c", probe)
    lines = r.stdout.split()
    assert lines[0] == "True", "pytest (a test dependency) is in the image"
    assert sorted(lines[1:]) in ([], [".bash_logout", ".bashrc", ".profile"]), (
        f"tests, .git, runs or caches: {lines[1:]}"
    )


@pytest.fixture(scope="module")
def steps(image, repo_root, tmp_path_factory) -> Path:
    """prepare -> stats -> train (3 steps) -> evaluate -> export on data/sample, in the image, on a mounted folder."""
    work = tmp_path_factory.mktemp("container")
    shutil.copytree(repo_root / "data" / "sample", work / "sample")
    os.chown(work, UID, UID)
    p = yaml.safe_load((repo_root / "params.yaml").read_text())
    pr, tr, ev = p["prepare"], p["train"], p["evaluate"]
    script = " && ".join([
        f"chromaflow prepare --source sample --out prepared --max-side {pr['max_side']} "
        f"--val-fraction {pr['val_fraction']} --workers 1",
        f"chromaflow stats --data prepared --out stats --split {p['stats']['split']} --workers 1",
        f"chromaflow train --task colorization --data prepared --prior stats --out train --loss {tr['loss']} "
        f"--width {tr['width']} --steps 3 --crop {tr['crop']} --batch-size {tr['batch_size']} --lr {tr['lr']} "
        f"--seed {tr['seed']} --device cpu --portable-kernels",
        f"chromaflow evaluate --task colorization --weights train/model.safetensors --data prepared "
        f"--prior stats/prior.npy --out evaluate --split {ev['split']} --size {ev['size']} --t-sweep={ev['t_sweep']} "
        f"--device cpu --portable-kernels",
        "chromaflow export --weights train/model.safetensors --out export --name colorize",
    ])  # fmt: skip
    t0 = time.monotonic()
    run_in_image(work, script, timeout=1800)
    (work / "steps_wall_s.txt").write_text(f"{time.monotonic() - t0:.1f}\n")
    return work


def test_steps_write_their_outputs_on_the_mounted_folder(steps):
    for path in ("prepared", "stats/prior.npy", "train/model.safetensors", "evaluate/metrics.json"):
        assert (steps / path).exists(), f"{path} missing after the steps"
        assert (steps / path).stat().st_uid == UID, f"{path} not written by the image's user"
    metrics = json.loads((steps / "evaluate" / "metrics.json").read_text())
    assert 0 < metrics["rows"]["Ours"]["auc_raw"] <= 100, metrics  # percent
    (mar,) = (steps / "export").glob("*.mar")
    assert {"colorize_handler.py", "model.safetensors"} <= set(zipfile.ZipFile(mar).namelist())


def test_training_in_the_image_equals_training_here(steps, tmp_path, repo_root):
    """Same wheel of torch, same data, portable kernels: the container's 3 steps give this venv's weights."""
    from chromaflow.cli import main

    p = yaml.safe_load((repo_root / "params.yaml").read_text())["train"]
    argv = ["train", "--task", "colorization", "--data", str(steps / "prepared"), "--prior", str(steps / "stats"),
            "--out", str(tmp_path / "train"), "--loss", p["loss"], "--width", str(p["width"]), "--steps", "3",
            "--crop", str(p["crop"]), "--batch-size", str(p["batch_size"]), "--lr", str(p["lr"]),
            "--seed", str(p["seed"]), "--device", "cpu", "--portable-kernels"]  # fmt: skip
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert main(argv) in (0, None)
    here = json.loads((tmp_path / "train" / "metrics.json").read_text())
    there = json.loads((steps / "train" / "metrics.json").read_text())
    assert there["final_loss"] == here["final_loss"] and there["first_loss"] == here["first_loss"], (here, there)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "train" / "model.safetensors"), load_file(steps / "train" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchserve_in_the_image_answers_the_host_like_the_in_process_service(image, tmp_path, repo_root):
    """`chromaflow serve` (the shipped model, token auth) inside the image, on the host's loopback
    (``--network=host``); one request from here gives the pixels of the in-process ColorizeService."""
    from chromaflow.models.shipped import shipped_weights
    from chromaflow.serving import ColorizeService, Request

    os.chown(tmp_path, UID, UID)
    port, mport, xport = _free_port(), _free_port(), _free_port()
    name = f"chromaflow-serve-{port}"
    cmd = (f"chromaflow serve --run-dir /work/serve --port {port} --management-port {mport} "
           f"--metrics-port {xport} --timeout 300 && exec sleep infinity")  # fmt: skip
    podman("run", "-d", "--name", name, "--network=host", "-v", f"{tmp_path}:/work", "-w", "/work", image,
           "bash", "-c", cmd)  # fmt: skip
    try:
        key_file = tmp_path / "serve" / "key_file.json"
        deadline = time.monotonic() + 400
        url = f"http://127.0.0.1:{port}/predictions/colorize"
        while time.monotonic() < deadline:
            if key_file.is_file():
                try:
                    requests.get(f"http://127.0.0.1:{port}/ping", timeout=5)  # any answer (token auth: 400) is up
                    break
                except requests.ConnectionError:
                    pass
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", podman("logs", name, check=False).stdout[-3000:]
            time.sleep(2)
        else:
            pytest.fail("TorchServe in the image did not come up: " + podman("logs", name, check=False).stdout[-3000:])
        token = json.loads(key_file.read_text())["inference"]["key"]
        photo = (repo_root / "data" / "sample" / "kodim23.jpg").read_bytes()
        refused = requests.post(url, data=photo, headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert refused.status_code in (400, 401) and "Token" in refused.text, refused.text[:300]  # TorchServe: 400
        r = requests.post(
            url, data=photo, headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {token}"}, timeout=120
        )
        assert r.status_code == 200, r.text[:500]
        served = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    finally:
        podman("rm", "-f", name, check=False)
    weights, card = shipped_weights("colorization")
    handler = yaml.safe_load((repo_root / "serving" / "model-config.yaml").read_text())["handler"]
    svc = ColorizeService.from_weights(weights, handler, expected_sha256=card["sha256"])
    alone = np.asarray(Image.open(io.BytesIO(svc.handle([Request(photo, "image/jpeg")])[0].body)).convert("RGB"))
    assert served.shape == alone.shape and np.abs(served - alone.astype(int)).max() <= 1


def _certs(blob: bytes) -> set[bytes]:
    return {re.sub(rb"\s+", b"", m) for m in PEM.findall(blob)}


def test_no_layer_holds_the_build_ca_or_a_private_key(image, tmp_path):
    """`podman save` the image and read every file of every layer tarball: the certificates the build's CA secret
    adds to the public bundles in the image (this machine's TLS proxy) appear nowhere, nor does the bundle file, nor
    any PEM private key."""
    ca = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    # the public bundles the image ships (Debian's, certifi's, pip's vendored certifi): what the build CA adds to them
    public = podman("run", "--rm", "--network=none", image, "bash", "-c",
                    "cat /etc/ssl/certs/ca-certificates.crt $(find /opt/venv -name cacert.pem)").stdout  # fmt: skip
    ca_bytes = ca.read_bytes()
    secret_only = _certs(ca_bytes) - _certs(public.encode())
    if not secret_only:
        pytest.skip(f"{ca} adds no certificate to Debian's bundle: nothing secret to look for")
    needles = sorted(secret_only)  # each whole certificate body (base64, whitespace removed): certificates of one
    # issuer share long runs of their encoded names, so only the whole body identifies one
    archive = tmp_path / "image.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), image, timeout=1800)
    hits, keys, n_files = [], [], 0
    with tarfile.open(archive) as outer:
        for member in outer:
            if not member.name.endswith(".tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                for f in layer:
                    if not f.isfile():
                        continue
                    n_files += 1
                    data = layer.extractfile(f).read()
                    flat = re.sub(rb"\s+", b"", data) if b"CERTIFICATE" in data else b""
                    hits += [f"{member.name}:{f.name}" for n in needles if flat and n in flat]
                    hits += [f"{member.name}:{f.name} (the bundle itself)" for _ in [0] if data == ca_bytes]
                    if KEY.search(data) and not re.search(r"/libgnutls\.so[.\d]*$", f.name):  # its FIPS self-test keys
                        keys.append(f"{member.name}:{f.name}")
    assert n_files > 1000, "the layers were not read"
    assert not hits, f"the build CA is in a layer: {hits[:5]}"
    assert not keys, f"private keys in the image: {keys[:10]}"


def test_image_size_and_digest_are_reported(image, record_property):
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    size_gb = info["Size"] / 1e9
    record_property("image_size_gb", round(size_gb, 2))
    print(f"{image}: {size_gb:.2f} GB, {len(info['RootFS']['Layers'])} layers, id {info['Id'][:12]}")
    assert info["Config"]["User"] == f"{UID}:{UID}"
    assert info["Labels"]["org.opencontainers.image.version"] == __version__
