"""``dpqtb paper``: the verdict runs (sweep files), their collection into docs/paper/verdict.json and the
self-contained report.html beside the paper's own numbers (docs/paper.md)."""
