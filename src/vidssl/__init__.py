"""vidssl"""
