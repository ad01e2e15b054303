"""Levin et al. 2004 edit propagation: the non-learned baseline of Table 3.1."""

from __future__ import annotations

import numpy as np
import pytest

from chromaflow.evaluate.edit_propagation import propagate


def test_no_hints_is_gray_and_hints_are_kept():
    l = np.full((16, 16), 50.0)
    assert np.all(propagate(l, np.zeros((2, 16, 16)), np.zeros((16, 16))) == 0)
    hint = np.zeros((2, 16, 16))
    m = np.zeros((16, 16), bool)
    m[3, 4] = True
    hint[:, 3, 4] = (20.0, -30.0)
    out = propagate(l, hint, m)
    np.testing.assert_allclose(out[:, 3, 4], (20.0, -30.0))
    # a flat image with a single hint is coloured everywhere by it (the system's unique solution)
    np.testing.assert_allclose(out[0], 20.0, atol=1e-6)
    np.testing.assert_allclose(out[1], -30.0, atol=1e-6)


def test_colour_stops_at_a_lightness_edge():
    """Two regions split by a strong edge, one hint in each: each region takes its own hint's colour."""
    l = np.full((20, 20), 20.0)
    l[:, 10:] = 80.0
    hint = np.zeros((2, 20, 20))
    m = np.zeros((20, 20), bool)
    m[10, 2], hint[:, 10, 2] = True, (40.0, 0.0)
    m[10, 17], hint[:, 10, 17] = True, (-40.0, 0.0)
    out = propagate(l, hint, m)
    assert out[0, :, :10].mean() > 35 and out[0, :, 10:].mean() < -35


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected"):
        propagate(np.zeros((4, 4)), np.zeros((2, 4, 5)), np.zeros((4, 4)))
