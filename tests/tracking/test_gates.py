"""Promotion gates file: the shipped policy and every malformed-input error."""

from __future__ import annotations

import pytest

from chromaflow.tracking.gates import Gate, GateError, load_gates


def _write(tmp_path, text):
    p = tmp_path / "gates.yaml"
    p.write_text(text)
    return p


def test_shipped_policy_for_colorization(repo_root):
    gates, sha = load_gates(repo_root / "mlflow" / "promotion.yaml", "chromaflow-colorization")
    by = {g.metric: g for g in gates}
    assert by["auc_rebal"].direction == "higher" and by["auc_rebal"].min_margin == 0.5
    assert by["auc_raw"].direction == "higher" and by["auc_raw"].min_margin == -1.0
    assert len(sha) == 64
    default, _ = load_gates(repo_root / "mlflow" / "promotion.yaml", "some-other-model")
    assert default and all(g.direction in ("higher", "lower") for g in default)


BICYCLEGAN_CHAMPION = {"diversity_lpips": 0.100, "recon_l1": 0.300, "frechet_squeezenet": 40.0,
                       "real_fake_accuracy": 0.80, "latent_l1": 0.50}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "passes"),
    [
        ({}, True),  # equal on every metric: the margins tolerate it
        ({"frechet_squeezenet": 38.0, "diversity_lpips": 0.092, "recon_l1": 0.309, "real_fake_accuracy": 0.815}, True),
        ({"frechet_squeezenet": 40.5}, False),  # realism proxy worse
        ({"diversity_lpips": 0.013, "frechet_squeezenet": 30.0}, False),  # collapsed (pix2pix+noise level)
        ({"diversity_lpips": 0.089}, False),
        ({"recon_l1": 0.315}, False),
        ({"real_fake_accuracy": 0.83}, False),
        ({"latent_l1": 5.0}, True),  # not gated
    ],
)
def test_shipped_policy_for_bicyclegan(repo_root, change, passes):
    gates, _ = load_gates(repo_root / "mlflow" / "promotion.yaml", "chromaflow-bicyclegan")
    assert {g.metric for g in gates} == {"frechet_squeezenet", "diversity_lpips", "real_fake_accuracy", "recon_l1"}
    assert {g.metric: g.direction for g in gates} == {"frechet_squeezenet": "lower", "diversity_lpips": "higher",
                                                      "real_fake_accuracy": "lower", "recon_l1": "lower"}  # fmt: skip
    challenger = {**BICYCLEGAN_CHAMPION, **change}
    decided = all(g.passes(challenger[g.metric], BICYCLEGAN_CHAMPION[g.metric]) for g in gates)
    assert decided is passes


def test_mlflow_folder_is_not_a_package(repo_root):
    assert not (repo_root / "mlflow" / "__init__.py").exists()


def test_gate_arithmetic():
    hi = Gate("m", "higher", 0.5)
    assert hi.passes(10.5, 10.0) and not hi.passes(10.4, 10.0)
    lo = Gate("m", "lower", 0.0)
    assert lo.passes(1.0, 1.0) and lo.passes(0.9, 1.0) and not lo.passes(1.1, 1.0)
    tol = Gate("m", "higher", -1.0)
    assert tol.passes(9.0, 10.0) and not tol.passes(8.9, 10.0)


def test_model_section_then_default(tmp_path):
    p = _write(
        tmp_path,
        "default:\n  gates: [{metric: a, direction: lower}]\n"
        "models:\n  m1:\n    gates: [{metric: b, direction: higher, min_margin: 2}]\n",
    )
    assert load_gates(p, "m1")[0] == [Gate("b", "higher", 2.0)]
    assert load_gates(p, "m2")[0] == [Gate("a", "lower", 0.0)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("default: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("defaults:\n  gates: []\n", "unknown top-level key"),
        ("default:\n  gates: []\n", "non-empty 'gates' list"),
        ("default:\n  gates: [{metric: a, direction: up}]\n", "unknown direction 'up'"),
        ("default:\n  gates: [{metric: a, direction: higher, min_margin: lots}]\n", "must be a finite number"),
        ("default:\n  gates: [{metric: a, direction: higher, margin: 1}]\n", "unknown gate key"),
        ("default:\n  gates: [{direction: higher}]\n", "'metric' must be a non-empty string"),
        ("default:\n  gates: [{metric: a, direction: higher}, {metric: a, direction: lower}]\n", "more than once"),
        ("models:\n  other:\n    gates: [{metric: a, direction: higher}]\n", "no section for model 'm'"),
        ("models:\n  m:\n    gates: [{metric: a, direction: higher}]\n  bad:\n    gates: [3]\n", "must be a mapping"),
    ],
)
def test_malformed_gates(tmp_path, text, match):
    with pytest.raises(GateError, match=match):
        load_gates(_write(tmp_path, text), "m")


def test_missing_file(tmp_path):
    with pytest.raises(GateError, match="not found"):
        load_gates(tmp_path / "nope.yaml", "m")
