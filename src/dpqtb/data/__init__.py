"""dpqtb.data"""
