"""dpqtb.dft: GPAW plane-wave PBE labelling of La–H configurations.

settings (cutoff, k-mesh from a density, smearing), store (resumable job store), runner (the MPI
labeller), eos (the Fm-3m equation of state), convergence (the settings study), relax
(symmetry-constrained relaxation at pressure), cli (``dpqtb label``, ``dataset``, ``structure``).
"""
