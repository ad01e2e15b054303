"""The Lab normalization contract and the quantization constants of the thesis (ch. 2), defined once.

Every checkpoint stores :data:`LAB_CONTRACT` (possibly with overrides) so a model is never used
with conventions it was not trained with.
"""

L_CENT = 50.0  # L is fed to networks as (L - L_CENT) / L_NORM, L in [0, 100]
L_NORM = 100.0
AB_NORM = 110.0  # ab is scaled as ab / AB_NORM, ab in about [-110, 110]
MASK_CENT = 0.5  # user-guided hint mask is fed as mask - MASK_CENT (ch. 3)

GRID = 10  # ab quantization grid size (thesis Fig. 2.3a)
AB_MIN = -110.0  # lower edge of the ab grid: bin centres are AB_MIN + GRID * i, i in [0, 22]
GRID_SIZE = 23  # number of bin centres per ab axis (-110..110 in steps of 10)
Q = 313  # number of in-gamut bins

SOFT_SIGMA = 5.0  # Gaussian kernel of the soft-encoding (thesis footnote 3)
SOFT_K_PAPER = 5  # nearest neighbours in the thesis text
SOFT_K_REFERENCE = 10  # nearest neighbours in the released reference code

PRIOR_SIGMA = 5.0  # Gaussian smoothing of the empirical prior (Eq. 2.4)
REBALANCE_LAMBDA = 0.5  # mixing with the uniform distribution (Eq. 2.4)

T_ANNEAL = 0.38  # annealed-mean temperature (Eq. 2.5)

LAB_CONTRACT = {
    "l_cent": L_CENT,
    "l_norm": L_NORM,
    "ab_norm": AB_NORM,
    "mask_cent": MASK_CENT,
    "grid": GRID,
    "q": Q,
    "T": T_ANNEAL,
}
