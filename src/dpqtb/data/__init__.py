"""dpqtb.data: export of labelled frames (deepmd/npy through dpdata, extxyz) and the summary
table; package data (the stored LaH10 EOS, ``lah10_eos.json``)."""
