"""Shipped models: fp16 weights + card; the hash in the card is enforced; the committed ones load and run."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess

import pytest
import torch

from chromaflow.export.ship import ship
from chromaflow.io import write_json
from chromaflow.models import create_model, save_weights
from chromaflow.models import shipped as S

COMMITTED = sorted(p.name for p in S.weights_root().glob("*") if (p / S.CARD_JSON).is_file())  # weights/<name>


@pytest.fixture
def train_dir(tmp_path):
    torch.manual_seed(0)
    d = tmp_path / "train"
    save_weights(create_model("eccv16", width=1 / 16), d / "model.safetensors")
    write_json(d / "metrics.json", {"step": 3, "final_loss": 1.5, "wall_s": 60.0})
    data = tmp_path / "prepared"
    write_json(data / "manifest.json", {"fingerprint": "abc"})
    return d, data


def test_ship_writes_fp16_weights_and_a_card(train_dir, tmp_path, monkeypatch):
    d, data = train_dir
    root = tmp_path / "weights"
    c = ship("tiny", d, None, data=data, command=["chromaflow train --task colorization ..."], out_root=root)
    f = root / "tiny" / S.WEIGHTS_FILE
    assert c["sha256"] == S.sha256_file(f) and c["bytes"] == f.stat().st_size and c["dtype"] == "float16"
    assert json.loads((root / "tiny" / S.CARD_JSON).read_text())["sha256"] == c["sha256"]
    md = (root / "tiny" / S.CARD_MD).read_text()
    assert c["sha256"] in md and "chromaflow train --task colorization" in md
    monkeypatch.setenv("CHROMAFLOW_WEIGHTS", str(root))
    model, card = S.load_shipped("tiny")
    assert card["model"] == "eccv16" and not model.training
    assert sum(p.numel() for p in model.parameters()) == c["n_params"]


def test_ship_a_training_continued_in_segments(train_dir, tmp_path):
    d, data = train_dir
    d2 = tmp_path / "train2"
    torch.manual_seed(1)
    later = create_model("eccv16", width=1 / 16)
    save_weights(later, d2 / "model.safetensors")
    write_json(d2 / "metrics.json", {"step": 5, "final_loss": 1.25, "val_loss": 1.1, "wall_s": 120.0})
    root = tmp_path / "weights"
    c = ship("tiny", [d, d2], None, data=data, command=[], out_root=root)
    assert [s["dir"] for s in c["segments"]] == [str(d), str(d2)] and c["train"]["step"] == 5
    shipped = S.load_weights(root / "tiny" / S.WEIGHTS_FILE)  # the last segment's weights, in fp16
    torch.testing.assert_close(shipped.state_dict(), later.half().float().state_dict())
    md = (root / "tiny" / S.CARD_MD).read_text()
    assert "8 steps in 2 segments, final loss 1.250, 3 min" in md  # 3 + 5 steps, 60 + 120 s
    assert f"| 2 | `{d2}` | 5 | - | 1.250 | 1.100 | 2 |" in md
    with pytest.raises(FileNotFoundError, match="no-such"):
        ship("tiny", [d, tmp_path / "no-such"], None, data=data, command=[], out_root=root)


def test_reproduce_script_runs_the_card_commands_in_order(train_dir, tmp_path):
    """reproduce.sh: executable, runs the recorded commands in order, stops at the first that fails."""
    d, data = train_dir
    root = tmp_path / "weights"
    ship("tiny", d, None, data=data, command=["echo one > log.txt", "echo two >> log.txt"], out_root=root)
    script = root / "tiny" / S.REPRODUCE_SH
    assert script.stat().st_mode & 0o111
    assert f"`bash {script}`" in (root / "tiny" / S.CARD_MD).read_text()
    work = tmp_path / "work"
    work.mkdir()
    assert subprocess.run([str(script)], cwd=work).returncode == 0
    assert (work / "log.txt").read_text() == "one\ntwo\n"
    ship("tiny", d, None, data=data, command=["echo one > log.txt", "false", "echo two >> log.txt"], out_root=root)
    assert subprocess.run(["bash", str(script)], cwd=work).returncode != 0
    assert (work / "log.txt").read_text() == "one\n"


def test_ship_records_every_training_data_folder(train_dir, tmp_path):
    """`ship --data A --data B` (a training with --extra-data): the card lists both, hashed in order."""
    d, data = train_dir
    extra = tmp_path / "extra"
    write_json(extra / "manifest.json", {"fingerprint": "def"})
    root = tmp_path / "weights"
    c = ship("tiny", d, None, data=[data, extra], command=[], out_root=root)
    parts = [hashlib.md5(f"manifest:{fp}".encode()).hexdigest() for fp in ("abc", "def")]
    assert c["data"] == [str(data), str(extra)]
    assert c["data_hash"] == hashlib.md5("".join(parts).encode()).hexdigest()
    assert f"`{data}` + `{extra}` (data hash `{c['data_hash']}`)" in (root / "tiny" / S.CARD_MD).read_text()
    one = ship("tiny", d, None, data=[data], command=[], out_root=root)  # one folder: as without a list
    assert one["data"] == str(data) and one["data_hash"] == parts[0]


def test_tampered_or_missing_shipped_model_is_refused(train_dir, tmp_path, monkeypatch):
    d, data = train_dir
    root = tmp_path / "weights"
    ship("tiny", d, None, data=data, command=[], out_root=root)
    monkeypatch.setenv("CHROMAFLOW_WEIGHTS", str(root))
    f = root / "tiny" / S.WEIGHTS_FILE
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="refused"):
        S.load_shipped("tiny")
    with pytest.raises(FileNotFoundError, match="no-such"):
        S.card("no-such")


def test_too_large_model_is_not_shipped(tmp_path):
    d = tmp_path / "train"
    save_weights(create_model("eccv16", width=0.75), d / "model.safetensors")  # ~18M params: 36 MB in fp16
    write_json(d / "metrics.json", {"step": 1})
    with pytest.raises(ValueError, match="exceeds"):
        ship("big", d, None, data=d, command=[], out_root=tmp_path / "w")
    assert not (tmp_path / "w" / "big" / S.WEIGHTS_FILE).exists()


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_shipped_models_match_their_cards(name):
    model, card = S.load_shipped(name)
    assert sum(p.numel() for p in model.parameters()) == card["n_params"]
    assert card["bytes"] <= S.MAX_BYTES
    assert card["command"] and card["code_commit"] and card["data_hash"]
    script = (S.weights_root() / name / S.REPRODUCE_SH).read_text().splitlines()
    assert script[-len(card["command"]) :] == card["command"]  # the one command runs the card's commands


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_card_data_hash_reproduces_from_its_prepare_commands(name, tmp_path, monkeypatch):
    """Running the card's own `chromaflow prepare` commands (into another folder) gives the data hash it records."""
    from chromaflow.cli import main
    from chromaflow.tracking.lineage import data_hash

    card = json.loads((S.weights_root() / name / S.CARD_JSON).read_text())
    monkeypatch.chdir(S.weights_root().resolve().parent)  # the commands' paths: relative to the checkout (share/ links)
    outs = {}
    for cmd in card["command"]:
        argv = shlex.split(cmd)
        if argv[0] != "chromaflow" or argv[1] not in ("prepare", "prepare-pairs"):
            if not outs and "chromaflow" not in argv:  # a shell step before the first prepare makes its source
                subprocess.run(["bash", "-c", cmd], check=True)  # (squeeze_colorizer: a Tiny-ImageNet subset)
            continue
        i = argv.index("--out") + 1
        outs[argv[i]], argv[i] = tmp_path / argv[i], str(tmp_path / argv[i])
        assert main(argv[1:]) == 0
    data = [card["data"]] if isinstance(card["data"], str) else card["data"]
    assert data_hash([outs[d] for d in data]) == card["data_hash"]
