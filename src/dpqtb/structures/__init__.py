"""dpqtb.structures"""
