"""Deep Potential training and validation with DeePMD-kit (see docs/training.md).

``dataset`` (hash-keyed train/test split, deepmd/npy export, dataset version), ``sel`` (neighbour
statistics behind the descriptor's sel), ``config`` (TOML schema, DeePMD-kit input), ``runner``
(``dpqtb train``: resumable ``dp --pt train/freeze/compress`` of an ensemble), ``validate``
(``dpqtb validate``: held-out RMSE, EOS and Table I vs DFT).
"""
