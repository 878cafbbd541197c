"""vidssl.viz"""
