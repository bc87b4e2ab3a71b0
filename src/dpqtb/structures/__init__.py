"""dpqtb.structures: LaH10 cells (Fm-3m and symmetry-lowered C2, P-1, R-3m), supercells, the
stored DFT equation of state, the sampling plan of the training set, the cage face angles of one
structure (``cage``) and periodic geometry (``periodic``: minimum images, cross-neighbour pairs).

    from dpqtb.structures.lah10 import fm3m, lowered, supercell
    from dpqtb.structures.eos import fm3m_at_pressure, lattice_constant
    from dpqtb.structures.sampling import round0_plan, build_sample
"""
