# GPAW build configuration used by scripts/install_gpaw.sh (passed as GPAW_CONFIG).
# Debian bookworm libraries: libxc-dev libopenblas-dev libfftw3-dev libopenmpi-dev
# libscalapack-openmpi-dev.  Every library must be named: a partial list builds a slower GPAW.
compiler = 'mpicxx'
mpi = True
fftw = True
scalapack = True
libraries = ['xc', 'openblas', 'fftw3', 'scalapack-openmpi']
