"""dpqtb.train"""
