"""prunetune.spaces"""
