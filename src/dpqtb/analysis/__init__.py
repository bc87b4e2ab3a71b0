"""dpqtb.analysis"""
