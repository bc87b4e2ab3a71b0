"""dpqtb.workflows"""
