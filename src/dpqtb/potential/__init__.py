"""dpqtb.potential"""
