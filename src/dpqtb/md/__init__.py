"""dpqtb.md"""
