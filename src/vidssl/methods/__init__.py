"""vidssl.methods"""
