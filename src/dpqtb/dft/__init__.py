"""dpqtb.dft"""
